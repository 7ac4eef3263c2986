"""The people behind the checklist's owner roles (offboard_team in the client inventory).

A role holds one person or several: the first is the primary (assignee, reminders), the others are
deputies (kick-off notice with the role's steps, may attest); escalations go to the role's manager (a
role whose primary is notified). Accepted forms, the old one-person form included:

  account_manager: {name: Alex Account, email: alex@msp.example, manager: leadership}
  technicians:
    manager: leadership
    people:
      - {name: Tess Tech, email: tess@msp.example}
      - {name: Terry Tech, email: terry@msp.example}
  billing: [{name: Bill Billing, email: bill@msp.example, manager: leadership}, {name: Bea, email: ...}]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Person:
    role: str
    name: str
    email: str
    manager_role: str = ""


def parse_team(raw: Any) -> dict[str, list[Person]]:
    """Role -> people, primary first; malformed entries are skipped (plan_gaps reports the role)."""
    out: dict[str, list[Person]] = {}
    for role, data in (raw or {}).items() if isinstance(raw, Mapping) else ():
        if isinstance(data, list):
            entries = [e for e in data if isinstance(e, Mapping)]
            manager = str((entries[0].get("manager") if entries else "") or "")
        elif isinstance(data, Mapping) and "people" in data:
            entries = [e for e in data.get("people") or [] if isinstance(e, Mapping)]
            manager = str(data.get("manager") or "")
        elif isinstance(data, Mapping):
            entries, manager = [data], str(data.get("manager") or "")
        else:
            entries, manager = [], ""
        out[str(role)] = [
            Person(str(role), str(e.get("name") or ""), str(e.get("email") or ""), manager) for e in entries
        ]
    return out


def everyone(members: Mapping[str, list[Person]]) -> list[Person]:
    """Each person once (by e-mail, first role wins), in team order."""
    seen: set[str] = set()
    out = []
    for people in members.values():
        for p in people:
            key = p.email.lower() or f"{p.role}/{p.name}"
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out
