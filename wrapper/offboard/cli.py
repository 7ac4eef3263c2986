"""The `offboard` command line: one subcommand per module, each registering its own parser.

Exit codes are defined in `offboard.errors` (0 done, 1 error, 2 usage, 75 pending).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from offboard import jsonout
from offboard.errors import EXIT_ERROR, EXIT_OK, EXIT_PENDING, EXIT_USAGE, UsageError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PENDING", "EXIT_USAGE", "UsageError", "build_parser", "main"]

# Each module exposes register(subparsers) and sets `func` on its parser(s).
_COMMAND_MODULES = ("lab", "commands", "checklist", "serve", "report", "bundle", "completion")


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
    parser.set_defaults(parser=parser)  # `offboard completion` generates its script from the whole parser
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"offboard: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            return jsonout.emit(args.command, EXIT_USAGE, {"error": str(exc)})
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("offboard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
