"""The offboarding process as data, and the pure logic that turns it into a client's dated plan.

No I/O beyond reading process.yml: dates in, due dates out, so every rule is unit-testable with a
controlled clock. Day numbers count from the offboarding start (day 1 = the start date). Every
deadline falls on or before the contract end date; when the phase windows would overrun it, every
day number is scaled down proportionally (order and dependencies are kept).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROCESS_FILE = Path(__file__).with_name("process.yml")
COMPLETIONS = ("attest", "automated", "notified")


class PlanError(ValueError):
    """Input that cannot become a plan (dates out of order, contract over, bad process data)."""


@dataclass(frozen=True)
class Phase:
    id: int
    name: str
    first_day: int
    last_day: int


@dataclass(frozen=True)
class Evidence:
    phase: str
    components: tuple[str, ...]


@dataclass(frozen=True)
class StepDef:
    id: str
    phase: int
    title: str
    owner: str
    completion: str
    done_when: str = ""
    after: tuple[str, ...] = ()
    evidence: Evidence | None = None
    due: str = "window"  # window | access_revocation | after_done
    after_done: tuple[str, int] | None = None  # (step, days) for due == after_done
    requires: str = ""
    remind_on_due: bool = False
    waits_for: tuple[str, int] | None = None  # (inventory date path, days after): a guard's known date


@dataclass(frozen=True)
class Process:
    phases: dict[int, Phase]
    steps: list[StepDef]

    def step(self, step_id: str) -> StepDef:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.steps]

    @property
    def roles(self) -> list[str]:
        return sorted({s.owner for s in self.steps})


def load_process(path: Path | None = None) -> Process:
    """Read and check process.yml (next to this module unless a path is given)."""
    path = path or PROCESS_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    phases = {}
    for p in data.get("phases") or []:
        first, last = p["window"]
        phases[int(p["id"])] = Phase(int(p["id"]), str(p["name"]), int(first), int(last))
    steps: list[StepDef] = []
    for s in data.get("steps") or []:
        due = s.get("due", "window")
        after_done = None
        if isinstance(due, Mapping):
            ad = due["after_done"]
            after_done = (str(ad["step"]), int(ad["days"]))
            due = "after_done"
        ev = s.get("evidence")
        wf = s.get("waits_for")
        steps.append(
            StepDef(
                id=str(s["id"]),
                phase=int(s["phase"]),
                title=str(s["title"]),
                owner=str(s.get("owner") or ""),
                completion=str(s["completion"]),
                done_when=str(s.get("done_when", "")).strip(),
                after=tuple(str(a) for a in s.get("after") or ()),
                evidence=Evidence(str(ev["phase"]), tuple(ev["components"])) if ev else None,
                due=str(due),
                after_done=after_done,
                requires=str(s.get("requires", "")),
                remind_on_due=bool(s.get("remind_on_due", False)),
                waits_for=(str(wf["date"]), int(wf.get("days_after", 0))) if wf else None,
            )
        )
    process = Process(phases, steps)
    _check(process, path)
    return process


def _check(process: Process, path: Path) -> None:
    ids = process.ids
    if len(set(ids)) != len(ids):
        raise PlanError(f"{path}: duplicate step ids")
    for s in process.steps:
        if s.phase not in process.phases:
            raise PlanError(f"{path}: step {s.id} names unknown phase {s.phase}")
        if s.completion not in COMPLETIONS:
            raise PlanError(f"{path}: step {s.id}: completion must be one of {', '.join(COMPLETIONS)}")
        if s.completion == "automated" and not s.evidence:
            raise PlanError(f"{path}: automated step {s.id} needs evidence (phase, components)")
        if s.waits_for and not s.evidence:
            raise PlanError(
                f"{path}: step {s.id} waits_for a guard's date but has no evidence to show the guard"
            )
        for dep in [*s.after, *([s.after_done[0]] if s.after_done else [])]:
            if dep not in ids:
                raise PlanError(f"{path}: step {s.id} depends on unknown step {dep}")
    _topo(process)  # raises on a cycle


def _topo(process: Process) -> list[str]:
    """Step ids so that every step comes after the steps it depends on."""
    deps = {s.id: set(s.after) for s in process.steps}
    order: list[str] = []
    while deps:
        ready = [i for i in process.ids if i in deps and not deps[i] & set(deps)]
        if not ready:
            raise PlanError(f"process steps depend on each other in a cycle: {', '.join(sorted(deps))}")
        for i in ready:
            order.append(i)
            del deps[i]
    return order


# --- clock ----------------------------------------------------------------------------------------
def now() -> dt.datetime:
    """The current UTC time; $OFFBOARD_NOW (ISO date or date-time) fixes it for tests and rehearsals."""
    env = os.environ.get("OFFBOARD_NOW")
    if env:
        return parse_instant(env)
    return dt.datetime.now(dt.UTC)


def parse_instant(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PlanError(f"{text!r} is not an ISO 8601 date or date-time") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse_date(value: Any, what: str) -> dt.date:
    """A date from a date, a date-time (its date) or an ISO text; PlanError naming `what` otherwise."""
    day = value.date() if isinstance(value, dt.datetime) else value
    if isinstance(day, dt.date):
        return day
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise PlanError(f"{what} {value!r} is not a date (use YYYY-MM-DD)") from None


def iso_utc(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- dated plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dates:
    start: dt.date
    contract_end: dt.date
    access_revocation: dt.date | None = None


@dataclass
class Schedule:
    """Due date per step, and how the windows were fitted to the contract."""

    due: dict[str, dt.date]
    compressed: bool
    available_days: int
    nominal_days: int
    notes: list[str] = field(default_factory=list)


def check_dates(dates: Dates, today: dt.date) -> None:
    """Refuse dates that cannot hold a plan, saying which and why."""
    if dates.contract_end < dates.start:
        raise PlanError(
            f"dates out of order: contract_end {dates.contract_end} is before the offboarding start "
            f"{dates.start}; fix offboard_dates in the client inventory"
        )
    if dates.contract_end < today:
        raise PlanError(
            f"the contract ended on {dates.contract_end} (today is {today}): no deadline can fall before "
            "the contract end any more. Agree an extension (set offboard_dates.contract_end) or run the "
            "steps as an emergency offboarding outside the plan"
        )
    rev = dates.access_revocation
    if rev is not None and not dates.start <= rev <= dates.contract_end:
        raise PlanError(
            f"dates out of order: access_revocation {rev} must fall between the start {dates.start} and "
            f"the contract end {dates.contract_end}"
        )


def schedule(process: Process, dates: Dates, today: dt.date) -> Schedule:
    """Due date of every step: windows from the start date, compressed to end by the contract end."""
    check_dates(dates, today)
    windowed = [s for s in process.steps if s.due != "after_done"]
    nominal = max(process.phases[s.phase].last_day for s in windowed)
    available = (dates.contract_end - dates.start).days + 1
    compressed = nominal > available
    notes: list[str] = []
    if compressed:
        notes.append(
            f"windows compressed: the process spans {nominal} days, the contract leaves {available} "
            f"(start {dates.start}, contract end {dates.contract_end})"
        )

    def day(n: int) -> dt.date:
        if compressed:
            n = max(1, math.ceil(n * available / nominal))
        return dates.start + dt.timedelta(days=n - 1)

    due: dict[str, dt.date] = {}
    order = _topo(process)
    steps = {s.id: s for s in process.steps}
    for sid in order:  # forward: never due before what it depends on
        s = steps[sid]
        if s.due == "access_revocation" and dates.access_revocation is not None:
            due[sid] = dates.access_revocation
            continue
        if s.due == "after_done":
            continue
        base = day(process.phases[s.phase].last_day)
        due[sid] = max([base, *(due[d] for d in s.after if d in due)])
    for sid in reversed(order):  # backward: a fixed date pulls what it depends on before it
        for dep in steps[sid].after:
            if sid in due and dep in due and due[dep] > due[sid]:
                notes.append(f"step {dep} moved to {due[sid]} to come before {sid}")
                due[dep] = due[sid]
    for sid in order:
        s = steps[sid]
        if s.after_done:
            ref, days = s.after_done
            due[sid] = due[ref] + dt.timedelta(days=days)
    return Schedule(due, compressed, available, nominal, notes)


def after_done_due(step: StepDef, done_on: dict[str, dt.date], planned: dt.date) -> dt.date:
    """A check N days after another step: counted from when that step was really done, once it is."""
    if not step.after_done:
        return planned
    ref, days = step.after_done
    return done_on[ref] + dt.timedelta(days=days) if ref in done_on else planned


# --- reminders ------------------------------------------------------------------------------------
ESCALATE_AFTER_DAYS = 3


@dataclass(frozen=True)
class Notice:
    """One message to one person about one step (or the kick-off), on one day."""

    kind: str  # kickoff | reminder | escalation | due_today
    step: str
    to_name: str
    to_email: str
    role: str
    subject: str
    body: str


def days_overdue(due: dt.date, today: dt.date) -> int:
    return (today - due).days


def reminder_kinds(due: dt.date, today: dt.date, remind_on_due: bool = False) -> list[str]:
    """Which messages an open step earns today: reminder (overdue), escalation (3+ days overdue)."""
    late = days_overdue(due, today)
    kinds: list[str] = []
    if late >= 1 or (remind_on_due and late >= 0):
        kinds.append("reminder")
    if late >= ESCALATE_AFTER_DAYS:
        kinds.append("escalation")
    return kinds
