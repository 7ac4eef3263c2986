"""The offboarding checklist: start, plan, attest, remind, rehearse (issue 8).

The whole process, not only what Ansible automates: every step of process.yml with an owner (a person
from the client inventory's offboard_team) and a due date. Everything the checklist does is evidence:
each `start`, `attest` and `remind` that sends something writes one run folder in the client's
evidence store (records.jsonl with kind plan | attestation | notification, attached files, plan.json),
sealed into the same manifest chain as the Ansible runs. The state of a step is derived every time
from those records and from the ledger of the Ansible runs, never stored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from offboard import inventory, ledger, manifest, notify, paths, psa, waiting
from offboard import plan as planlib
from offboard import team as teamlib
from offboard.errors import EXIT_ERROR, EXIT_OK, EXIT_PENDING, UsageError
from offboard.evidence import RECORDS, STATUS_COMPLETE, EvidenceStore, RunMetadata, operator, write_metadata
from offboard.fsutil import locked, open_private
from offboard.inventory import InventoryError
from offboard.progress import table
from offboard.records import RecordError, schema_problem
from offboard.team import Person

CHECKLIST_LOCK = ".checklist.lock"
PLAN_FILE = "plan.json"
ATTACHMENTS = "attachments"
_EXITS = "Exit codes: 0 every step done, 1 error, 2 usage, 75 steps still open."


# --- client inputs --------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """Reads group_vars without a vault password: !vault values stay opaque placeholders."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: f"<{suffix} value>")


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

    def dates(self, overrides: argparse.Namespace | None = None) -> planlib.Dates:
        raw = dict(self.values.get("offboard_dates") or {})
        for key in ("start", "contract_end", "access_revocation"):
            value = getattr(overrides, key, None) if overrides is not None else None
            if value:
                raw[key] = value
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
    """The client group's variables (group_vars/<client>.yml or group_vars/<client>/*.yml), unvaulted."""
    try:
        path = inventory.check_client_name(client, project / "inventories")
    except InventoryError as exc:
        raise UsageError(str(exc)) from None
    gv = path / "group_vars"
    files = [gv / f"{client}.yml", gv / f"{client}.yaml", *sorted((gv / client).glob("*.y*ml"))]
    values: dict[str, Any] = {}
    for file in files:
        if not file.is_file():
            continue
        try:
            data = yaml.load(file.read_text(encoding="utf-8"), Loader=_Loader)
        except yaml.YAMLError as exc:
            raise UsageError(f"cannot read {file}: {exc}") from None
        if isinstance(data, dict):  # an encrypted vault file loads as one string: skipped
            values.update(data)
    return ClientVars(client, values)


# --- evidence I/O ---------------------------------------------------------------------------------
def _store(args: argparse.Namespace) -> EvidenceStore:
    root = args.evidence_dir.resolve() if getattr(args, "evidence_dir", None) else paths.evidence_root()
    return EvidenceStore(root)


