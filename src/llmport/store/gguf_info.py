"""Read and check a GGUF file's header in pure Python, before llama.cpp sees it.

llama.cpp can abort on a malformed file and its messages name no file. This reader walks the
header with a bounds check at every step, refuses any count or length the rest of the file
cannot hold before acting on it, steps over big arrays (the token list) without building them,
and checks every tensor the way llama.cpp's loader does (shape, type, packing, bytes inside
the file). So a truncated download or a hostile header fails here with an
``InvalidModelFile`` that names the problem, instead of later in a worker. It reads only the
header (mmap'd), never the tensor data: it runs before every load.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from llmport.errors import InvalidModelFile

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp rejects more.
MAX_KEY_BYTES = 65_535
MAX_TENSOR_NAME_BYTES = 63  # GGML_MAX_NAME (64) counts the terminating NUL.
MAX_STRING_BYTES = 64 << 20  # A chat template is kilobytes; 64 MiB means a broken length.
MAX_ARRAY_ITEMS = 1 << 30  # GGUF_MAX_ARRAY_ELEMENTS: llama.cpp refuses longer arrays.
MAX_PER_LAYER_ITEMS = 65_536  # Per-layer arrays (head counts) are read; longer ones never are.
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS: llama.cpp aborts on more (or none) instead of failing.
MAX_ELEMENTS = (1 << 63) - 1  # ggml counts a tensor's elements in an int64.
# The fewest bytes one metadata entry / tensor info takes: rejects absurd counts up front.
MIN_KV_BYTES = 8 + 1 + 4 + 1  # Key length, a 1-byte key, value type, a 1-byte value.
MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 4 + 8  # Name length, a 1-byte name, no dims, type, offset.
ALIGNMENT_KEY = "general.alignment"

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_VT = gguf.GGUFValueType
_SCALAR_FORMATS: dict[int, struct.Struct] = {
    _VT.UINT8: struct.Struct("<B"),
    _VT.INT8: struct.Struct("<b"),
    _VT.UINT16: struct.Struct("<H"),
    _VT.INT16: struct.Struct("<h"),
    _VT.UINT32: _U32,
    _VT.INT32: struct.Struct("<i"),
    _VT.FLOAT32: struct.Struct("<f"),
    _VT.BOOL: struct.Struct("<?"),
    _VT.UINT64: _U64,
    _VT.INT64: struct.Struct("<q"),
    _VT.FLOAT64: struct.Struct("<d"),
}
_NON_INT_TYPES = frozenset({int(_VT.FLOAT32), int(_VT.FLOAT64), int(_VT.BOOL)})

MetadataValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class ArrayField:
    """A metadata array left unread: its items start at ``offset`` in the file."""

    item_type: int
    count: int
    offset: int


_Fields = dict[str, MetadataValue | ArrayField]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's header entry.

    ``shape`` is in ggml order (row length first); ``offset`` is relative to
    ``GGUFInfo.data_offset``.
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    num_elements: int
    num_bytes: int

    @property
    def type_name(self) -> str:
        return ggml_type_name(self.ggml_type)


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What llmport needs to know about a model file without loading it."""

    path: Path
    file_size: int
    version: int
    architecture: str
    name: str | None
    context_length: int
    embedding_length: int
    block_count: int
    # None for architectures without attention heads (Mamba, RWKV); the largest value when
    # the file stores one per layer. head_count_kv falls back to head_count, as in llama.cpp.
    head_count: int | None
    head_count_kv: int | None
    sliding_window: int | None
    vocab_size: int | None
    chat_template: str | None
    file_type: int | None
    quantization: str
    num_params: int
    license: str | None
    data_offset: int
    metadata: dict[str, MetadataValue] = field(repr=False, hash=False)
    tensors: tuple[TensorInfo, ...] = field(repr=False)


