"""The state of each step, derived every time from the plan, the attestations and the run evidence."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offboard import ledger, waiting
from offboard import plan as planlib
from offboard import team as teamlib
from offboard.checklist.client import ClientVars, hosts, load_client_vars, project
from offboard.checklist.history import History, delivered, read_history, store
from offboard.errors import UsageError
from offboard.evidence import EvidenceStore


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
                if n.get("notice_kind") == "kickoff" and delivered(n)
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
        if step.requires == "replacement_coverage_confirmed" and not ctx.cvars.coverage_confirmed:
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


def load_context(
    client: str, evidence_dir: Path | None = None, need_plan: bool = True
) -> tuple[Context, EvidenceStore]:
    """Everything a command needs about one client today: process, history, hosts, inputs."""
    root = project()
    cvars = load_client_vars(client, root)
    evidence = store(evidence_dir)
    hist = read_history(evidence, client)
    if need_plan and hist.plan is None:
        raise UsageError(f"client {client} has no plan yet: create it with `offboard start {client}`")
    today = planlib.now().date()
    return Context(client, planlib.load_process(), hist, hosts(client, root), cvars, today), evidence
