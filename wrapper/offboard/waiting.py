"""Steps that wait for a known date: a guard refused them, and the date that lifts the guard is known.

The backup data of step 3.3 may be deleted only after the contracted retention (retention_until); access
revocation (2.3) runs only on the agreed date. When the run evidence shows that the only thing left of
such a step is what a guard refused, the step is not late: it waits until that date, and the date is its
follow-up (a reminder on the day, overdue from then on). The step and its date come from process.yml
(`waits_for: {date: <inventory variable path>, days_after: N}`); this module is pure logic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from offboard import ledger
from offboard import plan as planlib

REFUSED = "refused"


def known_date(values: Mapping[str, Any], path: str, days_after: int = 0) -> dt.date | None:
    """The date at a dotted inventory path (plus days_after), or None when unset or not a date."""
    value: Any = values
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    try:
        return planlib.parse_date(value, path) + dt.timedelta(days=days_after)
    except planlib.PlanError:
        return None


def only_refused(step: planlib.StepDef, folded: ledger.Ledger, hosts: list[str]) -> bool:
    """True when the step's evidence is complete except for items a guard refused (at least one)."""
    if step.evidence is None:
        return False
    phase, comps = step.evidence.phase, set(step.evidence.components)
    scope = hosts or sorted({h for (h, p) in folded.host_phases if p == phase})
    refused = 0
    for host in scope:
        hp = folded.host_phases.get((host, phase))
        if hp is None or hp.status != ledger.OK:
            return False  # a device that did not finish the phase is outstanding for its own reason
        for (component, _item), entry in hp.items.items():
            if component not in comps or entry.state not in (
                ledger.FAILED,
                ledger.PENDING,
                ledger.UNREACHABLE,
            ):
                continue
            if entry.action != REFUSED:
                return False
            refused += 1
    return refused > 0


def waiting_until(
    step: planlib.StepDef, folded: ledger.Ledger, hosts: list[str], values: Mapping[str, Any]
) -> dt.date | None:
    """The date the step waits for, when a guard holds it back and that date is known."""
    if step.waits_for is None or not only_refused(step, folded, hosts):
        return None
    path, days_after = step.waits_for
    return known_date(values, path, days_after)
