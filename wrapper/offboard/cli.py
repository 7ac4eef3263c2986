"""The `offboard` command line: one subcommand per module, each registering its own parser.

Exit codes, for people and CI jobs alike:
  0  done: nothing outstanding
  1  error: something failed; the message says what to do
  2  usage: bad arguments or input, nothing was run
  75 pending: devices still outstanding (EX_TEMPFAIL), try again later
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PENDING = 75

# Each module exposes register(subparsers) and sets `func` on its parser(s).
_COMMAND_MODULES = ("lab", "commands", "checklist", "serve", "report", "bundle")


class UsageError(Exception):
    """Bad input from the user: reported with exit code 2 before anything runs."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offboard",
        description=(
            "Offboard a departing client: run the phases against the client's inventory, keep "
            "tamper-evident evidence, retry devices that were offline."
        ),
        epilog="Exit codes: 0 done, 1 error, 2 usage, 75 devices still pending (retry later).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"offboard.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"offboard.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"offboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("offboard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m offboard.cli` runs this file as __main__; the command modules import offboard.cli, a
    # second copy whose UsageError is another class. Delegate to that copy so exit codes stay right.
    from offboard.cli import main as _main

    sys.exit(_main())