class _Cursor:
    """A read position over the mapped file; running past its end raises InvalidModelFile."""

    def __init__(self, path: Path, buf: mmap.mmap) -> None:
        self.path = path
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.where = "the header"

    def invalid(self, problem: str) -> InvalidModelFile:
        return InvalidModelFile(f"{self.path}: not a valid GGUF model file: {problem}")

    def truncated(self) -> InvalidModelFile:
        ends = f"it ends ({self.size} bytes) in {self.where}"
        return self.invalid(f"the file is truncated (or a length in it is corrupt): {ends}")

    def take(self, num_bytes: int) -> int:
        """Step over ``num_bytes`` and return where they start."""
        start = self.pos
        if num_bytes > self.size - start:
            raise self.truncated()
        self.pos = start + num_bytes
        return start

    def unpack(self, fmt: struct.Struct) -> MetadataValue:
        value: MetadataValue = fmt.unpack_from(self.buf, self.take(fmt.size))[0]
        return value

    def u32(self) -> int:
        return int(self.unpack(_U32))

    def u64(self) -> int:
        return int(self.unpack(_U64))

    def string(self, max_bytes: int, what: str = "a string") -> str:
        num_bytes = self.u64()
        if num_bytes > max_bytes:
            raise self.invalid(f"{what} of {num_bytes} bytes in {self.where} (at most {max_bytes})")
        start = self.take(num_bytes)
        try:
            return self.buf[start : self.pos].decode("utf-8")
        except UnicodeDecodeError:
            raise self.invalid(f"a string in {self.where} is not valid UTF-8") from None

    def skip_strings(self, count: int) -> None:
        """Step over ``count`` strings reading only their lengths (Gemma: 262,144 in ~25 ms)."""
        unpack_from, buf, pos = _U64.unpack_from, self.buf, self.pos
        try:
            for _ in range(count):
                pos += 8 + unpack_from(buf, pos)[0]
        except (struct.error, OverflowError):
            raise self.truncated() from None
        if pos > self.size:
            raise self.truncated()
        self.pos = pos

    def check_count(self, count: int, min_item_bytes: int, what: str) -> None:
        if count > (self.size - self.pos) // min_item_bytes:
            raise self.invalid(
                f"{self.where} claims {count} {what}, more than the rest of the file can hold "
                "(corrupt or truncated)"
            )


