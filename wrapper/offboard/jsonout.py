"""`--json` for every command: one JSON object on stdout, the same envelope for all commands.

Envelope (schema 1), documented per command in docs/cli-json.md:
  {"command": "<name>", "schema": 1, "exit_code": <int>, "ok": <exit_code == 0>, ...command fields}
Human messages still go to stderr, so `offboard <command> --json | jq` always reads one document.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

SCHEMA = 1


def add_flag(parser: argparse.ArgumentParser) -> None:
    """The one `--json` option; every command's parser calls this."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout (schema in docs/cli-json.md); messages go to stderr",
    )


def emit(command: str, exit_code: int, fields: Mapping[str, Any], out: TextIO | None = None) -> int:
    """Write the envelope plus `fields` and return `exit_code`, so a command can `return emit(...)`."""
    doc: dict[str, Any] = {"command": command, "schema": SCHEMA, "exit_code": exit_code, "ok": exit_code == 0}
    clash = set(doc) & set(fields)
    if clash:
        raise ValueError(f"fields {sorted(clash)} are the envelope's own")
    doc.update(fields)
    stream = out if out is not None else sys.stdout
    json.dump(doc, stream, indent=1, sort_keys=False, default=str)
    stream.write("\n")
    stream.flush()
    return exit_code
