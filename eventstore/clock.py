"""Time and id sources, injected wherever the kernel needs them so tests can pin them."""

from __future__ import annotations

import os
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


def new_id() -> str:
    """A random (version 4) UUID in its canonical text form, as ``str(uuid.uuid4())``, without
    the ``UUID`` object in between."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
