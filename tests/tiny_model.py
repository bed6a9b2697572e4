"""A tiny random-weight llama GGUF with a real GPT-2 byte-level BPE tokenizer.

Tests need a model that real llama.cpp loads and runs in milliseconds, so
that tokenization, batching and sampling are exercised end to end without
downloading anything. The weights are random (seeded, so output is
reproducible); the tokenizer is real, so text round-trips exactly.
"""

from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

NUM_LAYERS = 2
EMBEDDING_DIM = 64
NUM_HEADS = 4
NUM_KV_HEADS = 2
FEED_FORWARD_DIM = 128
HEAD_DIM = EMBEDDING_DIM // NUM_HEADS

# A few common English pairs, in rank order, written in GPT-2's byte alphabet
# ("Ġ" is the space byte). Enough that "hello world" uses merged tokens.
MERGES = (
    "t h",
    "Ġ t",
    "h e",
    "i n",
    "e r",
    "a n",
    "r e",
    "o n",
    "Ġ a",
    "e n",
    "l l",
    "o r",
    "Ġ w",
    "Ġ s",
    "Ġt h",
    "Ġth e",
    "in g",
    "e d",
    "o u",
    "i s",
)
SPECIAL_TOKENS = ("<s>", "</s>", "<pad>")

# Byte tokens come first with id == byte value, then merges, then specials.
NUM_BYTE_TOKENS = 256
BOS_ID = NUM_BYTE_TOKENS + len(MERGES)
EOS_ID = BOS_ID + 1
PAD_ID = BOS_ID + 2
VOCAB_SIZE = PAD_ID + 1


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def vocab_tokens() -> list[str]:
    """Token strings in id order: bytes, merge results, specials."""
    byte_chars = byte_to_unicode()
    merged = [merge.replace(" ", "") for merge in MERGES]
    return [byte_chars[b] for b in range(256)] + merged + list(SPECIAL_TOKENS)


def _add_hparams(writer: gguf.GGUFWriter, n_ctx_train: int) -> None:
    writer.add_name("llmport-tiny")
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(EMBEDDING_DIM)
    writer.add_block_count(NUM_LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD_DIM)
    writer.add_head_count(NUM_HEADS)
    writer.add_head_count_kv(NUM_KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB_SIZE)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _add_tokenizer(writer: gguf.GGUFWriter, chat_template: str | None) -> None:
    num_normal = VOCAB_SIZE - len(SPECIAL_TOKENS)
    token_types = [gguf.TokenType.NORMAL] * num_normal
    token_types += [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocab_tokens())
    writer.add_token_types(token_types)
    writer.add_token_merges(list(MERGES))
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_pad_token_id(PAD_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)


def _weights(seed: int) -> dict[str, npt.NDArray[np.float32]]:
    """All tensors, numpy shape (out, in); norms are ones so scale stays sane."""
    rng = np.random.default_rng(seed)

    def normal(scale: float, *shape: int) -> npt.NDArray[np.float32]:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def ones() -> npt.NDArray[np.float32]:
        return np.ones(EMBEDDING_DIM, dtype=np.float32)

    kv_dim = NUM_KV_HEADS * HEAD_DIM
    tensors = {"token_embd.weight": normal(0.1, VOCAB_SIZE, EMBEDDING_DIM)}
    for i in range(NUM_LAYERS):
        tensors |= {
            f"blk.{i}.attn_norm.weight": ones(),
            f"blk.{i}.attn_q.weight": normal(0.1, EMBEDDING_DIM, EMBEDDING_DIM),
            f"blk.{i}.attn_k.weight": normal(0.1, kv_dim, EMBEDDING_DIM),
            f"blk.{i}.attn_v.weight": normal(0.1, kv_dim, EMBEDDING_DIM),
            f"blk.{i}.attn_output.weight": normal(0.05, EMBEDDING_DIM, EMBEDDING_DIM),
            f"blk.{i}.ffn_norm.weight": ones(),
            f"blk.{i}.ffn_gate.weight": normal(0.1, FEED_FORWARD_DIM, EMBEDDING_DIM),
            f"blk.{i}.ffn_up.weight": normal(0.1, FEED_FORWARD_DIM, EMBEDDING_DIM),
            f"blk.{i}.ffn_down.weight": normal(0.05, EMBEDDING_DIM, FEED_FORWARD_DIM),
        }
    tensors["output_norm.weight"] = ones()
    # Logit std ~ 0.2 * sqrt(64) = 1.6: varied enough that greedy is not constant.
    tensors["output.weight"] = normal(0.2, VOCAB_SIZE, EMBEDDING_DIM)
    return tensors


def write_tiny_model(
    path: Path,
    *,
    seed: int = 0,
    n_ctx_train: int = 4096,
    chat_template: str | None = None,
    split_max_tensors: int = 0,
    extra_strings: dict[str, str] | None = None,
) -> Path:
    """Write the tiny model to `path`; same arguments give identical bytes.

    With ``split_max_tensors`` it is split the way llama.cpp's gguf-split names shards
    (``NAME-00001-of-0000N.gguf``); the first shard's path is returned.
    """
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    _add_hparams(writer, n_ctx_train)
    _add_tokenizer(writer, chat_template)
    for key, value in (extra_strings or {}).items():
        writer.add_string(key, value)
    for name, tensor in _weights(seed).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors:
        return sorted(path.parent.glob(f"{path.stem}-00001-of-*.gguf"))[0]
    return path
