"""Time and id sources, injected wherever the kernel needs them so tests can pin them."""

from __future__ import annotations

import os
import threading
import time

# The text of the last second formatted (the costly part of a timestamp), shared by every
# thread: replacing the one item is atomic.
_second: list[tuple[int, str]] = [(-1, "")]


def utc_now_iso() -> str:
    """Now, as ``datetime.now(UTC).isoformat(timespec="microseconds")`` with ``Z`` for UTC."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    cached, prefix = _second[0]
    if cached != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second[0] = (seconds, prefix)
    return f"{prefix}.{micros:06d}Z"


class _Entropy(threading.local):
    """Each thread's unused random bytes. ``os.urandom`` releases the GIL for its system call,
    and under load getting it back costs a thread switch: one call serves many ids."""

    pool = b""
    offset = 0


_POOL_BYTES = 4096  # 256 ids per system call
_entropy = _Entropy()


def _forget_entropy() -> None:
    # A forked child must not hand out the ids its parent still holds; it has only the thread
    # that forked, so that thread's pool is all there is to drop.
    _entropy.pool, _entropy.offset = b"", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_entropy)


def _uuid4_bytes() -> bytearray:
    """16 bytes from the thread's pool, with the version 4 and RFC 4122 variant bits set."""
    entropy = _entropy
    offset = entropy.offset
    if offset >= len(entropy.pool):
        entropy.pool, offset = os.urandom(_POOL_BYTES), 0
    entropy.offset = offset + 16
    raw = bytearray(entropy.pool[offset:offset + 16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw


def new_id() -> str:
    """A random (version 4) UUID in its canonical text form, as ``str(uuid.uuid4())``, without
    the ``UUID`` object in between; its 122 random bits come from ``os.urandom``."""
    h = _uuid4_bytes().hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_etag() -> str:
    """A random ETag: 32 hex digits, as ``uuid.uuid4().hex``."""
    return _uuid4_bytes().hex()
