"""Per-sequence streaming text: token bytes in, safe-to-show text out.

Two things make naive ``decode(ids)`` wrong for streaming. Byte-level BPE
splits one UTF-8 character over several tokens, so a token may end halfway
through a character; and a stop string may arrive over several tokens, so
text that could still become one must be held back, not sent and retracted.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence


class IncrementalDetokenizer:
    """Turns one sequence's tokens into text, cutting it at the first stop string.

    A stop string is found as soon as it is complete: the text ends at the
    shortest prefix that contains one. Should two end at the same character,
    the longer one (it starts earlier) wins. This depends only on the text,
    never on how it was split into tokens.
    """

    def __init__(
        self,
        piece: Callable[[int], bytes],
        stop: Sequence[str] = (),
        include_stop_str: bool = False,
    ) -> None:
        if not all(stop):
            raise ValueError("stop strings must not be empty")
        self.piece = piece
        self.stop = tuple(stop)
        self.include_stop_str = include_stop_str
        # Every proper prefix of a stop string: the tails worth holding back.
        self._stop_prefixes = {s[:i] for s in self.stop for i in range(1, len(s))}
        self._max_held_len = max(map(len, self.stop), default=1) - 1
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self._released: list[str] = []
        self.matched_stop: str | None = None

    @property
    def stopped(self) -> bool:
        return self.matched_stop is not None

    @property
    def text(self) -> str:
        """All text released so far."""
        return "".join(self._released)

    def push(self, token_id: int) -> str:
        """Append one token; return the text it makes safe to show (often "")."""
        if self.stopped:
            return ""
        return self._advance(self._decoder.decode(self.piece(token_id)))

    def flush(self) -> str:
        """End the sequence: release held text; a dangling partial character becomes U+FFFD."""
        if self.stopped:
            return ""
        out = self._advance(self._decoder.decode(b"", final=True))
        if self.stopped:
            return out
        rest, self._held = self._held, ""
        return out + self._release(rest)

    def _advance(self, new_text: str) -> str:
        # The held tail is the longest suffix that could start a stop string,
        # so no match can begin before it: searching held + new is enough.
        window = self._held + new_text
        match = self._find_stop(window)
        if match is not None:
            return self._stop_at(window, *match)
        num_held = self._num_held(window)
        self._held = window[len(window) - num_held :]
        return self._release(window[: len(window) - num_held])

    def _find_stop(self, window: str) -> tuple[int, str] | None:
        """The (start, stop string) that completes first in window, or None."""
        best: tuple[int, str] | None = None
        for s in self.stop:
            start = window.find(s)
            if start >= 0 and (best is None or _ends_sooner(start, s, *best)):
                best = (start, s)
        return best

    def _stop_at(self, window: str, start: int, stop_str: str) -> str:
        self.matched_stop = stop_str
        self._held = ""
        end = start + len(stop_str) if self.include_stop_str else start
        return self._release(window[:end])

    def _num_held(self, window: str) -> int:
        """Length of the longest suffix of window that is a proper prefix of a stop string."""
        for n in range(min(len(window), self._max_held_len), 0, -1):
            if window[-n:] in self._stop_prefixes:
                return n
        return 0

    def _release(self, text: str) -> str:
        if text:
            self._released.append(text)
        return text


def _ends_sooner(start: int, stop_str: str, best_start: int, best_str: str) -> bool:
    end, best_end = start + len(stop_str), best_start + len(best_str)
    return end < best_end or (end == best_end and start < best_start)