def read_gguf_info(path: Path) -> GGUFInfo:
    """Check ``path`` is a complete GGUF file and read its header (arrays are skipped)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            file.seek(0, 2)
            if file.tell() == 0:
                raise InvalidModelFile(f"{path}: not a valid GGUF model file: the file is empty")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Cursor(path, buf))
    except OSError as exc:
        raise InvalidModelFile(f"{path}: cannot read the model file: {exc.strerror}") from exc


def _parse(cur: _Cursor) -> GGUFInfo:
    version, num_tensors, num_kvs = _read_header(cur)
    fields = _read_metadata(cur, num_kvs)
    alignment = _alignment(cur, fields)
    tensors = _read_tensor_infos(cur, num_tensors, alignment)
    data_offset = _padded(cur.pos, alignment)
    _check_tensor_data(cur, tensors, data_offset, alignment)
    _check_tokenizer(cur, fields)
    return _build_info(cur, version, fields, tuple(tensors), data_offset)


def _padded(num_bytes: int, alignment: int) -> int:
    return -(-num_bytes // alignment) * alignment


def _read_header(cur: _Cursor) -> tuple[int, int, int]:
    magic = cur.buf[:4]
    if magic != GGUF_MAGIC:
        raise cur.invalid(f"it does not start with {GGUF_MAGIC!r} (starts with {magic!r})")
    cur.take(4)
    version = cur.u32()
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            raise cur.invalid("big-endian GGUF files are not supported")
        raise cur.invalid(f"unsupported GGUF version {version} (supported: 2, 3)")
    num_tensors = cur.u64()
    num_kvs = cur.u64()
    cur.check_count(num_kvs, MIN_KV_BYTES, "metadata entries")
    cur.check_count(num_tensors, MIN_TENSOR_INFO_BYTES, "tensors")
    return version, num_tensors, num_kvs


def _read_metadata(cur: _Cursor, num_kvs: int) -> _Fields:
    fields: _Fields = {}
    for index in range(num_kvs):
        cur.where = f"metadata entry {index}"
        key = cur.string(MAX_KEY_BYTES, "a key")
        if not key or key in fields:
            raise cur.invalid(f"{cur.where} has an empty or duplicate key {key!r}")
        cur.where = f"metadata key {key!r}"
        value_type = cur.u32()
        if key == ALIGNMENT_KEY and value_type != _VT.UINT32:  # llama.cpp reads it as one.
            raise cur.invalid(f"{ALIGNMENT_KEY} has value type {value_type}, not uint32")
        fields[key] = _read_value(cur, value_type)
    return fields


def _read_value(cur: _Cursor, value_type: int) -> MetadataValue | ArrayField:
    if value_type == _VT.STRING:
        return cur.string(MAX_STRING_BYTES)
    if value_type == _VT.ARRAY:
        return _read_array(cur)
    fmt = _SCALAR_FORMATS.get(value_type)
    if fmt is None:
        raise cur.invalid(f"{cur.where} has unknown value type {value_type}")
    return cur.unpack(fmt)


def _read_array(cur: _Cursor) -> ArrayField:
    item_type = cur.u32()
    count = cur.u64()
    start = cur.pos
    if count > MAX_ARRAY_ITEMS:
        raise cur.invalid(f"{cur.where} claims {count} items (at most {MAX_ARRAY_ITEMS})")
    if item_type == _VT.STRING:
        cur.check_count(count, _U64.size, "strings")
        cur.skip_strings(count)
    elif (fmt := _SCALAR_FORMATS.get(item_type)) is not None:
        cur.check_count(count, fmt.size, "items")
        cur.take(count * fmt.size)
    else:
        nested = " (arrays do not nest)" if item_type == _VT.ARRAY else ""
        raise cur.invalid(f"{cur.where} is an array of unsupported item type {item_type}{nested}")
    return ArrayField(item_type, count, start)


def _alignment(cur: _Cursor, fields: _Fields) -> int:
    cur.where = "the metadata"
    alignment = _optional_int(cur, fields, ALIGNMENT_KEY)
    if alignment is None:
        return DEFAULT_ALIGNMENT
    if alignment <= 0 or alignment & (alignment - 1):
        raise cur.invalid(f"{ALIGNMENT_KEY} {alignment} is not a power of two")
    return alignment


def _read_tensor_infos(cur: _Cursor, num_tensors: int, alignment: int) -> list[TensorInfo]:
    cur.where = "the header"
    cur.check_count(num_tensors, MIN_TENSOR_INFO_BYTES, "tensors")  # What the metadata left.
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for index in range(num_tensors):
        cur.where = f"tensor info {index}"
        name = cur.string(MAX_TENSOR_NAME_BYTES, "a tensor name")
        if not name or name in names:
            raise cur.invalid(f"{cur.where} has an empty or duplicate tensor name {name!r}")
        names.add(name)
        cur.where = f"tensor info {name!r}"
        tensors.append(_read_tensor_info(cur, name, alignment))
    return tensors


def _read_tensor_info(cur: _Cursor, name: str, alignment: int) -> TensorInfo:
    num_dims = cur.u32()
    if num_dims > MAX_DIMS:
        raise cur.invalid(f"tensor {name!r} has {num_dims} dimensions (at most {MAX_DIMS})")
    shape = tuple(cur.u64() for _ in range(num_dims))
    ggml_type = cur.u32()
    offset = cur.u64()
    try:
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise cur.invalid(f"tensor {name!r} has unknown ggml type {ggml_type}") from None
    num_elements = math.prod(shape)
    if max(shape, default=0) > MAX_ELEMENTS or num_elements > MAX_ELEMENTS:
        raise cur.invalid(f"tensor {name!r} shape {shape} has more elements than ggml can count")
    if shape and shape[0] % block_size:
        raise cur.invalid(f"tensor {name!r} rows ({shape[0]}) are not whole {block_size} blocks")
    if offset % alignment:
        raise cur.invalid(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
    num_bytes = num_elements // block_size * type_size
    return TensorInfo(name, shape, ggml_type, offset, num_elements, num_bytes)


def _check_tensor_data(
    cur: _Cursor, tensors: list[TensorInfo], data_offset: int, alignment: int
) -> None:
    """Tensors are packed in header order, each padded to the alignment (llama.cpp refuses
    any other layout), so none overlap; a truncated download shows as the last ones' bytes
    running past the end."""
    cur.where = "the tensor data"
    expected = 0
    for tensor in tensors:
        name, offset = tensor.name, tensor.offset
        if tensor.num_bytes > cur.size:
            raise cur.invalid(
                f"tensor {name!r} shape {tensor.shape} ({tensor.type_name}) needs "
                f"{tensor.num_bytes} bytes, more than the whole file ({cur.size})"
            )
        if offset != expected:
            if data_offset + offset >= cur.size:
                how = f"past the end of the file ({cur.size} bytes)"
            else:
                how = "overlapping the tensor before it" if offset < expected else "after a gap"
            raise cur.invalid(
                f"tensor {name!r} data starts at offset {offset}, {how}: expected {expected} "
                f"(tensors are packed in order, each padded to {alignment} bytes)"
            )
        if (end := data_offset + offset + tensor.num_bytes) > cur.size:
            raise cur.invalid(
                f"the file is truncated: tensor {name!r} needs bytes up to {end}, "
                f"but the file has {cur.size}"
            )
        expected += _padded(tensor.num_bytes, alignment)


#: The tokenizer arrays llama.cpp indexes by token id, with the item type the GGUF spec gives.
_TOKEN_ARRAYS = {"tokenizer.ggml.scores": _VT.FLOAT32, "tokenizer.ggml.token_type": _VT.INT32}


def _check_tokenizer(cur: _Cursor, fields: _Fields) -> None:
    """llama.cpp reads score and type ``i`` for each token ``i``: a shorter array is read
    past its end, and a wrongly typed one is misread or aborts the process."""
    cur.where = "the tokenizer"
    tokens = _array(cur, fields, "tokenizer.ggml.tokens", _VT.STRING)
    _array(cur, fields, "tokenizer.ggml.merges", _VT.STRING)
    for key, item_type in _TOKEN_ARRAYS.items():
        array = _array(cur, fields, key, item_type)
        if tokens is not None and array is not None and array.count != tokens.count:
            raise cur.invalid(
                f"metadata key {key!r} has {array.count} items for {tokens.count} tokens"
            )


def _array(cur: _Cursor, fields: _Fields, key: str, item_type: int) -> ArrayField | None:
    """The array at ``key`` (None when absent); any other value or item type is refused."""
    value = fields.get(key)
    if value is not None and (not isinstance(value, ArrayField) or value.item_type != item_type):
        raise cur.invalid(f"metadata key {key!r} should be an array of {_VT(item_type).name}")
    return value


def _build_info(
    cur: _Cursor, version: int, fields: _Fields, tensors: tuple[TensorInfo, ...], data_offset: int
) -> GGUFInfo:
    cur.where = "the metadata"
    arch = _optional_str(cur, fields, "general.architecture")
    if arch is None:
        raise cur.invalid("missing metadata key 'general.architecture'")
    head_count = _optional_int(cur, fields, f"{arch}.attention.head_count", per_layer=True)
    head_count_kv = _optional_int(cur, fields, f"{arch}.attention.head_count_kv", per_layer=True)
    tokens = fields.get("tokenizer.ggml.tokens")
    file_type = _optional_int(cur, fields, "general.file_type")
    return GGUFInfo(
        path=cur.path,
        file_size=cur.size,
        version=version,
        architecture=arch,
        name=_optional_str(cur, fields, "general.name"),
        context_length=_required_int(cur, fields, f"{arch}.context_length", low=1),
        embedding_length=_required_int(cur, fields, f"{arch}.embedding_length", low=1),
        block_count=_required_int(cur, fields, f"{arch}.block_count", low=1, high=MAX_LAYERS),
        head_count=head_count,
        head_count_kv=head_count if head_count_kv is None else head_count_kv,
        sliding_window=_optional_int(cur, fields, f"{arch}.attention.sliding_window"),
        vocab_size=tokens.count if isinstance(tokens, ArrayField) else None,
        chat_template=_optional_str(cur, fields, "tokenizer.chat_template"),
        file_type=file_type,
        quantization=_quantization(file_type, tensors),
        num_params=sum(tensor.num_elements for tensor in tensors),
        license=_optional_str(cur, fields, "general.license"),
        data_offset=data_offset,
        metadata={k: v for k, v in fields.items() if not isinstance(v, ArrayField)},
        tensors=tensors,
    )


def _optional_str(cur: _Cursor, fields: _Fields, key: str) -> str | None:
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise cur.invalid(f"metadata key {key!r} should be a string, not {value!r}")
    return value


def _required_int(
    cur: _Cursor, fields: _Fields, key: str, *, low: int, high: int = MAX_ELEMENTS
) -> int:
    value = _optional_int(cur, fields, key)
    if value is None:
        raise cur.invalid(f"missing metadata key {key!r}")
    if not low <= value <= high:
        raise cur.invalid(f"metadata key {key!r} is {value}, outside {low}..{high}")
    return value


def _optional_int(
    cur: _Cursor, fields: _Fields, key: str, *, per_layer: bool = False
) -> int | None:
    """A count or size (never negative); with ``per_layer`` an array of them gives its
    largest item."""
    value = fields.get(key)
    if per_layer and isinstance(value, ArrayField):
        value = _max_of_int_array(cur, value, key)
    if value is not None and type(value) is not int:
        raise cur.invalid(f"metadata key {key!r} should be an integer, not {value!r}")
    if value is not None and value < 0:
        raise cur.invalid(f"metadata key {key!r} is negative ({value})")
    return value


def _max_of_int_array(cur: _Cursor, array: ArrayField, key: str) -> int | None:
    fmt = _SCALAR_FORMATS.get(array.item_type)
    if fmt is None or array.item_type in _NON_INT_TYPES or array.count > MAX_PER_LAYER_ITEMS:
        raise cur.invalid(f"metadata key {key!r} should be integers, one per layer")
    values = struct.unpack_from(f"<{array.count}{fmt.format[-1]}", cur.buf, array.offset)
    return max(values, default=None)


def _quantization(file_type: int | None, tensors: tuple[TensorInfo, ...]) -> str:
    """The name llama.cpp gives ``general.file_type``, else the type holding most weights."""
    if file_type in {int(t) for t in gguf.LlamaFileType if t != gguf.LlamaFileType.GUESSED}:
        name: str = gguf.LlamaFileType(file_type).name
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    num_elements: Counter[int] = Counter()
    for tensor in tensors:
        num_elements[tensor.ggml_type] += tensor.num_elements
    if not num_elements:
        return "unknown"
    return ggml_type_name(num_elements.most_common(1)[0][0])


def ggml_type_name(ggml_type: int) -> str:
    """``12`` -> ``"Q4_K"``."""
    name: str = gguf.GGMLQuantizationType(ggml_type).name
    return name


#: llama.cpp's ``LLAMA_POOLING_TYPE_RANK``: a reranker (a classifier head over the pair).
RANK_POOLING = 4


def is_reranker(info: GGUFInfo) -> bool:
    """The file is a reranker: its ``{arch}.pooling_type`` is rank pooling."""
    return info.metadata.get(f"{info.architecture}.pooling_type") == RANK_POOLING
