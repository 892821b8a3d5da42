"""Side by side with the Python ``eventsourcing`` library: the same 8-command order lifecycle on
SQLite, at the same ``synchronous`` level, cold and warm, in alternating rounds.

The reference is installed into its own virtualenv (``.venv-bench-ref``, from
``bench/reference-requirements.txt``), never into the project's. Each run is a fresh process on
a fresh database file, so neither side profits from the other's page cache or warm imports; the
side that goes first alternates from round to round. The ratio of a configuration is the median
of its per-round ratios (ours / reference), so a machine that slows down during the run moves
both sides of a round together.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_VENV = ROOT / ".venv-bench-ref"
REFERENCE_REQUIREMENTS = Path(__file__).parent / "reference-requirements.txt"
REFERENCE_SCRIPT = Path(__file__).parent / "reference_side.py"
CONFIGURATIONS = (("cold", "FULL"), ("cold", "NORMAL"), ("warm", "FULL"), ("warm", "NORMAL"))


def reference_python() -> Path:
    """The reference's interpreter, its virtualenv created (or updated) from the pinned
    requirements."""
    python = REFERENCE_VENV / "bin" / "python"
    stamp = REFERENCE_VENV / ".installed"
    wanted = REFERENCE_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print("installing the reference library into .venv-bench-ref...", file=sys.stderr,
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                    str(REFERENCE_REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def reference_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('eventsourcing'))"],
        check=True, capture_output=True, text=True).stdout.strip()


@dataclass(frozen=True)
class Run:
    per_second: float
    cpu_us_per_command: float  # the process's CPU time: less moved by other load on the machine
    bytes_per_event: float


def _run(command: list[str], db: Path) -> Run:
    completed = subprocess.run([*command, "--db", str(db)], check=True, capture_output=True,
                               text=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return Run(result["commands"] / result["seconds"],
               result["cpu_seconds"] / result["commands"] * 1e6,
               result["bytes"] / result["events"])


def compare(rounds: int, orders: int, clients: int) -> dict[str, Any]:
    python = reference_python()
    sides = {
        "ours": [sys.executable, "-m", "bench.lifecycle"],
        "reference": [str(python), str(REFERENCE_SCRIPT)],
    }
    runs: dict[tuple[str, str], dict[str, list[Run]]] = {
        config: {"ours": [], "reference": []} for config in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(rounds):
            order = ("ours", "reference") if round_no % 2 == 0 else ("reference", "ours")
            for mode, synchronous in CONFIGURATIONS:
                for side in order:
                    print(f"  {clients} client(s), round {round_no + 1}/{rounds}: {side}, {mode}, "
                          f"synchronous={synchronous}", file=sys.stderr, flush=True)
                    db = Path(tmp) / f"{side}-{mode}-{synchronous}-{round_no}.db"
                    runs[(mode, synchronous)][side].append(_run(
                        [*sides[side], "--orders", str(orders), "--clients", str(clients),
                         "--mode", mode,
                         "--synchronous", synchronous], db))
    rows = []
    for (mode, synchronous), by_side in runs.items():
        pairs = list(zip(by_side["ours"], by_side["reference"], strict=True))
        ratios = [o.per_second / r.per_second for o, r in pairs]
        cpu_ratios = [r.cpu_us_per_command / o.cpu_us_per_command for o, r in pairs]
        rows.append({
            "cache": mode,
            "synchronous": synchronous,
            "ours_per_second": [round(r.per_second) for r in by_side["ours"]],
            "reference_per_second": [round(r.per_second) for r in by_side["reference"]],
            "ours_median_per_second": round(statistics.median(
                r.per_second for r in by_side["ours"])),
            "reference_median_per_second": round(statistics.median(
                r.per_second for r in by_side["reference"])),
            "ratio_median": round(statistics.median(ratios), 2),
            "ratios": [round(r, 2) for r in ratios],
            "ours_cpu_us_per_command": round(statistics.median(
                r.cpu_us_per_command for r in by_side["ours"])),
            "reference_cpu_us_per_command": round(statistics.median(
                r.cpu_us_per_command for r in by_side["reference"])),
            "cpu_ratio_median": round(statistics.median(cpu_ratios), 2),
        })
    sizes = {side: statistics.median(r.bytes_per_event for runs_ in runs.values()
                                     for r in runs_[side])
             for side in ("ours", "reference")}
    return {
        "workload": "order lifecycle: create, 4 adds, delete 1, checkout, mark paid "
                    f"({orders} orders = {8 * orders} commands per run)",
        "clients": clients,
        "rounds": rounds,
        "reference": f"eventsourcing {reference_version(python)} (SQLite)",
        "cpu_count": os.cpu_count(),
        "rows": rows,
        "bytes_per_event": {side: round(size) for side, size in sizes.items()},
    }


def print_table(comparison: dict[str, Any]) -> None:
    print(f"\n{comparison['workload']}, {comparison['clients']} client thread(s), "
          f"{comparison['rounds']} alternating rounds, "
          f"{comparison['cpu_count']} cores; reference: {comparison['reference']}")
    print(f"{'cache':6} {'synchronous':12} {'ours/s':>9} {'reference/s':>12} {'ratio':>7}  "
          f"{'CPU us/cmd ours':>16} {'reference':>10} {'ratio':>6}  per-round ratios")
    for row in comparison["rows"]:
        print(f"{row['cache']:6} {row['synchronous']:12} {row['ours_median_per_second']:>9} "
              f"{row['reference_median_per_second']:>12} {row['ratio_median']:>6}x  "
              f"{row['ours_cpu_us_per_command']:>16} {row['reference_cpu_us_per_command']:>10} "
              f"{row['cpu_ratio_median']:>5}x  "
              f"{' '.join(f'{r:.2f}' for r in row['ratios'])}")
    sizes = comparison["bytes_per_event"]
    print(f"bytes on disk per event: ours {sizes['ours']}, reference {sizes['reference']}")
