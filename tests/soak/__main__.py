"""``python -m tests.soak`` (``make soak``): the convergence soak by hand, longer by default."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.soak.driver import SoakConfig, SoakFailure, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--orders", type=int, default=1000,
                        help="paid orders (plus a tenth declined-then-paid and a tenth "
                        "cancelled; default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="chaos and workload seed")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--no-kill", action="store_true", help="do not SIGKILL a host")
    parser.add_argument("--deadline", type=float, default=900.0,
                        help="seconds for the flows, and again for convergence")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the data folder and host logs here")
    args = parser.parse_args(argv)
    config = SoakConfig(paid=args.orders, declined=max(1, args.orders // 10),
                        cancelled=max(1, args.orders // 10), seed=args.seed,
                        clients=args.clients, kill=not args.no_kill, deadline=args.deadline)
    with tempfile.TemporaryDirectory(prefix="soak-") as temporary:
        work = args.keep or Path(temporary)
        try:
            report = run_soak(config, work)
        except SoakFailure as failure:
            kept = f"data and logs in {work}" if args.keep else "--keep DIR keeps data and logs"
            print(f"soak FAILED ({kept}):\n{failure}", file=sys.stderr)
            return 1
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
