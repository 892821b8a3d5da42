"""`python -m devhost.reset`: delete the local host's data folder (`make reset`); refuses while a
host runs on it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devhost.datadir import DataDirectory, DataDirectoryError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.reset", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".data"),
                        help="the data folder (default: .data)")
    args = parser.parse_args(argv)
    try:
        removed = DataDirectory(args.data_dir.resolve()).reset()
    except DataDirectoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Removed local data in {args.data_dir}" if removed else
          f"Nothing to remove: {args.data_dir} does not exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
