"""PointInTime: what "the stream as it was then" means."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from eventstore.commit import Commit
from eventstore.reads import PointInTime
from tests.contract.conftest import make_commit


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def stamped(commit: Commit, times: list[str]) -> Commit:
    """The commit with its events' occurredAt set, one time per event version."""
    return replace(commit, events=tuple(replace(e, occurred_at=times[e.version - 1])
                                        for e in commit.events))


def versions(point: PointInTime, commits: list[Commit]) -> list[int]:
    return [record.version for record in point.events_until(commits)]


def test_a_point_is_a_version_or_an_aware_moment() -> None:
    assert str(PointInTime(version=3)) == "version 3"
    assert str(PointInTime(at=at("2026-01-05T10:00:00+00:00"))) == "2026-01-05T10:00:00Z"
    with pytest.raises(ValueError, match="exactly one"):
        PointInTime()
    with pytest.raises(ValueError, match="exactly one"):
        PointInTime(version=1, at=datetime.now(UTC))
    with pytest.raises(ValueError, match="time zone"):
        PointInTime(at=datetime(2026, 1, 5, 10))


def test_the_events_until_a_point_are_a_prefix_of_the_stream() -> None:
    times = ["2026-01-05T10:00:00Z", "2026-01-05T10:00:00Z", "2026-01-05T10:00:05Z"]
    commits = [stamped(make_commit("order-x", 1, 2), times),
               stamped(make_commit("order-x", 3, 1), times)]
    assert versions(PointInTime(version=2), commits) == [1, 2]  # inside a commit too
    assert versions(PointInTime(version=9), commits) == [1, 2, 3]
    assert versions(PointInTime(at=at("2026-01-05T10:00:01Z")), commits) == [1, 2]
    assert versions(PointInTime(at=at("2026-01-05T10:00:05Z")), commits) == [1, 2, 3]
    assert versions(PointInTime(at=at("2026-01-05T09:59:59Z")), commits) == []


def test_an_event_stamped_earlier_than_the_one_before_ends_the_prefix_there() -> None:
    # The clocks of two instances disagree: version 3 claims to be older than version 2. A past
    # view is still one the stream really went through, never versions 1 and 3 without 2.
    times = ["2026-01-05T10:00:00Z", "2026-01-05T10:00:09Z", "2026-01-05T10:00:01Z"]
    commits = [stamped(make_commit("order-x", 1, 3), times)]
    assert versions(PointInTime(at=at("2026-01-05T10:00:05Z")), commits) == [1]
