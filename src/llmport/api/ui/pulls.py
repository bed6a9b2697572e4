"""Pulls the web page started, kept by the server so that a reloaded page finds them.

Ollama's ``/api/pull`` reports progress only on the connection that asked for it: a
page that reloads loses the stream while the pull goes on. The page therefore starts
pulls here and polls ``GET /ui/api/pulls`` for their progress; the pull itself is the
same ``Library.pull`` that ``/api/pull`` runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from llmport.errors import InvalidParameter, LlmportError
from llmport.store.hf_ref import is_hf_ref, parse_hf_ref
from llmport.store.library import Library
from llmport.store.pull import Progress

#: Finished pulls still listed (newest first), so the page can show how they ended.
MAX_NUM_FINISHED = 8


@dataclass
class PullState:
    """One pull as the page shows it: ``total``/``completed`` are the current file's bytes."""

    model: str
    status: str = "starting"
    digest: str | None = None
    total: int = 0
    completed: int = 0
    #: Statuses other than byte counts ("no quant named: using Q4_K_M (...)").
    notes: list[str] = field(default_factory=list)
    started_at: float = 0.0
    updated_at: float = 0.0
    is_done: bool = False
    error: str | None = None


class PullTracker:
    """Runs each pull on a thread of its own; its state is read under ``_lock``."""

    def __init__(self, library: Library, clock: Callable[[], float] = time.time) -> None:
        self._library = library
        self._clock = clock
        self._lock = threading.Lock()
        self._pulls: dict[str, PullState] = {}

    def start(self, model: str) -> dict[str, Any]:
        """Start pulling ``model`` (a pull of it already running is joined, not repeated)."""
        if not is_hf_ref(model):
            raise InvalidParameter(
                f"cannot pull {model!r}: pull hf.co/USER/REPO[:QUANT] references", param="model"
            )
        parse_hf_ref(model)  # A malformed one is refused now, not in the pull's thread.
        with self._lock:
            running = self._pulls.get(model)
            if running is not None and not running.is_done:
                return asdict(running)
            now = self._clock()
            state = self._pulls[model] = PullState(model, started_at=now, updated_at=now)
            self._forget_old()
        threading.Thread(target=self._run, args=(state,), name="llmport-ui-pull",
                         daemon=True).start()  # fmt: skip
        return asdict(state)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            pulls = sorted(self._pulls.values(), key=lambda s: s.started_at, reverse=True)
            return [asdict(state) for state in pulls]

    def _run(self, state: PullState) -> None:
        try:
            self._library.pull(state.model, lambda progress: self._report(state, progress))
        except LlmportError as error:
            with self._lock:
                state.error, state.status = error.message, "error"
        with self._lock:
            state.is_done, state.updated_at = True, self._clock()

    def _report(self, state: PullState, progress: Progress) -> None:
        with self._lock:
            state.status, state.updated_at = progress.status, self._clock()
            if progress.digest is None:
                state.notes.append(progress.status)
            else:
                state.digest = progress.digest
                state.total, state.completed = progress.total or 0, progress.completed or 0

    def _forget_old(self) -> None:
        finished = [s for s in self._pulls.values() if s.is_done]
        finished.sort(key=lambda s: s.started_at)
        for state in finished[: max(0, len(finished) - MAX_NUM_FINISHED)]:
            del self._pulls[state.model]
