"""The commands' help texts (summary, description, exit codes) are data, in commands.yml beside this file:
one place to read and edit what `offboard COMMAND --help` says, and no parser definition repeated per
command."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

_FILE = Path(__file__).with_name("commands.yml")


@functools.cache
def texts() -> dict[str, dict[str, str]]:
    with _FILE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{_FILE}: expected a mapping of command names to their texts")
    return data


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], Any] | None = None,
) -> argparse.ArgumentParser:
    """The parser of command `name` with its texts from commands.yml (and `func` as what it runs)."""
    text = texts()[name]
    parser = sub.add_parser(
        name, help=text["summary"], description=text.get("description"), epilog=text.get("exits")
    )
    if func is not None:
        parser.set_defaults(func=func)
    return parser
