"""Truncated, corrupted and hostile GGUF files: refused by the header check, or contained.

The fuzz test mutates the tiny model (seeded, so every run tries the same files) and asks
``read_gguf_info`` about each mutant: it raises InvalidModelFile, or the mutant is still well
formed (gguf-py reads the same tensors from it); nothing else, never slowly, and never with
memory in proportion to a count the file claims. End to end, files that pass the check but
that llama.cpp refuses or crashes on fail only their own request, with a JSON error, while
the server goes on serving the good model from the same worker.
"""

from __future__ import annotations

import contextlib
import random
import struct
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import httpx
import numpy as np
import numpy.typing as npt
import pytest

from llmport.errors import InvalidModelFile
from llmport.store.gguf_info import GGUFInfo, read_gguf_info
from server_helpers import Server, running_server

SEED = 20_240_611
U64_VALUES = (0, 2**32 - 1, 2**60, 2**63 - 1, 2**64 - 1)  # And the file size, and one more.
U32_VALUES = (0, 9, 13, 2**31, 2**32 - 1)  # 9 is an array, 13 one past the last value type.
MAX_SLOTS_PER_FIELD = 4  # The token list has 279 lengths: a sample of them is enough.
MAX_SECONDS_PER_FILE = 1.0  # Generous for a busy machine: acting on a claimed 2**60 takes ages.
MAX_PEAK_BYTES = 4 << 20  # The tiny model is 445 KB: nothing may allocate what a count claims.


@dataclass(frozen=True, slots=True)
class Mutant:
    label: str
    patches: tuple[tuple[int, bytes], ...] = ()
    size: int | None = None  # Truncate to this many bytes.


class WorkFile:
    """One copy of the model that each mutant patches in place and then restores (fast)."""

    def __init__(self, path: Path, original: bytes) -> None:
        self.path, self.original = path, original
        path.write_bytes(original)

    @contextlib.contextmanager
    def mutated(self, mutant: Mutant) -> Iterator[Path]:
        with self.path.open("r+b") as file:
            for offset, data in mutant.patches:
                file.seek(offset)
                file.write(data)
            if mutant.size is not None:
                file.truncate(mutant.size)
        try:
            yield self.path
        finally:
            with self.path.open("r+b") as file:
                for offset, data in mutant.patches:
                    file.seek(offset)
                    file.write(self.original[offset : offset + len(data)])
                if mutant.size is not None:
                    file.seek(mutant.size)
                    file.write(self.original[mutant.size :])


def address(array: npt.NDArray[np.generic]) -> int:
    pointer: int = array.__array_interface__["data"][0]
    return pointer


def integer_slots(path: Path, rng: random.Random) -> list[tuple[str, int, int]]:
    """(label, offset, width) of the header's integers: counts, lengths, types, dims, offsets."""
    reader = gguf.GGUFReader(path)
    base = address(reader.data)
    fields = [(name, field.parts) for name, field in reader.fields.items()]
    first, *middle, last = reader.tensors  # Alike: the first, the last and a sample between.
    for tensor in [first, *rng.sample(middle, MAX_SLOTS_PER_FIELD), last]:
        fields.append((f"tensor {tensor.name}", tensor.field.parts))
    slots: list[tuple[str, int, int]] = []
    for name, parts in fields:
        found = [
            (f"{name}@{start}", start, part.itemsize)
            for part in parts
            if part.dtype.kind in "iu" and part.itemsize >= 4
            for start in range(
                address(part) - base, address(part) - base + part.nbytes, part.itemsize
            )
        ]
        many = len(found) > 2 * MAX_SLOTS_PER_FIELD
        slots += rng.sample(found, MAX_SLOTS_PER_FIELD) if many else found
    return slots


def overwrite_mutants(info: GGUFInfo, slots: list[tuple[str, int, int]]) -> list[Mutant]:
    """Each integer of the header replaced by huge, zero and boundary values."""
    mutants = []
    for label, offset, width in slots:
        values = (*U64_VALUES, info.file_size, info.file_size + 1) if width == 8 else U32_VALUES
        fmt = "<Q" if width == 8 else "<I"
        mutants += [Mutant(f"{label}={v}", ((offset, struct.pack(fmt, v)),)) for v in values]
    return mutants


