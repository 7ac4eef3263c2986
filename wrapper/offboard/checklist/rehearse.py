"""`offboard rehearse CLIENT`: the plan unrecorded, every phase in check mode, notices, missing inputs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from offboard import ledger, notify
from offboard import plan as planlib
from offboard.checklist.client import ClientVars, load_client_vars, project
from offboard.checklist.history import History
from offboard.checklist.notices import notices, what
from offboard.checklist.options import add_command, date_overrides, finish
from offboard.checklist.start import build_plan, plan_gaps
from offboard.checklist.state import Context, step_states
from offboard.errors import EXIT_ERROR, EXIT_OK
from offboard.progress import table


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
    if not cvars.coverage_confirmed:
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


@dataclass(frozen=True)
class CheckRun:
    """What `offboard run` reads from its arguments, typed: every phase of one client in check mode."""

    client: str
    evidence_dir: Path | None
    preflight_timeout: float
    tags: str = ""
    limit: str | None = None
    check: bool = True
    json: bool = False


def check_run(client: str, evidence_dir: Path | None, preflight_timeout: float) -> int:
    """`offboard run CLIENT --check`: every phase rehearsed, kept as evidence, never counted as done."""
    from offboard import commands

    return commands.cmd_run(CheckRun(client, evidence_dir, preflight_timeout))  # type: ignore[arg-type]


def rehearse(
    client: str,
    *,
    dates: Mapping[str, str | None] | None = None,
    run_phases: bool = True,
    preflight_timeout: float = 5.0,
    evidence_dir: Path | None = None,
    out: TextIO = sys.stdout,
) -> tuple[int, dict[str, Any]]:
    """The rehearsal: 0 ready, 1 missing inputs or errors, 75 devices unreachable; the --json fields."""
    cvars = load_client_vars(client, project())
    process = planlib.load_process()
    at = planlib.now()
    ch = notify.channels(cvars.values.get("offboard_notify"))
    findings = missing_inputs(process, cvars, ch)
    print(f"== rehearsal of client {client} (nothing is changed, no plan is recorded)\n", file=out)
    plan = None
    try:
        plan = build_plan(process, cvars, cvars.dates(dates), at)
    except planlib.PlanError as exc:
        findings.insert(0, f"no plan possible: {exc}")
    would_send: list[dict[str, str]] = []
    if plan:
        print(
            f"-- plan ({len(plan['steps'])} steps{', windows compressed' if plan['compressed'] else ''})",
            file=out,
        )
        rows = [
            (s["id"], s["title"], f"{s['owner_name'] or '-'} ({s['owner_role']})", s["due"], s["completion"])
            for s in plan["steps"]
        ]
        print(table(["STEP", "TITLE", "OWNER", "DUE", "COMPLETES BY"], rows), file=out)
        ctx = Context(client, process, History(plan=plan, ledger=ledger.Ledger(client)), [], cvars, at.date())
        print("\n-- notifications (dry run)", file=out)
        for n in notices(ctx, step_states(ctx)):
            via = ", ".join(ch.names) or "no channel configured"
            print(f"would send {what(n)} to {n.to_name} <{n.to_email}> via {via}", file=out)
            would_send.append({"kind": n.kind, "step": n.step, "to_email": n.to_email})
    run_code = EXIT_OK
    if run_phases:
        print("\n-- every phase in check mode", file=out)
        out.flush()
        run_code = check_run(client, evidence_dir, preflight_timeout)
    print("\n-- missing inputs", file=out)
    for f in findings:
        print(f"MISSING {f}", file=out)
    if not findings:
        print("none", file=out)
    code = EXIT_ERROR if findings or run_code == EXIT_ERROR else run_code
    fields = {
        "client": client,
        "plan": plan,
        "notifications": would_send,
        "run_exit_code": run_code if run_phases else None,
        "missing": findings,
    }
    return code, fields


def cmd_rehearse(args: argparse.Namespace) -> int:
    return finish(
        args,
        rehearse,
        dates=date_overrides(args),
        run_phases=not args.skip_run,
        preflight_timeout=args.preflight_timeout,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "rehearse", cmd_rehearse, dates=True)
    p.add_argument("--skip-run", action="store_true", help="do not run the phases in check mode")
    p.add_argument("--preflight-timeout", type=float, default=5.0, metavar="SECONDS")
