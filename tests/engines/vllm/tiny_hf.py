"""Tiny random-weight Hugging Face models (Llama, Qwen2) that vLLM's CPU build runs.

Written with ``transformers`` and ``tokenizers`` into a folder (``config.json``,
``model.safetensors``, tokenizer files with a chat template), as a download would
leave it. vLLM's CPU attention needs a head size of at least 32; its Qwen2 ignores
``head_dim`` and derives it from ``hidden_size``, so that is 128 over 4 heads.

The vision model is an Idefics3 (SigLIP-style vision tower, Llama text model): vLLM's
CPU build cannot run Qwen2-VL here, whose image processor imports torchvision, and PyPI
has only CUDA builds of torchvision, which fail to load beside the CPU torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: ChatML with tool signatures, as Qwen2's and Hermes' templates render them.
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou may call these tools:\n<tools>\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools><|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] or '' }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
#: The tokens Idefics3's processor writes around each image.
IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))]  # fmt: skip
CORPUS = [
    "hello world, the quick brown fox jumps over the lazy dog.",
    'tool call {"name": "get_weather", "arguments": {"city": "Paris"}} json schema',
    'user assistant system tools answer question 0123456789 {}[]:," true false null',
] * 50


def write_tiny_hf_model(folder: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny random ``arch`` model (``llama`` or ``qwen2``) into ``folder``."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(_config(arch, tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_tiny_embedding_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random Llama laid out as a Sentence Transformers embedding model (as
    Qwen3-Embedding and gte-Qwen2 are): its last token's final hidden state, normalized.
    vLLM reads ``modules.json`` and runs it as a pooling model."""
    write_tiny_hf_model(folder, "llama", seed)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": 64, "pooling_mode_lasttoken": True,
               "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False}  # fmt: skip
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def write_tiny_vision_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random Idefics3 into ``folder``: a 28x28 view of each image (no splitting),
    two 14-pixel patches a side pooled into one ``<image>`` token."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(IMAGE_TOKENS)
    image_processor = transformers.Idefics3ImageProcessor(
        size={"longest_edge": 28}, max_image_size={"longest_edge": 28}, do_image_splitting=False
    )
    processor = transformers.Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=1,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    text = _config("llama", tokenizer).to_dict()
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=2, image_size=28, patch_size=14)  # fmt: skip
    config = transformers.Idefics3Config(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    torch.manual_seed(seed)
    model = transformers.Idefics3ForConditionalGeneration(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _config(arch: str, tokenizer: Any) -> Any:
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        intermediate_size=256,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    if arch == "llama":
        return transformers.LlamaConfig(
            hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32, **common
        )
    if arch == "qwen2":
        return transformers.Qwen2Config(
            hidden_size=128, num_attention_heads=4, num_key_value_heads=2, **common
        )
    raise ValueError(f"no tiny {arch} model")


def _tokenizer(extra_special: list[str] | None = None) -> Any:
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS + (extra_special or []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="</s>",
        chat_template=CHAT_TEMPLATE,
    )
