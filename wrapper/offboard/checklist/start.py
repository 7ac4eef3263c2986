"""`offboard start CLIENT`: the client's offboarding plan, every step assigned and dated, recorded."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from offboard import plan as planlib
from offboard.checklist import plan as plancmd
from offboard.checklist.client import ClientVars, load_client_vars, project
from offboard.checklist.history import CHECKLIST_LOCK, read_history, store, write_run
from offboard.checklist.options import add_command, date_overrides, finish
from offboard.errors import EXIT_ERROR, UsageError
from offboard.evidence import operator
from offboard.fsutil import locked

PLAN_FILE = "plan.json"


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


def start(
    client: str,
    *,
    evidence_dir: Path | None = None,
    dates: Mapping[str, str | None] | None = None,
    replan: bool = False,
    psa_link: Mapping[str, Any] | None = None,
    out: TextIO = sys.stdout,
) -> tuple[int, dict[str, Any]]:
    """Record the client's plan (refused when one exists, unless replan), then show it.

    `psa_link` names the PSA record that started it (offboard serve). Returns the exit code (0/75 plan
    recorded, 1 a plan exists) and the --json fields."""
    cvars = load_client_vars(client, project())
    process = planlib.load_process()
    at = planlib.now()
    try:
        plan = build_plan(process, cvars, cvars.dates(dates), at)
    except planlib.PlanError as exc:
        raise UsageError(f"cannot plan client {client}: {exc}") from None
    if psa_link:
        plan["psa"] = dict(psa_link)
    gaps = plan_gaps(process, cvars)
    if gaps:
        raise UsageError(
            f"cannot assign every step of client {client}: "
            + "; ".join(gaps)
            + ". Add the people to offboard_team in the client inventory."
        )
    evidence = store(evidence_dir)
    evidence.client_dir(client, create=True)
    with locked(evidence.client_dir(client) / CHECKLIST_LOCK):
        existing = read_history(evidence, client).plan
        if existing and not replan:
            print(
                f"offboard: client {client} already has a plan (created {existing['created_at']}); "
                "`offboard plan` shows it, `offboard start --replan` records a new one (the old stays in "
                "the evidence)",
                file=sys.stderr,
            )
            return EXIT_ERROR, {
                "client": client,
                "created": False,
                "existing_created_at": existing["created_at"],
            }
        run_dir = write_run(
            evidence,
            client,
            "start",
            [{"kind": "plan", "plan": plan}],
            {PLAN_FILE: json.dumps(plan, indent=2) + "\n"},
            at,
        )
    print(f"plan for client {client} created: {len(plan['steps'])} steps, evidence in {run_dir}", file=out)
    for note in plan["notes"]:
        print(f"note: {note}", file=out)
    print(file=out)
    code, fields = plancmd.show(client, evidence_dir, out)
    return code, {"created": True, "run_dir": str(run_dir), **fields}


def cmd_start(args: argparse.Namespace) -> int:
    return finish(args, start, dates=date_overrides(args), replan=args.replan)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "start", cmd_start, dates=True)
    p.add_argument("--replan", action="store_true", help="record a new plan even if one exists")
