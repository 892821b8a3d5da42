"""Cross-process wake-ups for a SQLite file: the writer rings, the other handles wake at once.

A process (or another handle in the same process) that waits for what a write makes available
(a feed range's next commit, a bus entity's next message) would otherwise see another process's
write only when it polls the file. Each handle of a file opens a named pipe (FIFO) in the
hidden folder ``.{file name}.bells`` beside the file, and a reader thread that blocks on it;
after a write, the writer writes the write's topics (short strings: a feed range, an entity
path) to every other handle's pipe. The reader hands them to the handle's ``on_ring``.

Only an accelerator: a ring that is lost (the pipe full, a handle that started a moment ago)
costs the waiter the poll interval it had before, never correctness. Ringing costs a ``stat`` of
the folder (to see handles come and go) and one non-blocking write per other handle; a pipe
whose reader is gone is removed by the next writer. Where named pipes do not exist (Windows),
the bell is silent and waits poll as before.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_SEPARATOR = "\n"
_CLOSING = "\x00closing"  # written to the handle's own pipe to end its reader
_READ_BYTES = 65536
_RELIST_SECONDS = 1.0


def bells_folder(path: Path) -> Path:
    return path.parent / f".{path.name}.bells"


class Doorbell:
    """This handle's pipe and reader, and the other handles' pipes to ring."""

    def __init__(self, path: Path, on_ring: Callable[[set[str]], None]) -> None:
        self._folder = bells_folder(path)
        self._on_ring = on_ring
        self._lock = threading.Lock()
        self._peers: dict[str, int] = {}  # pipe name -> write end, of the other handles
        self._listed: tuple[int, float] | None = None  # folder mtime, monotonic time
        self._own: str | None = None
        self._read_fd = -1
        self._thread: threading.Thread | None = None
        if not hasattr(os, "mkfifo"):
            return
        try:
            self._folder.mkdir(exist_ok=True)
            name = f"{os.getpid()}-{secrets.token_hex(4)}"
            # Made under a name the others skip and renamed once open: a pipe they see always
            # has its reader (one without is a dead handle's, which they remove).
            hidden = self._folder / f".{name}"
            os.mkfifo(hidden, 0o600)
            # Read-write: opening does not wait for a writer, and the reader never sees EOF.
            self._read_fd = os.open(hidden, os.O_RDWR)
            os.rename(hidden, self._folder / name)
        except OSError as error:
            log.warning("no cross-process wake-ups for %s (%s): other processes' writes are "
                        "seen by polling", path, error)
            return
        self._own = name
        self._thread = threading.Thread(target=self._listen, name=f"doorbell:{path.name}",
                                        daemon=True)
        self._thread.start()

    def ring(self, topics: Iterable[str]) -> None:
        """Tell every other handle of the file that these topics have news."""
        if self._own is None:
            return
        message = "".join(topic + _SEPARATOR for topic in topics).encode("utf-8")
        with self._lock:
            peers = self._current_peers()
            gone = []
            for name, fd in peers.items():
                try:
                    os.write(fd, message)
                except BlockingIOError:
                    pass  # its reader is behind: it will wake, and poll for what it missed
                except OSError:
                    gone.append(name)  # the reader is gone (EPIPE)
            for name in gone:
                self._forget(name, unlink=True)

    def close(self) -> None:
        with self._lock:
            own, self._own = self._own, None
            for name in list(self._peers):
                self._forget(name, unlink=False)
        if own is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._read_fd, (_CLOSING + _SEPARATOR).encode("utf-8"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        os.close(self._read_fd)
        self._unlink(own)

    def _current_peers(self) -> dict[str, int]:
        try:
            changed_at = os.stat(self._folder).st_mtime_ns
        except OSError:
            return self._peers
        now = time.monotonic()
        # Listed again when the folder changed, and every second: two changes within one tick
        # of the file system's clock leave the same mtime.
        if self._listed is not None and self._listed[0] == changed_at and (
                now - self._listed[1] < _RELIST_SECONDS):
            return self._peers
        self._listed = (changed_at, now)
        try:
            names = {entry for entry in os.listdir(self._folder)
                     if entry != self._own and not entry.startswith(".")}
        except OSError:
            return self._peers
        for name in set(self._peers) - names:
            self._forget(name, unlink=False)
        for name in names - set(self._peers):
            try:
                self._peers[name] = os.open(self._folder / name, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno == errno.ENXIO:  # no reader: a handle that died without closing
                    self._unlink(name)
        return self._peers

    def _forget(self, name: str, *, unlink: bool) -> None:
        fd = self._peers.pop(name, None)
        if fd is not None:
            os.close(fd)
        if unlink:
            self._unlink(name)

    def _unlink(self, name: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._folder / name)

    def _listen(self) -> None:
        pending = ""
        while True:
            try:
                chunk = os.read(self._read_fd, _READ_BYTES)
            except OSError:
                return
            pending += chunk.decode("utf-8", errors="replace")
            *topics, pending = pending.split(_SEPARATOR)
            if _CLOSING in topics:
                return
            if topics:
                try:
                    self._on_ring(set(topics))
                except Exception:  # a broken handler must not end the wake-ups
                    log.exception("doorbell handler failed")
