"""The client's inputs to the checklist: team, dates, hand-over recipient, terms (read by inventory.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offboard import inventory, paths
from offboard import plan as planlib
from offboard import team as teamlib
from offboard.errors import UsageError
from offboard.inventory import InventoryError
from offboard.team import Person

DATE_KEYS = ("start", "contract_end", "access_revocation")


@dataclass
class ClientVars:
    client: str
    values: dict[str, Any]

    @property
    def members(self) -> dict[str, list[Person]]:
        """Every person of every owner role, primary first (offboard.team)."""
        return teamlib.parse_team(self.values.get("offboard_team"))

    @property
    def team(self) -> dict[str, Person]:
        """The primary person of each role: assignee, reminded, escalated from."""
        return {role: people[0] for role, people in self.members.items() if people}

    @property
    def recipient(self) -> dict[str, Any]:
        return dict(self.values.get("offboard_handover_recipient") or {})

    @property
    def coverage_confirmed(self) -> bool:
        """The client confirmed its replacement EDR/AV coverage (step 3.2 may go ahead)."""
        return bool((self.values.get("offboard_security") or {}).get("replacement_coverage_confirmed"))

    def dates(self, overrides: Mapping[str, str | None] | None = None) -> planlib.Dates:
        """offboard_dates of the inventory, each overridden by a non-empty value in `overrides`."""
        raw = dict(self.values.get("offboard_dates") or {})
        raw.update({k: v for k, v in (overrides or {}).items() if k in DATE_KEYS and v})
        for key in ("start", "contract_end"):
            if not raw.get(key):
                raise planlib.PlanError(
                    f"offboard_dates.{key} is not set for client {self.client}: add it to the inventory's "
                    f"group_vars or pass --{key.replace('_', '-')} YYYY-MM-DD"
                )
        rev = raw.get("access_revocation")
        return planlib.Dates(
            start=planlib.parse_date(raw["start"], "offboard_dates.start"),
            contract_end=planlib.parse_date(raw["contract_end"], "offboard_dates.contract_end"),
            access_revocation=planlib.parse_date(rev, "offboard_dates.access_revocation") if rev else None,
        )


def load_client_vars(client: str, project: Path) -> ClientVars:
    """The client group's variables, unvaulted (inventory.client_vars)."""
    try:
        return ClientVars(client, inventory.client_vars(client, project))
    except InventoryError as exc:
        raise UsageError(str(exc)) from None


def hosts(client: str, project: Path) -> list[str]:
    """In-scope devices: the hosts of the client's inventory (every one must come out clean)."""
    try:
        return inventory.load(client, project).names
    except InventoryError:
        return []


def project() -> Path:
    try:
        return paths.project_root()
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def find_person(cvars: ClientVars, who: str) -> Person:
    """The team member (or the hand-over recipient) named by name or e-mail; UsageError otherwise."""
    key = who.strip().lower()
    people = teamlib.everyone(cvars.members)
    rec = cvars.recipient
    if rec.get("name"):
        people.append(Person("handover_recipient", str(rec["name"]), str(rec.get("email") or "")))
    for p in people:
        if key and key in (p.name.lower(), p.email.lower()):
            return p
    known = ", ".join(f"{p.name} ({p.role})" for p in people) or "nobody (offboard_team is empty)"
    raise UsageError(f"unknown person {who!r} for client {cvars.client}: known people are {known}")
