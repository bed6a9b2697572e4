"""The event loop's end of a worker's pipe: whole messages both ways, never blocking.

The worker end is a plain blocking ``multiprocessing`` Connection; this end speaks
the same framing (a 4-byte big-endian length, or -1 and an 8-byte length for
messages over 2 GiB) over the same socket in non-blocking mode. A message that does
not fit the socket's buffer is queued and written as the worker reads, so a long
prompt makes the sender wait, never the event loop, and never tears a message. The
channel is closed only by end of file or a broken connection: a full pipe is not a
dead worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Callable
from multiprocessing.connection import Connection

logger = logging.getLogger(__name__)

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_READ_SIZE = 1 << 20


class PipeClosed(Exception):
    """The worker's end is gone (end of file or a broken connection)."""


class AsyncPipe:
    """Frames out of and into ``conn``'s socket on the running event loop.

    ``on_message`` gets each whole message in order; ``on_closed`` is called once
    when the channel ends. Use from the loop's thread only.
    """

    def __init__(
        self,
        conn: Connection,
        on_message: Callable[[bytes], None],
        on_closed: Callable[[], None],
    ) -> None:
        self._conn = conn
        self._fd = conn.fileno()
        self._on_message = on_message
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._outbox = bytearray()
        self._inbox = bytearray()
        self._is_writing = False
        self.is_closed = False
        os.set_blocking(self._fd, False)
        self._loop.add_reader(self._fd, self._read)

    @property
    def num_pending_bytes(self) -> int:
        """Bytes queued for the worker that its socket has not taken yet."""
        return len(self._outbox)

    def send(self, payload: bytes) -> None:
        """Queue one message; raises PipeClosed if the channel has ended."""
        if self.is_closed:
            raise PipeClosed("the worker's pipe is closed")
        size = len(payload)
        header = _SHORT.pack(size) if size <= 0x7FFFFFFF else _SHORT.pack(-1) + _LONG.pack(size)
        self._outbox += header
        self._outbox += payload
        if not self._is_writing:
            self._write()

    def close(self) -> None:
        """Stop watching the socket and close it (no ``on_closed`` call)."""
        if not self.is_closed:
            self._stop()
        self._conn.close()

    def _write(self) -> None:
        try:
            num_written = os.write(self._fd, self._outbox)
        except BlockingIOError:
            num_written = 0
        except OSError as error:
            logger.debug("writing to the worker failed: %s", error)
            self._end()
            return
        del self._outbox[:num_written]
        if self._outbox and not self._is_writing:
            self._loop.add_writer(self._fd, self._write)
            self._is_writing = True
        elif not self._outbox and self._is_writing:
            self._loop.remove_writer(self._fd)
            self._is_writing = False

    def _read(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            logger.debug("reading from the worker failed: %s", error)
            data = b""
        if not data:
            self._end()
            return
        self._inbox += data
        for message in self._whole_messages():
            self._on_message(message)
            if self.is_closed:
                return

    def _whole_messages(self) -> list[bytes]:
        messages = []
        start = 0
        inbox = self._inbox
        while len(inbox) - start >= _SHORT.size:
            (size,) = _SHORT.unpack_from(inbox, start)
            header = _SHORT.size
            if size == -1:
                if len(inbox) - start < header + _LONG.size:
                    break
                (size,) = _LONG.unpack_from(inbox, start + header)
                header += _LONG.size
            if len(inbox) - start < header + size:
                break
            messages.append(bytes(inbox[start + header : start + header + size]))
            start += header + size
        del inbox[:start]
        return messages

    def _end(self) -> None:
        if self.is_closed:
            return
        self._stop()
        self._on_closed()

    def _stop(self) -> None:
        self.is_closed = True
        self._loop.remove_reader(self._fd)
        if self._is_writing:
            self._loop.remove_writer(self._fd)
            self._is_writing = False
        self._outbox.clear()
