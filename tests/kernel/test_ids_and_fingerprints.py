"""The cheap id, clock and fingerprint sources give exactly what the standard ways give: stored
fingerprints are compared with later retries, so their canonical form must never change."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from domain.orders import AddItemToCart, CreateOrder, DeleteItemFromCart, PrepareToPay
from eventstore.clock import new_etag, new_id, utc_now_iso
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


def test_ids_from_many_threads_never_repeat() -> None:
    # More ids per thread than one pool of entropy holds, so every thread refills.
    def draw() -> list[str]:
        return [new_id() for _ in range(600)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        drawn = [value for batch in pool.map(lambda _: draw(), range(8)) for value in batch]
    assert len(set(drawn)) == len(drawn) == 4800


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id()  # the parent now holds a pool of unused entropy
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids, then leave at once
        os.close(read)
        os.write(write, " ".join(new_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)


def test_etags_are_random_32_hex_digits() -> None:
    etags = {new_etag() for _ in range(1000)}
    assert len(etags) == 1000
    assert all(len(e) == 32 and int(e, 16) >= 0 for e in etags)


def test_the_clock_has_the_isoformat_of_datetime() -> None:
    before = datetime.now(UTC)
    stamp = utc_now_iso()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before <= parsed <= after
    assert parsed.isoformat(timespec="microseconds").replace("+00:00", "Z") == stamp
