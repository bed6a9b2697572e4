"""read_gguf_info: good files parse; every kind of broken file is an InvalidModelFile."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from llmport.errors import InvalidModelFile
from llmport.store.embedded import embedded_model_path
from llmport.store.gguf_info import GGUFInfo, read_gguf_info

TOKENS = ["<unk>", "<s>", "</s>", "hello", "world", "é"]


def write_tiny_gguf(
    path: Path,
    *,
    file_type: int | None = gguf.LlamaFileType.ALL_F32,
    head_count_kv: int | list[int] = 1,
    alignment: int | None = None,
) -> Path:
    """A two-tensor llama-architecture GGUF with the usual keys."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny")
    writer.add_context_length(128)
    writer.add_embedding_length(8)
    writer.add_block_count(3)
    writer.add_head_count(2)
    writer.add_head_count_kv(head_count_kv)
    writer.add_license("mit")
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([0.0] * len(TOKENS))
    if file_type is not None:
        writer.add_file_type(file_type)
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_tensor("token_embd.weight", np.ones((len(TOKENS), 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.arange(8, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def header(num_tensors: int, num_kvs: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, num_tensors, num_kvs)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def test_reads_a_good_file(tiny: Path) -> None:
    info = read_gguf_info(tiny)
    assert isinstance(info, GGUFInfo)
    assert info.path == tiny
    assert info.file_size == tiny.stat().st_size
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.name == "tiny"
    assert (info.context_length, info.embedding_length, info.block_count) == (128, 8, 3)
    assert (info.head_count, info.head_count_kv, info.sliding_window) == (2, 1, None)
    assert info.vocab_size == len(TOKENS)
    assert info.chat_template is not None and "messages" in info.chat_template
    assert info.file_type == 0
    assert info.quantization == "F32"
    assert info.num_params == len(TOKENS) * 8 + 8
    assert info.license == "mit"
    assert info.data_offset % 32 == 0


def test_metadata_holds_scalars_only(tiny: Path) -> None:
    metadata = read_gguf_info(tiny).metadata
    assert metadata["llama.context_length"] == 128
    assert metadata["general.name"] == "tiny"
    assert "tokenizer.ggml.tokens" not in metadata
    assert "tokenizer.ggml.scores" not in metadata


def test_tensor_infos(tiny: Path) -> None:
    tensors = {tensor.name: tensor for tensor in read_gguf_info(tiny).tensors}
    embd, norm = tensors["token_embd.weight"], tensors["output_norm.weight"]
    assert embd.shape == (8, len(TOKENS))  # ggml order: row length first
    assert (embd.type_name, embd.num_bytes) == ("F32", len(TOKENS) * 8 * 4)
    assert (norm.type_name, norm.num_elements, norm.num_bytes) == ("F16", 8, 16)
    assert norm.offset % 32 == 0


def test_custom_alignment(tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_gguf(tmp_path / "a.gguf", alignment=64))
    assert info.data_offset % 64 == 0
    assert all(tensor.offset % 64 == 0 for tensor in info.tensors)


def test_per_layer_head_count_kv_gives_the_largest(tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_gguf(tmp_path / "a.gguf", head_count_kv=[1, 2, 1]))
    assert info.head_count_kv == 2


def test_quantization_without_file_type_is_the_dominant_tensor_type(tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_gguf(tmp_path / "a.gguf", file_type=None))
    assert (info.file_type, info.quantization) == (None, "F32")


def test_quantization_names_the_file_type(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "a.gguf", file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M)
    assert read_gguf_info(path).quantization == "Q4_K_M"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"GG", "does not start with"),
        (b"PK\x03\x04" + bytes(100), "does not start with"),
        (header(0, 0, version=1), "version 1"),
        (header(0, 0, version=7), "version 7"),
        (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
        (header(0, 0)[:10], "truncated"),
        (header(0, 0), "general.architecture"),
    ],
    ids=["empty", "short", "zip", "v1", "v7", "big-endian", "cut-counts", "no-arch"],
)
def test_rejects_broken_headers(tmp_path: Path, data: bytes, message: str) -> None:
    path = write_bytes(tmp_path / "bad.gguf", data)
    with pytest.raises(InvalidModelFile, match=message) as caught:
        read_gguf_info(path)
    assert str(path) in caught.value.message


def test_rejects_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="cannot read"):
        read_gguf_info(tmp_path / "nope.gguf")
    with pytest.raises(InvalidModelFile, match="cannot read"):
        read_gguf_info(tmp_path)


@pytest.mark.parametrize(
    ("marker", "where"),
    [
        (b"llama.context_length", "metadata"),
        (b"tokenizer.ggml.tokens", "metadata key 'tokenizer.ggml.tokens'"),
        (b"hello", "metadata key 'tokenizer.ggml.tokens'"),  # inside the skipped token list
        (b"output_norm.weight", "tensor info"),
    ],
)
def test_rejects_a_file_truncated_in_the_header(
    tiny: Path, tmp_path: Path, marker: bytes, where: str
) -> None:
    data = tiny.read_bytes()
    cut = data.index(marker) + len(marker) + 5
    path = write_bytes(tmp_path / "cut.gguf", data[:cut])
    with pytest.raises(InvalidModelFile, match=f"truncated.*{where}"):
        read_gguf_info(path)


def end_of_tensor_data(path: Path) -> int:
    info = read_gguf_info(path)
    return info.data_offset + max(tensor.offset + tensor.num_bytes for tensor in info.tensors)


@pytest.mark.parametrize("num_missing", [1, 16, 40])
def test_rejects_a_file_truncated_in_the_tensor_data(
    tiny: Path, tmp_path: Path, num_missing: int
) -> None:
    cut = end_of_tensor_data(tiny) - num_missing
    path = write_bytes(tmp_path / "cut.gguf", tiny.read_bytes()[:cut])
    with pytest.raises(InvalidModelFile, match="truncated: tensor"):
        read_gguf_info(path)


def test_accepts_a_file_without_padding_after_the_last_tensor(tiny: Path, tmp_path: Path) -> None:
    """llama.cpp reads each tensor by its offset, so the final padding is optional."""
    cut = end_of_tensor_data(tiny)
    assert cut < tiny.stat().st_size
    path = write_bytes(tmp_path / "cut.gguf", tiny.read_bytes()[:cut])
    assert read_gguf_info(path).num_params == read_gguf_info(tiny).num_params


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_dims", struct.pack("<I", 9), "dimensions"),
        ("ggml_type", struct.pack("<I", 99), "unknown ggml type 99"),
        ("offset", struct.pack("<Q", 3), "not aligned"),
    ],
)
def test_rejects_bad_tensor_infos(
    tiny: Path, tmp_path: Path, field: str, value: bytes, message: str
) -> None:
    data = bytearray(tiny.read_bytes())
    name = b"output_norm.weight"
    num_dims_at = data.index(name) + len(name)  # output_norm is 1-D: n_dims, ne0, type, offset
    at = {"num_dims": num_dims_at, "ggml_type": num_dims_at + 12, "offset": num_dims_at + 16}
    data[at[field] : at[field] + len(value)] = value
    with pytest.raises(InvalidModelFile, match=message):
        read_gguf_info(write_bytes(tmp_path / "bad.gguf", bytes(data)))


