"""`python -m ops`: the operator CLI (see ops/cli.py)."""

from ops.cli import main

if __name__ == "__main__":
    main()
