"""The cheap id, clock and fingerprint sources give exactly what the standard ways give: stored
fingerprints are compared with later retries, so their canonical form must never change."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.orders import AddItemToCart, CreateOrder, DeleteItemFromCart, PrepareToPay
from eventstore.clock import new_id, utc_now_iso
from eventstore.commands import command_fingerprint


def standard_fingerprint(command: object) -> str:
    """The formula every stored fingerprint was made with."""
    canonical = json.dumps([type(command).__name__, dataclasses.asdict(command)],  # type: ignore[call-overload]
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()[:15]
    return base64.urlsafe_b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Inner:
    label: str


@dataclass(frozen=True)
class Nested:
    inner: Inner
    values: tuple[int, ...]


def test_fingerprints_are_those_of_the_standard_formula() -> None:
    commands: list[object] = [
        CreateOrder("o-1", "c", "EUR"), AddItemToCart("p é", 3, 100),
        DeleteItemFromCart("item-2"), PrepareToPay("pay", 0), Nested(Inner("x"), (1, 2)),
    ]
    for command in commands:
        assert command_fingerprint(command) == standard_fingerprint(command)
    assert command_fingerprint(AddItemToCart("p", 1, 1)) != command_fingerprint(
        AddItemToCart("p", 1, 2))


def test_new_ids_are_canonical_random_uuids() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_the_clock_has_the_isoformat_of_datetime() -> None:
    before = datetime.now(UTC)
    stamp = utc_now_iso()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before <= parsed <= after
    assert parsed.isoformat(timespec="microseconds").replace("+00:00", "Z") == stamp
