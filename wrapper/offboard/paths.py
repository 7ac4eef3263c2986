"""Where things live: the project root (playbooks, roles, inventories) and the evidence store."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The directory holding offboard.yml: $OFFBOARD_PROJECT_DIR, else the checkout this package is in."""
    env = os.environ.get("OFFBOARD_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "offboard.yml").is_file() and (parent / "inventories").is_dir():
            return parent
    cwd = Path.cwd()
    if (cwd / "offboard.yml").is_file():
        return cwd
    raise FileNotFoundError(
        "cannot find the offboard project (offboard.yml): run from the repository root "
        "or set OFFBOARD_PROJECT_DIR"
    )


def inventories_dir() -> Path:
    return project_root() / "inventories"


def client_inventory(client: str) -> Path:
    return inventories_dir() / client


def evidence_root() -> Path:
    """$OFFBOARD_EVIDENCE_DIR, else <project>/evidence."""
    env = os.environ.get("OFFBOARD_EVIDENCE_DIR")
    return Path(env).resolve() if env else project_root() / "evidence"
