"""Invocation lines are written off the request path, all of them, one line each."""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from devhost.invocations import flush_lines, invoke


def test_every_invocation_gets_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    def work(n: int) -> int:
        if n % 10 == 9:
            raise RuntimeError("boom")
        return n

    def one(n: int) -> None:
        with contextlib.suppress(RuntimeError):
            invoke(f"fn{n}", work, {"n": n}, f"(item {n})")

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(one, range(50)))
    flush_lines()
    lines = [line for line in capsys.readouterr().out.splitlines() if "Functions.fn" in line]
    assert len(lines) == 50
    pattern = re.compile(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "
                         r"Executed 'Functions\.fn(\d+)' "
                         r"\((Succeeded|Failed), Id=[0-9a-f-]{36}, Duration=\d+ms\) \(item (\d+)\)")
    seen = {}
    for line in lines:
        match = pattern.fullmatch(line)
        assert match, line
        assert match[1] == match[3]
        seen[int(match[1])] = match[2]
    assert seen == {n: "Failed" if n % 10 == 9 else "Succeeded" for n in range(50)}
