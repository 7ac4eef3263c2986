"""Arguments the checklist commands share, and where their human output goes."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from offboard import cmdshared, helptext, jsonout
from offboard.checklist.client import DATE_KEYS
from offboard.cmdshared import console


def add_common(parser: argparse.ArgumentParser, client: str = "CLIENT") -> None:
    """CLIENT (optional when `client` is "CLIENT?"), --evidence-dir and --json."""
    optional = client.endswith("?")
    parser.add_argument(
        "client",
        metavar="CLIENT",
        nargs="?" if optional else None,
        help="client name (or --all)" if optional else "client name: a folder under inventories/",
    )
    cmdshared.add_evidence_dir(parser)
    jsonout.add_flag(parser)


def add_dates(parser: argparse.ArgumentParser) -> None:
    for key in DATE_KEYS:
        flag = f"--{key.replace('_', '-')}"
        parser.add_argument(flag, dest=key, metavar="YYYY-MM-DD", help=f"override offboard_dates.{key}")


def date_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    return {key: getattr(args, key, None) for key in DATE_KEYS}


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    client: str = "CLIENT",
    dates: bool = False,
) -> argparse.ArgumentParser:
    """One checklist command's parser: its texts (commands.yml), the common arguments (and the date
    overrides), `func`."""
    parser = helptext.add_command(sub, name, func)
    add_common(parser, client=client)
    if dates:
        add_dates(parser)
    return parser


def finish(
    args: argparse.Namespace, command: Callable[..., tuple[int, Mapping[str, Any]]], *extra: Any, **kw: Any
) -> int:
    """Run a checklist command's typed function with the arguments every one takes (CLIENT, the evidence
    folder, where human output goes) plus its own, and return its exit code after its --json document
    when asked for."""
    code, fields = command(args.client, *extra, evidence_dir=args.evidence_dir, out=console(args), **kw)
    return jsonout.emit(args.command, code, fields) if args.json else code