def kv(key: bytes, value_type: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", value_type) + payload


ARCH = kv(b"general.architecture", gguf.GGUFValueType.STRING, gguf_string(b"llama"))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([kv(b"x", gguf.GGUFValueType.ARRAY, struct.pack("<IQ", 8, 2**62))], "claims"),
        ([kv(b"x", gguf.GGUFValueType.ARRAY, struct.pack("<IQ", 4, 2**40))], "claims"),
        ([kv(b"x", gguf.GGUFValueType.STRING, struct.pack("<Q", 2**61))], "string of"),
        ([kv(b"x", gguf.GGUFValueType.ARRAY, struct.pack("<IQ", 9, 1))], "unsupported item"),
        ([kv(b"x", 42, b"\x00" * 8)], "unknown value type 42"),
        ([ARCH, ARCH], "duplicate key"),
        ([kv(b"general.name", gguf.GGUFValueType.STRING, gguf_string(b"\xff\xfe"))], "UTF-8"),
        ([gguf_string(b"\xc3(") + struct.pack("<IB", 0, 1)], "UTF-8"),
        ([kv(b"general.architecture", gguf.GGUFValueType.UINT32, b"\x01\x00\x00\x00")], "string"),
    ],
    ids=[
        "huge-string-array",
        "huge-int-array",
        "huge-string",
        "nested-array",
        "unknown-type",
        "duplicate-key",
        "non-utf8-value",
        "non-utf8-key",
        "arch-not-string",
    ],
)
def test_rejects_bad_metadata_fast(tmp_path: Path, entries: list[bytes], message: str) -> None:
    data = header(0, len(entries)) + b"".join(entries) + bytes(64)
    path = write_bytes(tmp_path / "bad.gguf", data)
    start = time.perf_counter()
    with pytest.raises(InvalidModelFile, match=message):
        read_gguf_info(path)
    assert time.perf_counter() - start < 1.0  # no loop over the claimed count


@pytest.mark.parametrize(("num_tensors", "num_kvs"), [(2**63, 0), (0, 2**64 - 1)])
def test_rejects_absurd_header_counts_fast(tmp_path: Path, num_tensors: int, num_kvs: int) -> None:
    path = write_bytes(tmp_path / "bad.gguf", header(num_tensors, num_kvs) + bytes(64))
    start = time.perf_counter()
    with pytest.raises(InvalidModelFile, match="more than the rest of the file"):
        read_gguf_info(path)
    assert time.perf_counter() - start < 1.0  # no loop over the claimed count


def test_rejects_a_string_array_running_past_the_end(tmp_path: Path) -> None:
    items = gguf_string(b"a") + struct.pack("<Q", 2**40)  # second string claims a terabyte
    entry = kv(b"x", gguf.GGUFValueType.ARRAY, struct.pack("<IQ", 8, 3) + items + bytes(16))
    path = write_bytes(tmp_path / "bad.gguf", header(0, 1) + entry)
    with pytest.raises(InvalidModelFile, match="truncated"):
        read_gguf_info(path)


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embedded_model_path(tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_reads_the_real_gemma_file(gemma_path: Path) -> None:
    info = read_gguf_info(gemma_path)
    assert info.architecture == "gemma3"
    assert info.context_length == 32768
    assert info.vocab_size == 262144
    assert "Q4_K" in info.quantization
    assert (info.block_count, info.head_count, info.head_count_kv) == (18, 4, 1)
    assert info.sliding_window == 512
    assert 260_000_000 < info.num_params < 280_000_000
