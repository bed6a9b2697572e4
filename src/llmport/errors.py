"""Errors split by who is at fault: the client (4xx) or the server (5xx).

Every error carries the HTTP ``status`` and a stable ``code`` so the API layer
maps them once per dialect and never matches on message text.
"""

from __future__ import annotations


class LlmportError(Exception):
    """Base of every error llmport raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ClientError(LlmportError):
    """The request is wrong; retrying it unchanged fails the same way."""

    status = 400
    code = "invalid_request"


class InvalidParameter(ClientError):
    """A parameter has a value outside its domain (names it in ``param``)."""

    code = "invalid_parameter"


class ContextLengthExceeded(ClientError):
    """The prompt (plus what must be generated) does not fit the context."""

    code = "context_length_exceeded"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class ResponseNotFound(ClientError):
    """No stored Responses-API answer has that id (never stored, deleted, or not ours)."""

    status = 404
    code = "response_not_found"


class InvalidModelFile(ClientError):
    """A model file that is not a readable GGUF (checked before llama.cpp sees it)."""

    code = "invalid_model_file"


class UnsupportedOption(ClientError):
    """An option this backend cannot honour (names what it offers instead)."""

    code = "unsupported_option"


class ServerError(LlmportError):
    """The server failed; the request itself may be fine."""

    status = 500
    code = "server_error"


class QueueFull(ServerError):
    """A model's wait queue is full; retry after ``retry_after`` seconds."""

    status = 503
    code = "queue_full"

    def __init__(self, message: str, *, param: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class InsufficientMemory(ServerError):
    """A model can never fit the memory budget, even with every other model unloaded."""

    status = 507
    code = "insufficient_memory"


class PullFailed(ServerError):
    """A download from the model hub failed; nothing was registered."""

    status = 502
    code = "pull_failed"


class ChecksumMismatch(PullFailed):
    """Downloaded bytes do not match the hub's sha256; the file was deleted."""

    code = "checksum_mismatch"


class InsufficientStorage(ServerError):
    """Not enough free disk for a download (refused before it starts)."""

    status = 507
    code = "insufficient_storage"


class ModelLoadFailed(ServerError):
    code = "model_load_failed"


class WorkerCrashed(ServerError):
    """The engine worker process died; its in-flight requests fail with this."""

    status = 503
    code = "worker_crashed"


class NodeUnavailable(ServerError):
    """No node of the cluster can take a model now (none alive, or its node was lost)."""

    status = 503
    code = "node_unavailable"


class EngineDead(ServerError):
    """The engine was closed or is no longer usable."""

    status = 503
    code = "engine_dead"


class ServerShuttingDown(ServerError):
    """The server is draining: no new work, and what is still running after the grace
    period ends with this."""

    status = 503
    code = "server_shutting_down"


def _subclasses(cls: type[LlmportError]) -> list[type[LlmportError]]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def error_from_code(code: str, message: str, param: str | None = None) -> LlmportError:
    """Rebuild an error sent across a process boundary as (code, message)."""
    for cls in _subclasses(LlmportError):
        if cls.code == code:
            return cls(message, param=param)
    return ServerError(message, param=param)
