"""The schema snapshot: a stored event's or a contract's shape never changes without a version
bump, and every recorded event version stays readable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from contracts.messages import CONTRACTS, IntegrationMessage, PaymentFailedV2
from domain import orders, payments
from domain.codec import EventCodec, EventSchema, stored_str
from tests.versioning import snapshot as snap


def test_the_recorded_snapshot_matches_the_code() -> None:
    problems = snap.check(snap.load(), snap.current_snapshot())
    assert not problems, "\n".join(problems)


def test_every_recorded_event_version_is_still_read() -> None:
    recorded = snap.load()
    assert recorded["events"]["PaymentFailed"] == {
        "1": {"reason": "string"}, "2": {"reason": "string", "reasonCode": "string"}}
    assert snap.unreadable_versions(recorded) == []


def test_the_command_line_check_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert snap.main([]) == 0
    assert "matches" in capsys.readouterr().out


def _payment_codec_with(failed: EventSchema[Any]) -> EventCodec[Any]:
    others = [s for s in payments.payment_codec.schemas if s.type_name != "PaymentFailed"]
    return EventCodec("payment", payments.PaymentEvent, [*others, failed])


def _failed_schema(version: int, code_field: str, upcasters: Mapping[int, Any]
                   ) -> EventSchema[Any]:
    return EventSchema(
        "PaymentFailed", payments.PaymentFailed, version=version,
        encode=lambda e: {"reason": e.reason, code_field: e.reason_code},
        decode=lambda d: payments.PaymentFailed(stored_str(d, "reason"),
                                                stored_str(d, code_field)),
        upcasters=upcasters)


# reasonCode renamed to code, still at version 2.
RENAMED_FIELD = _failed_schema(2, "code", {1: lambda d: {**d, "code": "unspecified"}})


def test_a_changed_event_shape_without_a_version_bump_fails_with_what_to_do() -> None:
    codecs = (orders.order_codec, _payment_codec_with(RENAMED_FIELD))
    problems = snap.check(snap.load(), snap.current_snapshot(codecs), codecs)
    assert len(problems) == 1, problems
    assert "event PaymentFailed: its stored shape changed but its schema version is still 2" \
        in problems[0]
    assert "bump `version` to 3 in domain/payments/codec.py with an upcaster from 2" in problems[0]
    assert snap.UPDATE_COMMAND in problems[0]
    # Recording it anyway is refused: the recorded version 2 stays as events were stored.
    with pytest.raises(ValueError, match="bump its version instead of rewriting it"):
        snap.updated(snap.load(), snap.current_snapshot(codecs))


def test_the_same_change_with_a_bump_and_an_upcaster_passes_once_recorded() -> None:
    bumped = _failed_schema(3, "code", {
        1: lambda d: {**d, "reasonCode": "unspecified"},
        2: lambda d: {"reason": d["reason"], "code": d["reasonCode"]}})
    codecs = (orders.order_codec, _payment_codec_with(bumped))
    current = snap.current_snapshot(codecs)
    assert snap.check(snap.load(), current, codecs) == [
        "event PaymentFailed: version 3 is not recorded; run "
        f"`{snap.UPDATE_COMMAND}` and commit tests/versioning/schema_snapshot.json with the "
        "change"]
    recorded = snap.updated(snap.load(), current)
    assert set(recorded["events"]["PaymentFailed"]) == {"1", "2", "3"}
    assert snap.check(recorded, current, codecs) == []
    assert snap.unreadable_versions(recorded, codecs) == []


def test_a_lost_upcaster_step_is_reported() -> None:
    forgetful = _failed_schema(2, "reasonCode", {1: dict})
    codecs = (orders.order_codec, _payment_codec_with(forgetful))
    (problem,) = snap.unreadable_versions(snap.load(), codecs)
    assert problem.startswith("PaymentFailed v1") and "declare an upcaster from version 1" \
        in problem


def test_an_event_type_no_codec_reads_is_reported() -> None:
    codecs = (orders.order_codec,)
    current = snap.current_snapshot(codecs)
    problems = snap.check(snap.load(), current, codecs)
    assert "event PaymentFailed: recorded but no codec reads it any more; stored events of " \
        "that type would be unreadable: keep its schema" in problems
    assert "PaymentCreated v1: no codec reads it" in snap.unreadable_versions(snap.load(), codecs)


def test_a_version_that_goes_back_is_reported() -> None:
    recorded = snap.load()
    recorded["events"]["OrderPaid"]["2"] = recorded["events"]["OrderPaid"]["1"]
    problems = snap.check(recorded, snap.current_snapshot())
    assert problems == ["event OrderPaid: the code writes version 1 but version 2 is recorded; "
                        "a schema version never goes back"]


class PaymentFailedChanged(PaymentFailedV2):
    retryable: bool = False


def test_a_changed_contract_without_a_version_bump_fails_with_what_to_do() -> None:
    contracts: dict[tuple[str, int], type[IntegrationMessage]] = {
        **CONTRACTS, ("PaymentFailed", 2): PaymentFailedChanged}
    problems = snap.check(snap.load(), snap.current_snapshot(contracts=contracts))
    assert len(problems) == 1, problems
    assert problems[0].startswith("contract PaymentFailed v2: its shape changed without a "
                                  "version bump")
    assert "add a class PaymentFailedV3 in contracts/messages.py" in problems[0]
    assert "accept both versions in the consumers for a transition period" in problems[0]


def test_documentation_is_not_shape() -> None:
    class Documented(PaymentFailedV2):
        """Another docstring."""

    assert snap.contract_shape(Documented) == snap.contract_shape(PaymentFailedV2)


@dataclass
class WithBytes:
    blob: bytes


def test_an_event_field_without_a_sample_is_named() -> None:
    with pytest.raises(TypeError, match=r"WithBytes\.blob: no sample"):
        snap.sample_event(WithBytes)
