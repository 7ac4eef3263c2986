"""The messages the checklist sends: the kick-off notice, reminders, escalations (texts and who gets them)."""

from __future__ import annotations

from offboard import plan as planlib
from offboard import team as teamlib
from offboard.checklist.history import delivered
from offboard.checklist.state import Context, StepState


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


def what(n: planlib.Notice) -> str:
    return n.kind if n.step == "kickoff" else f"{n.kind} for {n.step}"


def already_sent(ctx: Context) -> set[tuple[str, str, str]]:
    """(step, person, day) of every delivered message; the kick-off counts for every day (sent once)."""
    day = ctx.today.isoformat()
    return {
        (
            n.get("step", ""),
            (n.get("to_email") or "").lower(),
            day if n.get("step") == "kickoff" else n.get("day", ""),
        )
        for n in ctx.hist.notifications
        if delivered(n)
    }