def tensor_offset_mutants(data: bytes, info: GGUFInfo) -> list[Mutant]:
    """Each tensor's data offset moved past the end, onto its neighbour, off the alignment."""
    mutants = []
    past_end = info.file_size - info.data_offset + 32
    for index, tensor in enumerate(info.tensors):
        at = after_name(data, tensor.name) + 4 + 8 * len(tensor.shape) + 4
        moves = {"past-eof": past_end, "huge": 2**63 - 32, "gap": tensor.offset + 32}
        moves["misaligned"] = tensor.offset + 1
        if index:
            moves["overlap"] = info.tensors[index - 1].offset
        for how, value in moves.items():
            mutants.append(Mutant(f"{tensor.name} offset {how}", ((at, struct.pack("<Q", value)),)))
    return mutants


def flip_mutants(info: GGUFInfo, rng: random.Random, count: int) -> list[Mutant]:
    """Random bytes of the header (where every count and length lives) set to random values."""
    mutants = []
    for index in range(count):
        spots = sorted(rng.sample(range(info.data_offset), rng.randint(1, 4)))
        patches = tuple((spot, bytes([rng.randrange(256)])) for spot in spots)
        mutants.append(Mutant(f"flip {index} at {spots}", patches))
    return mutants


def truncation_mutants(info: GGUFInfo, rng: random.Random, count: int) -> list[Mutant]:
    """Cut in the header, on every field boundary nearby, in the data and at each tensor's end."""
    ends = [info.data_offset + t.offset + t.num_bytes for t in info.tensors]
    sizes = {0, 1, 3, 4, 7, 8, 15, 16, 23, 24, info.data_offset - 1, info.data_offset}
    sizes |= {end + delta for end in ends for delta in (-1, 0, 1)}
    sizes |= set(rng.sample(range(info.data_offset), count // 2))
    sizes |= set(rng.sample(range(info.data_offset, info.file_size), count // 2))
    return [Mutant(f"cut at {size}", size=size) for size in sorted(sizes) if size < info.file_size]


def after_name(data: bytes, name: str) -> int:
    """Where the metadata entry or tensor info called ``name`` continues after its name (at
    the value type, or at ``n_dims``)."""
    raw = name.encode()
    return data.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw)


def assert_well_formed(path: Path, info: GGUFInfo) -> None:
    """A mutant the check accepts reads the same in gguf-py, with every tensor in the file."""
    reader = gguf.GGUFReader(path)
    assert [t.name for t in reader.tensors] == [t.name for t in info.tensors]
    for mine, theirs in zip(info.tensors, reader.tensors, strict=True):
        assert mine.shape == tuple(int(n) for n in theirs.shape)
        assert mine.ggml_type == int(theirs.tensor_type)
        assert info.data_offset + mine.offset == theirs.data_offset
        assert theirs.data_offset + mine.num_bytes <= info.file_size
    assert set(info.metadata) <= set(reader.fields)


@pytest.mark.timeout(120)
def test_mutants_are_refused_or_still_well_formed(tiny_model_path: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tiny_model_path.read_bytes()
    info = read_gguf_info(tiny_model_path)
    mutants = overwrite_mutants(info, integer_slots(tiny_model_path, rng))
    mutants += tensor_offset_mutants(data, info)
    mutants += flip_mutants(info, rng, 300)
    mutants += truncation_mutants(info, rng, 150)
    work = WorkFile(tmp_path / "mutant.gguf", data)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    slowest, peak = 0.0, 0
    tracemalloc.start()
    started = time.perf_counter()
    try:
        for mutant in mutants:
            with work.mutated(mutant) as path:
                outcome, seconds, num_bytes = check_one(path, mutant, failures)
            outcomes[outcome] += 1
            slowest, peak = max(slowest, seconds), max(peak, num_bytes)
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert not failures, "\n".join(failures[:20])
    assert outcomes["refused"] > len(mutants) // 2 and outcomes["accepted"] > 0, outcomes
    assert slowest < MAX_SECONDS_PER_FILE, f"one file took {slowest:.3f}s"
    assert peak < MAX_PEAK_BYTES, f"one file made the check allocate {peak} bytes"
    print(f"{len(mutants)} mutants in {elapsed:.2f}s: {dict(outcomes)}")


def check_one(path: Path, mutant: Mutant, failures: list[str]) -> tuple[str, float, int]:
    """Check one mutant: (outcome, seconds, peak bytes); a failure is noted, not raised."""
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    start = time.perf_counter()
    outcome = "accepted"
    try:
        info = read_gguf_info(path)
    except InvalidModelFile as error:
        outcome = "refused"
        if str(path) not in error.message:
            failures.append(f"{mutant.label}: the message names no file: {error.message}")
    except Exception as error:  # Any other exception is what this test hunts.
        failures.append(f"{mutant.label}: {type(error).__name__}: {error}")
        outcome = "crashed"
    seconds = time.perf_counter() - start
    num_bytes = tracemalloc.get_traced_memory()[1] - before
    if outcome == "accepted":
        tracemalloc.stop()  # gguf-py is the oracle here: its memory is not the check's.
        try:
            assert_well_formed(path, info)
        except Exception as error:
            failures.append(f"{mutant.label}: accepted but not well formed: {error!r}")
        tracemalloc.start()
    return outcome, seconds, num_bytes


# -- hand-made hostile headers ----------------------------------------------------------------

_VT = gguf.GGUFValueType


def string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def kv(key: bytes, value_type: int, payload: bytes) -> bytes:
    return string(key) + struct.pack("<I", value_type) + payload


def u32_kv(key: bytes, value: int) -> bytes:
    return kv(key, _VT.UINT32, struct.pack("<I", value))


def tensor(name: bytes, shape: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    dims = struct.pack(f"<I{len(shape)}Q", len(shape), *shape)
    return string(name) + dims + struct.pack("<IQ", ggml_type, offset)


def array(item_type: int, count: int, items: bytes = b"") -> bytes:
    return struct.pack("<IQ", item_type, count) + items


LLAMA = [
    kv(b"general.architecture", _VT.STRING, string(b"llama")),
    u32_kv(b"llama.context_length", 128),
    u32_kv(b"llama.embedding_length", 8),
]
BLOCKS = u32_kv(b"llama.block_count", 1)
NORM = tensor(b"norm", (8,))  # 32 bytes of F32 at offset 0.


def gguf_file(kvs: list[bytes], tensors: list[bytes], num_data_bytes: int = 32) -> bytes:
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    header += b"".join(kvs) + b"".join(tensors)
    return header + bytes(-len(header) % 32) + bytes(num_data_bytes)


def with_kv(*entries: bytes) -> bytes:
    return gguf_file([*LLAMA, BLOCKS, *entries], [])


def with_tensors(*tensors: bytes) -> bytes:
    return gguf_file([*LLAMA, BLOCKS], list(tensors), num_data_bytes=128)


TOKENS = kv(b"tokenizer.ggml.tokens", _VT.ARRAY, array(_VT.STRING, 2, string(b"a") + string(b"b")))
HOSTILE = {
    "array-2^60": (with_kv(kv(b"x", _VT.ARRAY, array(_VT.UINT8, 2**60))), "claims"),
    "strings-2^60": (with_kv(kv(b"x", _VT.ARRAY, array(_VT.STRING, 2**60))), "claims"),
    "array-2^31": (with_kv(kv(b"x", _VT.ARRAY, array(_VT.INT8, 2**31))), "claims"),
    "string-past-eof": (with_kv(kv(b"x", _VT.STRING, struct.pack("<Q", 4096))), "truncated"),
    "string-2^63": (with_kv(kv(b"x", _VT.STRING, struct.pack("<Q", 2**63))), "string of"),
    "key-2^64-1": (with_kv(struct.pack("<Q", 2**64 - 1)), "key of"),
    "nested-array": (with_kv(kv(b"x", _VT.ARRAY, array(_VT.ARRAY, 1))), "do not nest"),
    "unknown-type": (with_kv(kv(b"x", 13, bytes(8))), "unknown value type 13"),
    "alignment-48": (with_kv(u32_kv(b"general.alignment", 48)), "power of two"),
    "alignment-u64": (
        with_kv(kv(b"general.alignment", _VT.UINT64, struct.pack("<Q", 32))),
        "not uint32",
    ),
    "no-layers": (gguf_file([*LLAMA, u32_kv(b"llama.block_count", 0)], []), "is 0, outside"),
    "2^31-layers": (gguf_file([*LLAMA, u32_kv(b"llama.block_count", 2**31)], []), "1..512"),
    "kvs-2^63": (b"GGUF" + struct.pack("<IQQ", 3, 0, 2**63) + bytes(64), "claims"),
    "tensors-2^60": (b"GGUF" + struct.pack("<IQQ", 3, 2**60, 3) + b"".join(LLAMA), "claims"),
    "tensor-past-eof": (with_tensors(tensor(b"norm", (8,), offset=4096)), "past the end"),
    "tensor-2^63": (with_tensors(tensor(b"norm", (8,), offset=2**63)), "past the end"),
    "tensor-too-big": (with_tensors(tensor(b"norm", (2**40,))), "more than the whole file"),
    "overlap": (with_tensors(NORM, tensor(b"other", (8,))), "overlapping"),
    "gap": (with_tensors(NORM, tensor(b"other", (8,), offset=64)), "after a gap"),
    "misaligned": (with_tensors(tensor(b"norm", (8,), offset=4)), "not aligned"),
    "five-dims": (with_tensors(tensor(b"norm", (1, 1, 1, 1, 8))), "5 dimensions"),
    "elements-overflow": (with_tensors(tensor(b"w", (2**32, 2**32))), "more elements"),
    "dim-2^63": (with_tensors(tensor(b"w", (2**63, 0))), "more elements"),
    "unknown-ggml-type": (with_tensors(tensor(b"norm", (8,), ggml_type=4)), "unknown ggml"),
    "partial-block": (with_tensors(tensor(b"q", (33,), ggml_type=2)), "whole 32 blocks"),
    "duplicate-tensor": (with_tensors(NORM, NORM), "duplicate tensor name"),
    "empty-tensor-name": (with_tensors(tensor(b"", (8,))), "empty or duplicate"),
    "long-tensor-name": (with_tensors(tensor(b"n" * 64, (8,))), "tensor name of 64"),
    "tokens-not-strings": (
        with_kv(kv(b"tokenizer.ggml.tokens", _VT.ARRAY, array(_VT.INT32, 1, bytes(4)))),
        "array of STRING",
    ),
    "scores-short": (
        with_kv(TOKENS, kv(b"tokenizer.ggml.scores", _VT.ARRAY, array(_VT.FLOAT32, 1, bytes(4)))),
        "1 items for 2 tokens",
    ),
}


@pytest.mark.parametrize(("data", "message"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hand_made_hostile_headers_are_refused_fast(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(InvalidModelFile, match=message) as caught:
        read_gguf_info(path)
    assert time.perf_counter() - start < MAX_SECONDS_PER_FILE
    assert caught.value.message.startswith(f"{path}: ")


def test_the_hand_made_base_file_is_valid(tmp_path: Path) -> None:
    """The hostile headers above differ from this valid one only in what they break."""
    path = tmp_path / "ok.gguf"
    path.write_bytes(
        gguf_file([*LLAMA, BLOCKS, TOKENS], [NORM, tensor(b"other", (8,), offset=32)], 64)
    )
    info = read_gguf_info(path)
    assert [(t.name, t.offset) for t in info.tensors] == [("norm", 0), ("other", 32)]
    assert info.vocab_size == 2


# -- end to end: what passes the check but not llama.cpp fails only its own request ------------


def patched(data: bytes, path: Path, *patches: tuple[int, bytes]) -> Path:
    mutable = bytearray(data)
    for offset, value in patches:
        mutable[offset : offset + len(value)] = value
    path.write_bytes(bytes(mutable))
    return path


def bad_models(good: Path, folder: Path) -> dict[str, Path]:
    """Mutants of the tiny model, by what they do to it."""
    data = good.read_bytes()
    info = read_gguf_info(good)
    tokens = after_name(data, "tokenizer.ggml.tokens")  # Value type, item type, count.
    eps = after_name(data, "llama.attention.layer_norm_rms_epsilon") + 4
    attn_k = after_name(data, "blk.0.attn_k.weight") + 4  # Its dims: (64, 32).
    bang = data.index(string(b"!") + string(b'"')) + 8  # Token 33, "!", becomes a second '"'.
    embd = next(t for t in info.tensors if t.name == "token_embd.weight")
    nans = struct.pack("<f", float("nan")) * embd.num_elements
    cut = info.data_offset + embd.offset + 100
    return {
        "huge_token_count": patched(data, folder / "huge.gguf", (tokens + 8, b"\xff" * 8)),
        "truncated": patched(data[:cut], folder / "truncated.gguf"),
        "wrong_shape": patched(data, folder / "shape.gguf", (attn_k, struct.pack("<QQ", 32, 64))),
        "duplicate_token": patched(data, folder / "duplicate.gguf", (bang, b'"')),
        "nan_epsilon": patched(data, folder / "eps.gguf", (eps, struct.pack("<f", float("nan")))),
        "nan_weights": patched(data, folder / "nan.gguf", (info.data_offset + embd.offset, nans)),
    }


def complete(server: Server, model: Path) -> httpx.Response:
    body = {"model": str(model), "prompt": "hello", "max_tokens": 3}
    return httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=60)


def error_of(response: httpx.Response) -> dict[str, str]:
    error: dict[str, str] = response.json()["error"]
    return error


def worker_of(server: Server, model: Path) -> int:
    """The pid of the worker that has ``model`` mapped (llama.cpp mmaps the weights)."""
    (pid,) = (
        worker.pid
        for worker in server.workers()
        if any(m.path == str(model) for m in worker.memory_maps())
    )
    return int(pid)


#: (mutant, status, code, what the message says) for files that fail.
FAILURES = (
    ("huge_token_count", 400, "invalid_model_file", "claims"),  # The check refuses these.
    ("truncated", 400, "invalid_model_file", "truncated"),
    ("wrong_shape", 500, "model_load_failed", "could not load"),  # llama.cpp refuses it.
    ("duplicate_token", 500, "model_load_failed", "SIGABRT"),  # llama.cpp aborts loading it.
    ("nan_epsilon", 503, "worker_crashed", "SIGABRT"),  # llama.cpp aborts in its first step.
)


@pytest.mark.timeout(300)
def test_bad_files_fail_only_their_own_request(tiny_model_path: Path, tmp_path: Path) -> None:
    bad = bad_models(tiny_model_path, tmp_path)
    for name in ("wrong_shape", "duplicate_token", "nan_epsilon", "nan_weights"):
        read_gguf_info(bad[name])  # These pass the check: only llama.cpp can tell.
    # The worker turns ggml's backtrace off (its debugger fork can hang a crashing worker):
    # the crashes below must surface in seconds without any help from the environment.
    with running_server(tmp_path) as server:
        assert complete(server, tiny_model_path).status_code == 200
        good_worker = worker_of(server, tiny_model_path)
        for name, status, code, says in FAILURES:
            response = complete(server, bad[name])
            assert response.status_code == status, (name, response.text)
            error = error_of(response)
            assert error["code"] == code, (name, error)
            assert says in error["message"], (name, error)
        # NaN weights load and run: the answer is garbage, but it is an answer or a JSON error.
        response = complete(server, bad["nan_weights"])
        assert response.status_code == 200 or error_of(response)["message"], response.text
        assert complete(server, tiny_model_path).status_code == 200
        assert worker_of(server, tiny_model_path) == good_worker  # Never restarted.
        assert httpx.get(f"{server.base_url}/health").status_code == 200
