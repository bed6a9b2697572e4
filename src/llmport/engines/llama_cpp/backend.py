"""llama.cpp through llama-cpp-python's low-level ctypes API.

All ctypes calls of llmport live here, behind typed wrappers with a
deterministic ``close()``. The batch arrays are numpy buffers owned by this
object, so filling a batch is a few vectorised copies, not a Python loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Literal

import llama_cpp as llama
import numpy as np

from llmport.config import EngineConfig
from llmport.engines.batching.backend import DecodeBatch, FloatMatrix, KvCacheFull
from llmport.engines.llama_cpp.grammar import LlamaGrammar
from llmport.engines.llama_cpp.memory import stream_cells
from llmport.engines.llama_cpp.sampler import LlamaSampler, OutputBuffer
from llmport.errors import ModelLoadFailed, ServerError
from llmport.store.gguf_info import is_reranker, read_gguf_info
from llmport.types import SamplingParams

logger = logging.getLogger(__name__)
native_logger = logging.getLogger("llmport.llama_cpp")

_GGML_TYPES = {
    "f32": llama.GGML_TYPE_F32,
    "f16": llama.GGML_TYPE_F16,
    "bf16": 30,  # GGML_TYPE_BF16 (not exported by llama_cpp)
    "q8_0": llama.GGML_TYPE_Q8_0,
    "q5_1": llama.GGML_TYPE_Q5_1,
    "q5_0": llama.GGML_TYPE_Q5_0,
    "q4_1": llama.GGML_TYPE_Q4_1,
    "q4_0": llama.GGML_TYPE_Q4_0,
    "iq4_nl": llama.GGML_TYPE_IQ4_NL,
}
# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. Its warnings are mostly
# about model files users cannot change, so they log at INFO; errors stay errors.
_LOG_LEVELS = {3: logging.INFO, 4: logging.ERROR}


@llama.llama_log_callback  # type: ignore[untyped-decorator]
def _log_to_python(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    message = text.decode(errors="replace").rstrip()
    if message:
        native_logger.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", message)


def _init_process() -> None:
    """Route llama.cpp's logging into Python logging; init the backend once per process.

    ggml's abort handler forks a debugger to print a backtrace; when several threads
    abort at once those forks can deadlock holding the worker's pipe open, so its death
    would never be seen. A crash must end the process at once: no backtrace.
    """
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    llama.llama_log_set(_log_to_python, ctypes.c_void_p(0))
    llama.llama_backend_init()


_init_process()


def _scan_eog(vocab: llama.llama_vocab_p, vocab_size: int) -> Future[frozenset[int]]:
    """The end-of-generation tokens, found in a thread beside the context's allocation.

    llama.cpp answers only per token, so the set costs a call for every token (Gemma:
    262,144 calls, ~0.15 s); each call releases the GIL, as does the context's creation
    that runs meanwhile, so the scan leaves a load's critical path.
    """
    future: Future[frozenset[int]] = Future()

    def scan() -> None:
        is_eog = llama.llama_vocab_is_eog
        future.set_result(frozenset(t for t in range(vocab_size) if is_eog(vocab, t)))

    threading.Thread(target=scan, name="llmport-eog-scan", daemon=True).start()
    return future


def supports_gpu_offload() -> bool:
    return bool(llama.llama_supports_gpu_offload())


class LlamaCppBackend:
    """One GGUF model and one context: a KV cache all slots share, or one stream per slot
    (``config.kv_layout``; the planner resolves ``auto``, unresolved it is unified)."""

    def __init__(self, model_path: Path, config: EngineConfig) -> None:
        info = read_gguf_info(model_path)  # a bad file: InvalidModelFile, not an abort
        #: A reranker: its context pools each sequence through the classifier head.
        self.is_reranker = is_reranker(info)
        self._model = self._load_model(model_path, config)
        self._vocab = llama.llama_model_get_vocab(self._model)
        self._vocab_size = int(llama.llama_vocab_n_tokens(self._vocab))
        self._eog_scan = _scan_eog(self._vocab, self._vocab_size)
        self._n_swa = int(llama.llama_model_n_swa(self._model))
        self._num_slots = config.num_slots
        self._kv_layout: Literal["unified", "per_seq"] = (
            "per_seq" if config.kv_layout == "per-seq" and self._num_slots > 1 else "unified"
        )
        self._max_model_len, num_kv_tokens = self._context_sizes(config)
        self._ctx = self._new_context(config, num_kv_tokens)
        self._num_kv_tokens = int(llama.llama_n_ctx(self._ctx))
        if self._kv_layout == "per_seq":
            stream = int(llama.llama_n_ctx_seq(self._ctx))
            self._max_model_len = min(self._max_model_len, stream)
            logger.info("KV cache: %d per-sequence streams of %d tokens", self._num_slots, stream)
        else:
            logger.info(
                "KV cache: unified, %d tokens for %d slots", self._num_kv_tokens, self._num_slots
            )
        self._memory = llama.llama_get_memory(self._ctx)
        # llama.cpp clamps n_batch to n_ctx (and n_ubatch to n_batch): read it back.
        self._batch_size = int(llama.llama_n_ubatch(self._ctx))
        self._init_batch(self._batch_size)
        self._pieces: dict[int, bytes] = {}
        self._buffer = OutputBuffer()
        self._embedding_size = int(llama.llama_model_n_embd_out(self._model))
        self._bos_token = self._special_text(llama.llama_vocab_bos(self._vocab))
        self._eos_token = self._special_text(llama.llama_vocab_eos(self._vocab))

    # -- loading ---------------------------------------------------------------

    @staticmethod
    def _load_model(model_path: Path, config: EngineConfig) -> llama.llama_model_p:
        params = llama.llama_model_default_params()
        params.n_gpu_layers = _gpu_layers(config.n_gpu_layers)
        params.use_extra_bufts = config.repack_weights
        model = llama.llama_model_load_from_file(str(model_path).encode(), params)
        if not model:
            raise ModelLoadFailed(f"llama.cpp could not load {model_path} (see the log)")
        return model

    def _context_sizes(self, config: EngineConfig) -> tuple[int, int]:
        """(max_model_len, KV cells) as planned (the engine kind's planner sized them under
        the memory budget); unset, the trained context for both, or per sequence a
        stream of max_model_len for every slot."""
        trained = int(llama.llama_model_n_ctx_train(self._model))
        max_model_len = config.max_model_len or trained
        if self._kv_layout == "per_seq":
            default = stream_cells(max_model_len) * self._num_slots
            num_kv_tokens = config.max_num_kv_tokens or default
            return min(max_model_len, num_kv_tokens // self._num_slots), num_kv_tokens
        num_kv_tokens = config.max_num_kv_tokens or max_model_len
        return min(max_model_len, num_kv_tokens), num_kv_tokens

    def _new_context(self, config: EngineConfig, num_kv_tokens: int) -> llama.llama_context_p:
        params = llama.llama_context_default_params()
        params.n_ctx = num_kv_tokens
        params.n_batch = params.n_ubatch = config.max_num_batched_tokens
        params.n_seq_max = self._num_slots
        # llama.cpp sizes its logits buffer max(outputs, n_seq_max) rows and asserts
        # n_outputs_max covers it; we output at most one row per sequence.
        params.n_outputs_max = self._num_slots
        threads = config.num_threads or len(os.sched_getaffinity(0))
        params.n_threads = params.n_threads_batch = threads
        kv_type = _GGML_TYPES[config.kv_ggml_type_name]
        params.type_k = params.type_v = kv_type
        params.flash_attn_type = _flash_attn(config.flash_attn, kv_type)
        params.kv_unified = self._kv_layout == "unified"
        # Per-token hidden states (we pool the last token ourselves), only on demand.
        params.pooling_type = (
            llama.LLAMA_POOLING_TYPE_RANK if self.is_reranker else llama.LLAMA_POOLING_TYPE_NONE
        )
        params.embeddings = False
        params.swa_full = False
        params.no_perf = True
        ctx = llama.llama_init_from_model(self._model, params)
        if not ctx:
            self._eog_scan.result()  # it reads the vocabulary being freed
            llama.llama_model_free(self._model)
            raise ModelLoadFailed(
                f"llama.cpp could not create a context of {num_kv_tokens} tokens "
                f"(kv_cache_dtype={config.kv_cache_dtype}; see the log)"
            )
        return ctx

    def _init_batch(self, size: int) -> None:
        """A llama_batch whose arrays are numpy buffers we own (never llama_batch_free'd)."""
        self._tokens = np.zeros(size, dtype=np.int32)
        self._positions = np.zeros(size, dtype=np.int32)
        self._num_seq_ids = np.ones(size, dtype=np.int32)
        self._seq_ids = np.zeros(size, dtype=np.int32)
        self._outputs = np.zeros(size, dtype=np.int8)
        base = self._seq_ids.ctypes.data
        self._seq_id_ptrs = (ctypes.POINTER(ctypes.c_int32) * size)(
            *(ctypes.cast(base + 4 * i, ctypes.POINTER(ctypes.c_int32)) for i in range(size))
        )
        batch = llama.llama_batch()
        batch.token = self._tokens.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.embd = ctypes.POINTER(ctypes.c_float)()
        batch.pos = self._positions.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.n_seq_id = self._num_seq_ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(
            self._seq_id_ptrs, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32))
        )
        batch.logits = self._outputs.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self._batch = batch

    # -- properties --------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def num_kv_tokens(self) -> int:
        return self._num_kv_tokens

    @property
    def num_slots(self) -> int:
        return self._num_slots

    @property
    def kv_layout(self) -> Literal["unified", "per_seq"]:
        return self._kv_layout

    @property
    def max_num_batched_tokens(self) -> int:
        return self._batch_size

    @property
    def eog_token_ids(self) -> frozenset[int]:
        return self._eog_scan.result()

    # -- text ----------------------------------------------------------------

    @property
    def bos_token(self) -> str:
        return self._bos_token

    @property
    def eos_token(self) -> str:
        return self._eos_token

    def _special_text(self, token_id: int) -> str:
        if not 0 <= token_id < self._vocab_size:
            return ""
        text: bytes = llama.llama_vocab_get_text(self._vocab, token_id) or b""
        return text.decode(errors="replace")

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Tokenize; special-token text (``<start_of_turn>``) always parses.

        ``add_special_tokens`` adds BOS/EOS as the model's vocab asks; a rendered chat
        template already holds them, so chat prompts pass False.
        """
        data = text.encode()
        capacity = len(data) + 8
        buffer = (llama.llama_token * capacity)()
        count = llama.llama_tokenize(
            self._vocab, data, len(data), buffer, capacity, add_special_tokens, True
        )
        if count < 0:
            raise ServerError(f"tokenizer needed {-count} tokens for {len(data)} bytes")
        return list(buffer[:count])

    def piece(self, token_id: int) -> bytes:
        cached = self._pieces.get(token_id)
        if cached is None:
            cached = self._pieces[token_id] = self._render_piece(token_id)
        return cached

    def _render_piece(self, token_id: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = llama.llama_token_to_piece(self._vocab, token_id, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama.llama_token_to_piece(self._vocab, token_id, buffer, -size, 0, False)
        return buffer.raw[:size]

    # -- compute ---------------------------------------------------------------

    def decode(self, batch: DecodeBatch) -> FloatMatrix:
        num_tokens = len(batch.token_ids)
        if num_tokens > self._batch_size:
            raise ServerError(f"batch of {num_tokens} tokens exceeds {self._batch_size}")
        self._tokens[:num_tokens] = batch.token_ids
        self._positions[:num_tokens] = batch.positions
        self._seq_ids[:num_tokens] = batch.slots
        self._outputs[:num_tokens] = batch.is_output
        self._batch.n_tokens = num_tokens
        status = llama.llama_decode(self._ctx, self._batch)
        self._buffer.holds_logits = status == 0
        if status == 1:
            raise KvCacheFull(f"no KV cells for {num_tokens} tokens")
        if status != 0:
            raise ServerError(f"llama_decode failed with status {status}")
        num_outputs = int(batch.is_output.sum())
        logits = llama.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(logits, shape=(num_outputs, self._vocab_size))

    def embed(self, batch: DecodeBatch) -> FloatMatrix:
        # With embeddings on llama.cpp outputs every token of the batch, so the engine
        # sends only each embedding request's last token here (at most n_seq_max rows).
        llama.llama_set_embeddings(self._ctx, True)
        try:
            self.decode(batch)
            if self.is_reranker:  # Rank pooling: the head's scores for each sequence.
                return np.array([self._scores(int(slot)) for slot in batch.slots])
            pointer = llama.llama_get_embeddings(self._ctx)
            if not pointer:
                raise ServerError("llama.cpp kept no embeddings for this batch")
            shape = (len(batch.token_ids), self._embedding_size)
            return np.ctypeslib.as_array(pointer, shape=shape).copy()
        finally:
            llama.llama_set_embeddings(self._ctx, False)
            self._buffer.holds_logits = False

    def _scores(self, slot: int) -> list[float]:
        pointer = llama.llama_get_embeddings_seq(self._ctx, slot)
        if not pointer:
            raise ServerError("llama.cpp kept no rank scores for this batch")
        return [float(pointer[i]) for i in range(llama.llama_model_n_cls_out(self._model))]

    def remove(self, slot: int, start: int = 0) -> None:
        if not llama.llama_memory_seq_rm(self._memory, slot, start, -1):
            raise ServerError(f"llama.cpp refused to trim slot {slot} at position {start}")

    def copy_prefix(self, src_slot: int, dst_slot: int, num_tokens: int) -> None:
        if self._kv_layout == "unified":
            llama.llama_memory_seq_cp(self._memory, src_slot, dst_slot, 0, num_tokens)
            return
        # Across streams llama.cpp copies whole streams only (a partial copy aborts); the
        # copy runs at the next decode, and the trim applies to the copy's cells now.
        llama.llama_memory_seq_cp(self._memory, src_slot, dst_slot, -1, -1)
        self.remove(dst_slot, num_tokens)

    def can_reuse_prefix(self, slot: int, num_tokens: int) -> bool:
        if self._n_swa == 0:
            return True
        positions = self.slot_positions(slot)
        return positions is not None and positions[0] <= max(0, num_tokens - self._n_swa + 1)

    def slot_positions(self, slot: int) -> tuple[int, int] | None:
        low = int(llama.llama_memory_seq_pos_min(self._memory, slot))
        if low < 0:
            return None
        return low, int(llama.llama_memory_seq_pos_max(self._memory, slot))

    def new_sampler(self, params: SamplingParams, seed: int) -> LlamaSampler:
        return LlamaSampler(self._ctx, self._vocab_size, params, seed, self._buffer)

    def new_grammar(self, gbnf: str) -> LlamaGrammar:
        return LlamaGrammar(self._vocab, self._vocab_size, gbnf)

    def close(self) -> None:
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            self._eog_scan.result()  # it reads the vocabulary being freed
            llama.llama_model_free(self._model)
            self._model = None


def _gpu_layers(requested: int | None) -> int:
    if not supports_gpu_offload():
        if requested not in (None, 0):
            logger.info("n_gpu_layers=%s ignored: llama.cpp was built without a GPU", requested)
        return 0
    return 999 if requested is None or requested < 0 else requested


def _flash_attn(setting: str, kv_type: int) -> int:
    quantized_v = kv_type not in (llama.GGML_TYPE_F16, llama.GGML_TYPE_F32, 30)
    if setting == "on" or quantized_v:
        return int(llama.LLAMA_FLASH_ATTN_TYPE_ENABLED)
    if setting == "off":
        return int(llama.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    return int(llama.LLAMA_FLASH_ATTN_TYPE_AUTO)
