"""What the evidence commands (run, status, retry, verify, preflight) share: their common arguments, the
project and the store they act on, and the checks every one makes before it reads or runs anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from offboard import inventory, jsonout, ledger, paths
from offboard.errors import UsageError
from offboard.evidence import EvidenceStore
from offboard.inventory import InventoryError


def add_evidence_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--evidence-dir",
        type=Path,
        metavar="DIR",
        help="evidence store root (default: $OFFBOARD_EVIDENCE_DIR or <project>/evidence)",
    )


def add_client(parser: argparse.ArgumentParser) -> None:
    """CLIENT, --evidence-dir and --json: the arguments of every command about one client's evidence."""
    parser.add_argument("client", metavar="CLIENT", help="client name: a folder under inventories/")
    add_evidence_dir(parser)
    jsonout.add_flag(parser)


def console(args: argparse.Namespace) -> TextIO:
    """Where human output goes: stdout, or stderr when stdout carries the --json document."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def project() -> Path:
    try:
        return paths.project_root()
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def store(args: argparse.Namespace) -> EvidenceStore:
    root = args.evidence_dir.resolve() if getattr(args, "evidence_dir", None) else paths.evidence_root()
    return EvidenceStore(root)


def client_known(client: str, project_dir: Path, evidence: EvidenceStore) -> None:
    """A client is known by its inventory or, once the inventory is gone, by its evidence."""
    try:
        inventory.check_client_name(client, project_dir / "inventories")
    except InventoryError as exc:
        if not evidence.client_dir(client).is_dir():
            raise UsageError(str(exc)) from None


def fold(evidence: EvidenceStore, client: str) -> ledger.Ledger:
    return ledger.Ledger(client).fold(evidence.iter_client_records(client))
