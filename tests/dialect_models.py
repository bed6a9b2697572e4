"""Tiny models for the newer dialects' tests (Anthropic, Responses, reasoning): the tool
template of test_tools, and one whose answers always start with a ``<think>`` block."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

import tiny_model

TOOL_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}"
    "{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
    "{% elif m.role == 'tool' %}<tool_response id={{ m.tool_call_id }}>{{ m.content }}"
    "</tool_response>"
    "{% else %}{{ m.role }}: {{ m.content }}{% endif %}\n{% endfor %}"
    "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10},
                   "days": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["city"],
}  # fmt: skip


#: The reasoning model's one answer: after the prompt's last character (a newline) it
#: writes ``REASONING</think>ANSWER`` and ends. No character repeats, so a bigram table
#: (next token from the current one alone) can spell it.
REASONING = "ab"
ANSWER = "yes"
THINKING_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}assistant: <think>"
    "{% if enable_thinking is defined and not enable_thinking %} skip{% endif %}"
    "{{ '\\n' }}{% endif %}"  # A newline the template's trim_blocks keeps.
)


def write_reasoning_model(path: Path) -> Path:
    """A tiny llama whose greedy answer is always ``ab</think>yes``: its layers add nothing
    (attention and feed-forward outputs are zero), so the next token depends only on the
    current one, and the embeddings and output rows spell the chain. Its template opens
    the reasoning with ``<think>`` in the prompt, as DeepSeek-R1's does."""
    chain = [ord("\n"), *map(ord, REASONING + "</think>" + ANSWER), tiny_model.EOS_ID]
    tensors = tiny_model._weights(seed=5)
    for name, tensor in tensors.items():
        if name.endswith(("attn_output.weight", "ffn_down.weight")):
            tensor[:] = 0.0
    embeddings, output = tensors["token_embd.weight"], tensors["output.weight"]
    for slot, (token, following) in enumerate(itertools.pairwise(chain)):
        embeddings[token] = 0.0
        embeddings[token, slot] = 1.0
        output[following, slot] = 50.0
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(path, arch)
    tiny_model._add_hparams(writer, 4096)
    tiny_model._add_tokenizer(writer, THINKING_TEMPLATE)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


#: How the reranker's GGUF says to lay out a (query, document) pair (llama.cpp's key).
RERANK_TEMPLATE = "query: {query}\ndocument: {document}"


def write_reranker_model(path: Path) -> tuple[Path, npt.NDArray[np.float64]]:
    """A tiny Qwen3 reranker (rank pooling, a yes/no classifier head over the last token)
    and the score it gives a text by its last token, computed here from its weights.

    Its layers add nothing (attention and feed-forward outputs are zero), so the final
    state of the last token is its embedding, RMS-normalized; llama.cpp's rank pooling
    turns it into softmax(head @ state), and the score is the "yes" probability."""
    tensors = tiny_model._weights(seed=9)
    for name, tensor in tensors.items():
        if name.endswith(("attn_output.weight", "ffn_down.weight")):
            tensor[:] = 0.0
    for i in range(tiny_model.NUM_LAYERS):
        tensors[f"blk.{i}.attn_q_norm.weight"] = np.ones(tiny_model.HEAD_DIM, dtype=np.float32)
        tensors[f"blk.{i}.attn_k_norm.weight"] = np.ones(tiny_model.HEAD_DIM, dtype=np.float32)
    head = np.random.default_rng(10).standard_normal((2, tiny_model.EMBEDDING_DIM)) * 0.15
    tensors["cls.output.weight"] = head.astype(np.float32)
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN3]
    writer = gguf.GGUFWriter(path, arch)
    tiny_model._add_hparams(writer, 4096)
    writer.add_key_length(tiny_model.HEAD_DIM)
    writer.add_value_length(tiny_model.HEAD_DIM)
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_classifier_output_labels(["yes", "no"])
    tiny_model._add_tokenizer(writer, None)
    writer.add_string("tokenizer.chat_template.rerank", RERANK_TEMPLATE)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    embeddings = tensors["token_embd.weight"].astype(np.float64)
    states = embeddings / np.sqrt(np.mean(embeddings**2, axis=1, keepdims=True) + 1e-5)
    logits = states @ head.astype(np.float32).astype(np.float64).T
    yes = np.exp(logits[:, 0] - logits.max(axis=1))
    return path, yes / (yes + np.exp(logits[:, 1] - logits.max(axis=1)))
