"""Time and id sources, injected wherever the kernel needs them so tests can pin them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())
