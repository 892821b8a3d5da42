"""The convergence soak in ``make test`` (``tests/soak/driver.py`` says what it does and checks),
and the proof that it can fail: the same soak against a host with a seeded bug."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.driver import SoakConfig, SoakFailure, run_soak

pytestmark = pytest.mark.e2e


def test_orders_converge_exactly_once_under_chaos_and_a_killed_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = SoakConfig(paid=100, declined=10, cancelled=10, seed=20260101)
    report = run_soak(config, tmp_path, say=print)

    with capsys.disabled():
        print()
        for line in report.lines():
            print(line)
    assert report.flows == {"paid": 100, "declined": 10, "cancelled": 10}
    assert report.faults["feed.redeliver"] > 0 and report.faults["bus.redeliver"] > 0
    assert report.faults["store.append-landed"] > 0  # retry keys were put to work
    assert report.takeovers > 0  # the killed host's ranges were taken over


def test_a_seeded_bug_makes_the_soak_fail(tmp_path: Path) -> None:
    """A projector that does not skip the versions it applied: redelivered batches are applied
    twice, and the soak says which views differ from their streams."""
    config = SoakConfig(paid=15, declined=2, cancelled=3, seed=7, kill=False,
                        bug="projector-no-skip")
    with pytest.raises(SoakFailure, match="views differ from their streams"):
        run_soak(config, tmp_path, say=print)