def _project() -> Path:
    try:
        return paths.project_root()
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def write_checklist_run(
    store: EvidenceStore,
    client: str,
    command: str,
    records: list[dict[str, Any]],
    files: dict[str, Path | str] | None = None,
    at: dt.datetime | None = None,
) -> Path:
    """One sealed run folder holding checklist records (and files), chained like every other run."""
    os.umask(0o077)
    at = at or planlib.now()
    started = planlib.iso_utc(at)
    run_dir = store.new_run(client)
    meta = RunMetadata(
        run_id=run_dir.name,
        client=client,
        source="checklist",
        command=command,
        operator=operator(),
        started_at=started,
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )
    write_metadata(run_dir, meta)
    for rel, src in (files or {}).items():
        dest = run_dir / rel
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copyfile(src, dest)
        else:
            with open_private(dest, "w") as handle:
                handle.write(src)
    with open_private(run_dir / RECORDS, "a") as handle:
        for rec in records:
            line = {"schema": 1, "run_id": run_dir.name, "client": client, "phase": "checklist"}
            line.update(rec)
            line.setdefault("recorded_at", started)
            line.setdefault("check_mode", False)
            problem = schema_problem(json.loads(json.dumps(line, default=str)))
            if problem:  # the same contract as every other record (docs/record.schema.json)
                raise RecordError(f"checklist record breaks docs/record.schema.json ({problem})")
            handle.write(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n")
    meta.status, meta.complete, meta.ended_at, meta.exit_code = STATUS_COMPLETE, True, started, 0
    write_metadata(run_dir, meta)
    manifest.seal(run_dir)
    return run_dir


@dataclass
class History:
    """What the checklist runs recorded for one client: the newest plan, attestations, messages."""

    plan: dict[str, Any] | None = None
    plan_run: str = ""
    attestations: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    psa_updates: list[dict[str, Any]] = field(default_factory=list)  # status posted back to the PSA
    ledger: ledger.Ledger | None = None


def read_history(store: EvidenceStore, client: str) -> History:
    """One pass over the client's records: checklist records collected, Ansible records folded."""
    hist = History()
    hist.ledger = ledger.Ledger(client)

    def ansible_records(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for r in records:
            kind = r.get("kind")
            if kind == "plan":
                hist.plan, hist.plan_run = r.get("plan"), r.get("run_id", "")
                hist.attestations, hist.notifications, hist.psa_updates = [], [], []  # a new plan starts over
            elif kind == "attestation":
                hist.attestations.append(r)
            elif kind == "notification":
                hist.notifications.append(r)
            elif kind == "psa_update":
                hist.psa_updates.append(r)
            else:
                yield r

    hist.ledger.fold(ansible_records(store.iter_client_records(client)))
    return hist


# --- step state -----------------------------------------------------------------------------------
@dataclass
class StepState:
    id: str
    title: str
    phase: int
    role: str
    owner: str
    email: str
    due: dt.date
    completion: str
    done: bool = False
    done_at: str = ""
    evidence: str = ""
    contradiction: str = ""
    blocked_by: list[str] = field(default_factory=list)
    waiting_until: str = ""  # ISO date: a guard holds the step back until then (offboard.waiting)

    @property
    def effective_due(self) -> dt.date:
        """The planned due date, or the dated follow-up of a step waiting for a guard's date."""
        return dt.date.fromisoformat(self.waiting_until) if self.waiting_until else self.due

    def status(self, today: dt.date) -> str:
        if self.done:
            return "done"
        if self.waiting_until and today < self.effective_due:
            return f"waiting until {self.waiting_until}"
        late = (today - self.effective_due).days
        if late > 0:
            return f"overdue {late}d"
        return "due today" if late == 0 else "open"


@dataclass
class EvidenceView:
    has_evidence: bool
    clean: list[str]
    outstanding: list[str]
    missing: list[str]
    last_at: str = ""


def evidence_view(step: planlib.StepDef, folded: ledger.Ledger, hosts: list[str]) -> EvidenceView:
    """What the Ansible runs say about a step's components on every in-scope device."""
    assert step.evidence is not None
    phase, comps = step.evidence.phase, set(step.evidence.components)
    has = any(c in comps for (_, p), hp in folded.host_phases.items() if p == phase for (c, _i) in hp.items)
    view = EvidenceView(has, [], [], [])
    if not has:
        return view
    scope = hosts or sorted({h for (h, p) in folded.host_phases if p == phase})
    for host in scope:
        hp = folded.host_phases.get((host, phase))
        if hp is None:
            view.missing.append(host)
            continue
        bad = [
            f"{c}/{i} {e.state}"
            for (c, i), e in sorted(hp.items.items())
            if c in comps and e.state in (ledger.FAILED, ledger.PENDING, ledger.UNREACHABLE)
        ]
        if hp.status != ledger.OK:
            view.outstanding.append(
                f"{host} ({hp.status} since {hp.at}{': ' + hp.reason if hp.reason else ''})"
            )
        elif bad:
            view.outstanding.append(f"{host} ({', '.join(bad)})")
        else:
            view.clean.append(host)
        at = max([hp.at, *(e.at for (c, _), e in hp.items.items() if c in comps)])
        view.last_at = max(view.last_at, at)
    return view


def _delivered(n: dict[str, Any]) -> bool:
    return any(str(v).startswith("ok") for v in (n.get("channels") or {}).values())


@dataclass
class Context:
    client: str
    process: planlib.Process
    hist: History
    hosts: list[str]
    cvars: ClientVars
    today: dt.date


def step_states(ctx: Context) -> list[StepState]:
    plan = ctx.hist.plan or {}
    planned = {s["id"]: s for s in plan.get("steps", [])}
    attested: dict[str, dict[str, Any]] = {}
    for a in ctx.hist.attestations:
        attested[a["step"]] = a  # the newest attestation of a step counts
    states: dict[str, StepState] = {}
    done_on: dict[str, dt.date] = {}
    for step in ctx.process.steps:
        p = planned.get(step.id, {})
        due = planlib.parse_date(p.get("due") or plan.get("dates", {}).get("start"), "due")
        due = planlib.after_done_due(step, done_on, due)
        st = StepState(
            step.id,
            step.title,
            step.phase,
            step.owner,
            p.get("owner_name", ""),
            p.get("owner_email", ""),
            due,
            step.completion,
        )
        att = attested.get(step.id)
        if step.evidence:
            view = evidence_view(step, ctx.hist.ledger or ledger.Ledger(ctx.client), ctx.hosts)
            if view.has_evidence:
                total = len(view.clean) + len(view.outstanding) + len(view.missing)
                parts = [f"{len(view.clean)}/{total} devices clean"]
                if view.outstanding:
                    st.contradiction = "pending: " + "; ".join(view.outstanding)
                    parts.append(st.contradiction)
                if view.missing:
                    parts.append("no run yet: " + ", ".join(view.missing))
                st.evidence = "; ".join(parts)
                if step.completion == "automated" and not view.outstanding and not view.missing:
                    st.done, st.done_at = True, view.last_at
        if step.completion == "notified":
            people = {p.email.lower() for p in teamlib.everyone(ctx.cvars.members) if p.email}
            told = {
                (n.get("to_email") or "").lower()
                for n in ctx.hist.notifications
                if n.get("notice_kind") == "kickoff" and _delivered(n)
            }
            st.evidence = f"{len(people & told)}/{len(people)} people notified of the plan"
            if people and people <= told:
                st.done = True
                st.done_at = max(
                    n["recorded_at"] for n in ctx.hist.notifications if n.get("notice_kind") == "kickoff"
                )
        if step.waits_for and not st.done:
            until = waiting.waiting_until(
                step, ctx.hist.ledger or ledger.Ledger(ctx.client), ctx.hosts, ctx.cvars.values
            )
            if until:
                st.waiting_until = until.isoformat()
                note = f"refused by a guard until {until} ({step.waits_for[0]}): follow-up then"
                st.evidence = "; ".join(x for x in (st.evidence, note) if x)
        if step.requires == "replacement_coverage_confirmed" and not _coverage_confirmed(ctx.cvars):
            st.evidence = "; ".join(x for x in (st.evidence, "replacement coverage not confirmed yet") if x)
        if att and not st.done and not st.contradiction:
            st.done, st.done_at = True, att["recorded_at"]
            note = f"attested by {att['by_name']} {att['recorded_at']}"
            if att.get("attachments"):
                note += f", {len(att['attachments'])} file(s)"
            st.evidence = "; ".join(x for x in (note, st.evidence) if x)
        elif att and st.contradiction:
            st.evidence += f"; attestation by {att['by_name']} overruled by the evidence"
        st.blocked_by = [d for d in step.after if d in states and not states[d].done]
        states[step.id] = st
        if st.done and st.done_at:
            done_on[step.id] = planlib.parse_instant(st.done_at).date()
    return [states[s.id] for s in ctx.process.steps]


def _coverage_confirmed(cvars: ClientVars) -> bool:
    return bool((cvars.values.get("offboard_security") or {}).get("replacement_coverage_confirmed"))


def _hosts(client: str, project: Path) -> list[str]:
    """In-scope devices: the hosts of the client's inventory (every one must come out clean)."""
    try:
        return inventory.load(client, project).names
    except InventoryError:
        return []


def _context(args: argparse.Namespace, client: str, need_plan: bool = True) -> tuple[Context, EvidenceStore]:
    project = _project()
    cvars = load_client_vars(client, project)
    store = _store(args)
    hist = read_history(store, client)
    if need_plan and hist.plan is None:
        raise UsageError(f"client {client} has no plan yet: create it with `offboard start {client}`")
    today = planlib.now().date()
    return Context(client, planlib.load_process(), hist, _hosts(client, project), cvars, today), store


# --- start ----------------------------------------------------------------------------------------
def build_plan(
    process: planlib.Process, cvars: ClientVars, dates: planlib.Dates, at: dt.datetime
) -> dict[str, Any]:
    """The plan as recorded: every step with its person, manager and due date."""
    sched = planlib.schedule(process, dates, at.date())
    team = cvars.team
    steps = []
    for step in process.steps:
        person = team.get(step.owner)
        manager = team.get(person.manager_role) if person and person.manager_role else None
        steps.append(
            {
                "id": step.id,
                "phase": step.phase,
                "title": step.title,
                "owner_role": step.owner,
                "owner_name": person.name if person else "",
                "owner_email": person.email if person else "",
                "manager_role": person.manager_role if person else "",
                "manager_name": manager.name if manager else "",
                "manager_email": manager.email if manager else "",
                "deputies": [
                    {"name": d.name, "email": d.email} for d in cvars.members.get(step.owner, [])[1:]
                ],
                "due": sched.due[step.id].isoformat(),
                "completion": step.completion,
                "after": list(step.after),
            }
        )
    return {
        "client": cvars.client,
        "created_at": planlib.iso_utc(at),
        "created_by": operator(),
        "dates": {k: (v.isoformat() if v else None) for k, v in asdict(dates).items()},
        "compressed": sched.compressed,
        "available_days": sched.available_days,
        "nominal_days": sched.nominal_days,
        "notes": sched.notes,
        "steps": steps,
    }


def plan_gaps(process: planlib.Process, cvars: ClientVars) -> list[str]:
    """Owners that map to nobody: the plan cannot assign those steps."""
    team = cvars.team
    gaps = []
    for step in process.steps:
        if not step.owner:
            gaps.append(f"step {step.id} ({step.title}) has no owner role in process.yml")
            continue
        person = team.get(step.owner)
        if person is None or not person.name or not person.email:
            gaps.append(
                f"role {step.owner} (step {step.id}) has no person with name and email in offboard_team"
            )
        for deputy in cvars.members.get(step.owner, [])[1:]:
            if not deputy.name or not deputy.email:
                gaps.append(f"role {step.owner}: a deputy in offboard_team has no name and email")
    return list(dict.fromkeys(gaps))


def cmd_start(args: argparse.Namespace) -> int:
    project = _project()
    cvars = load_client_vars(args.client, project)
    process = planlib.load_process()
    at = planlib.now()
    try:
        dates = cvars.dates(args)
        plan = build_plan(process, cvars, dates, at)
    except planlib.PlanError as exc:
        raise UsageError(f"cannot plan client {args.client}: {exc}") from None
    if getattr(args, "psa_link", None):  # started by a PSA webhook (offboard serve): which record
        plan["psa"] = args.psa_link
    gaps = plan_gaps(process, cvars)
    if gaps:
        raise UsageError(
            f"cannot assign every step of client {args.client}: "
            + "; ".join(gaps)
            + ". Add the people to offboard_team in the client inventory."
        )
    store = _store(args)
    store.client_dir(args.client, create=True)
    with locked(store.client_dir(args.client) / CHECKLIST_LOCK):
        existing = read_history(store, args.client).plan
        if existing and not args.replan:
            print(
                f"offboard: client {args.client} already has a plan (created {existing['created_at']}); "
                "`offboard plan` shows it, `offboard start --replan` records a new one (the old stays in "
                "the evidence)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        run_dir = write_checklist_run(
            store,
            args.client,
            "start",
            [{"kind": "plan", "plan": plan}],
            {PLAN_FILE: json.dumps(plan, indent=2) + "\n"},
            at,
        )
    print(f"plan for client {args.client} created: {len(plan['steps'])} steps, evidence in {run_dir}")
    for note in plan["notes"]:
        print(f"note: {note}")
    print()
    return cmd_plan(argparse.Namespace(**{**vars(args), "json": False}))


# --- plan -----------------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    ctx, _ = _context(args, args.client)
    states = step_states(ctx)
    open_steps = [s for s in states if not s.done]
    if args.json:
        out = {
            "client": ctx.client,
            "today": ctx.today.isoformat(),
            "plan": {k: v for k, v in (ctx.hist.plan or {}).items() if k != "steps"},
            "plan_run": ctx.hist.plan_run,
            "steps": [
                {
                    **{k: v for k, v in asdict(s).items() if k != "due"},
                    "due": s.due.isoformat(),
                    "status": s.status(ctx.today),
                }
                for s in states
            ],
            "open": len(open_steps),
        }
        json.dump(out, sys.stdout, indent=1)
        print()
    else:
        plan = ctx.hist.plan or {}
        d = plan.get("dates", {})
        print(
            f"client {ctx.client}: start {d.get('start')}, contract end {d.get('contract_end')}, "
            f"access revocation {d.get('access_revocation') or '-'}; today {ctx.today}"
            + (" (windows compressed)" if plan.get("compressed") else "")
        )
        rows = [
            (s.id, s.title, f"{s.owner} ({s.role})", s.due.isoformat(), s.status(ctx.today), s.evidence)
            for s in states
        ]
        print(table(["STEP", "TITLE", "OWNER", "DUE", "STATUS", "EVIDENCE"], rows))
        print(f"\n{len(states) - len(open_steps)}/{len(states)} steps done")
    return EXIT_PENDING if open_steps else EXIT_OK


# --- attest ---------------------------------------------------------------------------------------
def find_person(cvars: ClientVars, who: str) -> Person:
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


def cmd_attest(args: argparse.Namespace) -> int:
    ctx, store = _context(args, args.client)
    if args.step not in ctx.process.ids:
        raise UsageError(f"unknown step {args.step!r}: steps are {', '.join(ctx.process.ids)}")
    person = find_person(ctx.cvars, args.by)
    attachments = []
    for path in args.attach or []:
        if not path.is_file():
            raise UsageError(f"attachment {path} is not a readable file")
        attachments.append(path)
    step = ctx.process.step(args.step)
    if step.requires == "replacement_coverage_confirmed" and not _coverage_confirmed(ctx.cvars):
        print(
            f"offboard: refused: step {step.id} ({step.title}) needs the client's replacement EDR/AV "
            "coverage confirmed first: set offboard_security.replacement_coverage_confirmed (and who/when) "
            "in the client inventory",
            file=sys.stderr,
        )
        return EXIT_ERROR
    state = next(s for s in step_states(ctx) if s.id == args.step)
    if state.contradiction:
        print(
            f"offboard: refused: the evidence contradicts step {step.id} ({step.title}): "
            f"{state.contradiction}. Finish it (e.g. `offboard retry {args.client}`) and the step "
            "completes from the evidence.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    at = planlib.now()
    files: dict[str, Path | str] = {}
    listed = []
    for n, path in enumerate(attachments, 1):
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name) or "file"
        rel = f"{ATTACHMENTS}/{n:02d}-{safe}"
        files[rel] = path
        listed.append(
            {
                "name": path.name,
                "path": rel,
                "sha256": manifest.sha256_file(path),
                "size": path.stat().st_size,
            }
        )
    record = {
        "kind": "attestation",
        "step": step.id,
        "title": step.title,
        "by_name": person.name,
        "by_email": person.email,
        "by_role": person.role,
        "operator": operator(),
        "note": args.note or "",
        "attachments": listed,
        "recorded_at": planlib.iso_utc(at),
    }
    with locked(store.client_dir(args.client) / CHECKLIST_LOCK):
        run_dir = write_checklist_run(store, args.client, "attest", [record], files, at)
    print(
        f"step {step.id} ({step.title}) attested by {person.name} at {record['recorded_at']}"
        + (f" with {len(listed)} file(s)" if listed else "")
        + f"; evidence in {run_dir}"
    )
    psa.sync_client(store, args.client)  # the PSA learns of the completed step; never blocks
    return EXIT_OK


# --- remind ---------------------------------------------------------------------------------------
def notices(ctx: Context, states: list[StepState]) -> list[planlib.Notice]:
    """Every message the plan calls for today (before de-duplication against what was sent)."""
    planned = {s["id"]: s for s in (ctx.hist.plan or {}).get("steps", [])}
    out: list[planlib.Notice] = []
    # Kick-off (step 1.2): everyone on the account learns the timeline and their own tasks.
    members = ctx.cvars.members
    for person in teamlib.everyone(members):
        if not person.email:
            continue
        email = person.email.lower()
        deputy_of = {r for r, ps in members.items() if any(p.email.lower() == email for p in ps[1:])}
        mine = [s for s in states if s.email.lower() == email or s.role in deputy_of]
        lines = "\n".join(
            f"  {s.id} {s.title}: due {s.due}"
            + (f" (deputy for {s.owner})" if s.email.lower() != email else "")
            for s in mine
        )
        lines = lines or "  (none: you are informed)"
        out.append(
            planlib.Notice(
                "kickoff",
                "kickoff",
                person.name,
                person.email,
                person.role,
                f"[offboard] {ctx.client}: offboarding plan and your tasks",
                f"Client {ctx.client} is being offboarded. Do not change its environment unaware of the "
                f"plan (`offboard plan {ctx.client}`). Your steps:\n{lines}\n",
            )
        )
    for s in states:
        if s.done:
            continue
        step = ctx.process.step(s.id)
        due = s.effective_due  # a step waiting for a guard's date is followed up on that date
        kinds = planlib.reminder_kinds(due, ctx.today, step.remind_on_due or bool(s.waiting_until))
        late = planlib.days_overdue(due, ctx.today)
        how = (
            f"It completes from the run evidence: `offboard retry {ctx.client}`."
            if step.completion == "automated"
            else f"When done: offboard attest {ctx.client} {s.id} --by '{s.owner}' --note ... --attach FILE"
        )
        body = (
            f"Step {s.id} {s.title} of client {ctx.client} was due {due}"
            f"{f' (follow-up: a guard held it until {s.waiting_until})' if s.waiting_until else ''}"
            f"{f' ({late} day(s) overdue)' if late > 0 else ' (due today)'}.\n"
            f"Done when: {step.done_when}\n{('Status: ' + s.evidence + chr(10)) if s.evidence else ''}{how}\n"
        )
        if "reminder" in kinds and s.email:
            out.append(
                planlib.Notice(
                    "reminder",
                    s.id,
                    s.owner,
                    s.email,
                    s.role,
                    f"[offboard] {ctx.client} {s.id} {s.title}",
                    body,
                )
            )
        p = planned.get(s.id, {})
        if "escalation" in kinds and p.get("manager_email"):
            out.append(
                planlib.Notice(
                    "escalation",
                    s.id,
                    p["manager_name"],
                    p["manager_email"],
                    p.get("manager_role", ""),
                    f"[offboard] ESCALATION {ctx.client} {s.id} {s.title}: {late} day(s) overdue",
                    f"{s.owner} ({s.role}) has not completed this step.\n\n{body}",
                )
            )
    return out


def _what(n: planlib.Notice) -> str:
    return n.kind if n.step == "kickoff" else f"{n.kind} for {n.step}"


def _already_sent(ctx: Context) -> set[tuple[str, str, str]]:
    """(step, person, day) of every delivered message; the kick-off counts for every day (sent once)."""
    day = ctx.today.isoformat()
    return {
        (
            n.get("step", ""),
            (n.get("to_email") or "").lower(),
            day if n.get("step") == "kickoff" else n.get("day", ""),
        )
        for n in ctx.hist.notifications
        if _delivered(n)
    }


def remind_client(args: argparse.Namespace, client: str, ch: notify.Channels) -> int:
    ctx, store = _context(args, client)
    if not args.dry_run:  # the daily run also tells the PSA of steps completed from run evidence
        psa.sync_client(store, client)
    states = step_states(ctx)
    day = ctx.today.isoformat()
    sent = _already_sent(ctx)
    todo: list[planlib.Notice] = []
    for n in notices(ctx, states):
        key = (n.step, n.to_email.lower(), day)
        if key in sent:
            continue
        sent.add(key)  # one message per step, person and day, also within this run
        todo.append(n)
    overdue = [s for s in states if not s.done and s.effective_due < ctx.today]
    if not todo:
        print(f"{client}: nothing to send today ({len(overdue)} step(s) overdue)")
        return EXIT_PENDING if overdue else EXIT_OK
    if args.dry_run:
        for n in todo:
            print(
                f"{client}: would send {_what(n)} to {n.to_name} <{n.to_email}> via "
                f"{', '.join(ch.names) or 'no channel configured'}: {n.subject}"
            )
        return EXIT_PENDING if overdue else EXIT_OK
    records = []
    failed = False
    for n in todo:
        results = notify.deliver(ch, notify.Outgoing(n.to_name, n.to_email, n.subject, n.body))
        ok = any(v.startswith("ok") for v in results.values())
        failed |= not ok or any(v.startswith("error") for v in results.values())
        print(
            f"{client}: {_what(n)} to {n.to_name} <{n.to_email}>: "
            + ", ".join(f"{k} {v}" for k, v in results.items())
        )
        records.append(
            {
                "kind": "notification",
                "notice_kind": n.kind,
                "step": n.step,
                "to_name": n.to_name,
                "to_email": n.to_email,
                "role": n.role,
                "day": day,
                "subject": n.subject,
                "channels": results,
                "recorded_at": planlib.iso_utc(planlib.now()),
            }
        )
    with locked(store.client_dir(client) / CHECKLIST_LOCK):
        write_checklist_run(store, client, "remind", records)
    if failed:
        return EXIT_ERROR
    return EXIT_PENDING if overdue else EXIT_OK


def cmd_remind(args: argparse.Namespace) -> int:
    if bool(args.client) == bool(args.all):
        raise UsageError("name one CLIENT or use --all")
    store = _store(args)
    if args.all:
        clients = (
            [p.name for p in sorted(store.root.iterdir()) if p.is_dir() and read_history(store, p.name).plan]
            if store.root.is_dir()
            else []
        )
    else:
        clients = [args.client]
    codes = []
    for client in clients:
        cvars = load_client_vars(client, _project())
        cch = notify.channels(cvars.values.get("offboard_notify"))
        if not cch.names and not args.dry_run:
            raise UsageError(
                "no notification channel configured: set OFFBOARD_SMTP_HOST (e-mail) and/or "
                "OFFBOARD_WEBHOOK_URL, or offboard_notify in the client inventory"
            )
        codes.append(remind_client(args, client, cch))
    if not clients:
        print("no client has a plan yet")
    return max(codes, key=lambda c: {EXIT_ERROR: 2, EXIT_PENDING: 1}.get(c, 0), default=EXIT_OK)


# --- rehearse -------------------------------------------------------------------------------------
def missing_inputs(process: planlib.Process, cvars: ClientVars, ch: notify.Channels) -> list[str]:
    found = plan_gaps(process, cvars)
    team = cvars.team
    for role in sorted({s.owner for s in process.steps if s.owner in team}):
        mgr = team[role].manager_role
        if not mgr:
            found.append(
                f"role {role} has no manager in offboard_team: escalations for its steps reach nobody"
            )
        elif mgr not in team or not team[mgr].email:
            found.append(f"role {role}'s manager {mgr!r} is not a person in offboard_team")
    rec = cvars.recipient
    if not rec.get("name") or not rec.get("email"):
        found.append("offboard_handover_recipient has no name/email: nobody to hand credentials to")
    if not rec.get("age_public_key"):
        found.append(
            "offboard_handover_recipient.age_public_key is not set: hand-over files cannot be encrypted"
        )
    if not _coverage_confirmed(cvars):
        found.append(
            "offboard_security.replacement_coverage_confirmed is not true: step 3.2 (EDR/AV removal) stays "
            "blocked until the client confirms its replacement coverage"
        )
    if not ch.names:
        found.append(
            "no notification channel (OFFBOARD_SMTP_HOST / OFFBOARD_WEBHOOK_URL or offboard_notify): "
            "reminders cannot be sent"
        )
    return found


def cmd_rehearse(args: argparse.Namespace) -> int:
    project = _project()
    cvars = load_client_vars(args.client, project)
    process = planlib.load_process()
    at = planlib.now()
    ch = notify.channels(cvars.values.get("offboard_notify"))
    findings = missing_inputs(process, cvars, ch)
    print(f"== rehearsal of client {args.client} (nothing is changed, no plan is recorded)\n")
    plan = None
    try:
        plan = build_plan(process, cvars, cvars.dates(args), at)
    except planlib.PlanError as exc:
        findings.insert(0, f"no plan possible: {exc}")
    run_code = EXIT_OK
    if plan:
        print(f"-- plan ({len(plan['steps'])} steps{', windows compressed' if plan['compressed'] else ''})")
        print(
            table(
                ["STEP", "TITLE", "OWNER", "DUE", "COMPLETES BY"],
                [
                    (
                        s["id"],
                        s["title"],
                        f"{s['owner_name'] or '-'} ({s['owner_role']})",
                        s["due"],
                        s["completion"],
                    )
                    for s in plan["steps"]
                ],
            )
        )
        hist = History(plan=plan, ledger=ledger.Ledger(args.client))
        ctx = Context(args.client, process, hist, [], cvars, at.date())
        print("\n-- notifications (dry run)")
        for n in notices(ctx, step_states(ctx)):
            print(
                f"would send {_what(n)} to {n.to_name} <{n.to_email}> via "
                f"{', '.join(ch.names) or 'no channel configured'}"
            )
    if not args.skip_run:
        from offboard import commands

        print("\n-- every phase in check mode")
        run_code = commands.cmd_run(
            argparse.Namespace(
                client=args.client,
                tags="",
                limit=None,
                check=True,
                preflight_timeout=args.preflight_timeout,
                evidence_dir=args.evidence_dir,
            )
        )
    print("\n-- missing inputs")
    for f in findings:
        print(f"MISSING {f}")
    if not findings:
        print("none")
    if findings or run_code == EXIT_ERROR:
        return EXIT_ERROR
    return run_code


# --- parsers --------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    def common(parser: argparse.ArgumentParser, client: bool = True) -> None:
        if client:
            parser.add_argument("client", metavar="CLIENT", help="client name: a folder under inventories/")
        parser.add_argument(
            "--evidence-dir",
            type=Path,
            metavar="DIR",
            help="evidence store root (default: $OFFBOARD_EVIDENCE_DIR or <project>/evidence)",
        )

    def dates(parser: argparse.ArgumentParser) -> None:
        for key in ("start", "contract_end", "access_revocation"):
            parser.add_argument(
                f"--{key.replace('_', '-')}",
                dest=key,
                metavar="YYYY-MM-DD",
                help=f"override offboard_dates.{key} of the inventory",
            )

    p = sub.add_parser(
        "start",
        help="create the client's offboarding plan: every step, owner and due date",
        description="Set the client's status to offboarding: create the plan at once (every step of the "
        "process assigned to a person of offboard_team, due dates from offboard_dates, compressed to end "
        "by the contract end) and record it in the client's evidence. $OFFBOARD_NOW fixes the clock.",
        epilog="Exit codes: 0/75 plan created (75: steps open), 1 a plan exists already, 2 usage.",
    )
    common(p)
    dates(p)
    p.add_argument("--replan", action="store_true", help="record a new plan even if one exists")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser(
        "plan",
        help="the client's checklist: step, owner, due, status, evidence",
        description="Every step of the client's plan with its owner, due date, status (done, open, due "
        "today, overdue) and the evidence that completes it: run evidence (ledger) for automated steps, "
        "attestations for manual ones.",
        epilog=_EXITS,
    )
    common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "attest",
        help="record that a manual step is done: who, when, note, attached files",
        description="A named person attests STEP done. The attestation (UTC time, note, sha256 of every "
        "attached file, the files themselves) becomes evidence in the manifest chain. Refused when the "
        "run evidence contradicts it (e.g. a device still pending for an automated step).",
        epilog="Exit codes: 0 recorded, 1 refused (evidence contradicts), 2 usage.",
    )
    common(p)
    p.add_argument("step", metavar="STEP", help="step id, e.g. 1.1 (see `offboard plan CLIENT`)")
    p.add_argument("--by", required=True, metavar="NAME", help="the person attesting (name or e-mail)")
    p.add_argument("--note", default="", help="what was done, where the proof is")
    p.add_argument("--attach", type=Path, action="append", metavar="FILE", help="file to keep (repeatable)")
    p.set_defaults(func=cmd_attest)

    p = sub.add_parser(
        "remind",
        help="send reminders for overdue steps, escalate after 3 days (run daily)",
        description="For every open step past its due date: a reminder to its assignee; three days "
        "overdue, their manager too. Also the kick-off notice (step 1.2) to everyone assigned. At most one "
        "message per step, person and day; every message sent is evidence. E-mail via "
        "OFFBOARD_SMTP_HOST/PORT/FROM, webhook via OFFBOARD_WEBHOOK_URL (or offboard_notify).",
        epilog="Exit codes: 0 nothing overdue, 1 a delivery failed, 2 usage, 75 steps overdue.",
    )
    p.add_argument("client", metavar="CLIENT", nargs="?", help="client name (or --all)")
    common(p, client=False)
    p.add_argument("--all", action="store_true", help="every client with a plan in the evidence store")
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; send and record nothing")
    p.set_defaults(func=cmd_remind)

    p = sub.add_parser(
        "rehearse",
        help="mock offboarding: plan, check-mode run of every phase, dry-run notices, missing inputs",
        description="Build the plan without recording it, run every phase in check mode (changes nothing "
        "on any machine; the rehearsal run is kept as evidence but never counts as done), print the "
        "notifications that would be sent, and list the missing inputs.",
        epilog="Exit codes: 0 ready, 1 missing inputs or errors, 2 usage, 75 devices unreachable.",
    )
    common(p)
    dates(p)
    p.add_argument("--skip-run", action="store_true", help="do not run the phases in check mode")
    p.add_argument("--preflight-timeout", type=float, default=5.0, metavar="SECONDS")
    p.set_defaults(func=cmd_rehearse)
