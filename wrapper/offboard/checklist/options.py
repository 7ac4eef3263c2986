"""Arguments the checklist commands share, and where their human output goes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from offboard import jsonout
from offboard.checklist.client import DATE_KEYS


def add_common(parser: argparse.ArgumentParser, client: str = "CLIENT") -> None:
    """CLIENT (optional when `client` is "CLIENT?"), --evidence-dir and --json."""
    optional = client.endswith("?")
    parser.add_argument(
        "client",
        metavar="CLIENT",
        nargs="?" if optional else None,
        help="client name (or --all)" if optional else "client name: a folder under inventories/",
    )
    parser.add_argument(
        "--evidence-dir",
        type=Path,
        metavar="DIR",
        help="evidence store root (default: $OFFBOARD_EVIDENCE_DIR or <project>/evidence)",
    )
    jsonout.add_flag(parser)


def add_dates(parser: argparse.ArgumentParser) -> None:
    for key in DATE_KEYS:
        flag = f"--{key.replace('_', '-')}"
        parser.add_argument(flag, dest=key, metavar="YYYY-MM-DD", help=f"override offboard_dates.{key}")


def date_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    return {key: getattr(args, key, None) for key in DATE_KEYS}


def console(args: argparse.Namespace) -> TextIO:
    """Human output: stdout, or stderr when stdout carries the --json document."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout
