"""`offboard plan CLIENT`: every step with its owner, due date, status and evidence."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from offboard import jsonout
from offboard.checklist.options import add_command, console
from offboard.checklist.state import Context, StepState, load_context, step_states
from offboard.errors import EXIT_OK, EXIT_PENDING
from offboard.progress import table


def plan_fields(ctx: Context, states: list[StepState]) -> dict[str, Any]:
    """The plan as data (the --json fields of plan and start)."""
    return {
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
        "open": sum(not s.done for s in states),
    }


def print_plan(ctx: Context, states: list[StepState], out: TextIO) -> None:
    plan = ctx.hist.plan or {}
    d = plan.get("dates", {})
    print(
        f"client {ctx.client}: start {d.get('start')}, contract end {d.get('contract_end')}, "
        f"access revocation {d.get('access_revocation') or '-'}; today {ctx.today}"
        + (" (windows compressed)" if plan.get("compressed") else ""),
        file=out,
    )
    rows = [
        (s.id, s.title, f"{s.owner} ({s.role})", s.due.isoformat(), s.status(ctx.today), s.evidence)
        for s in states
    ]
    print(table(["STEP", "TITLE", "OWNER", "DUE", "STATUS", "EVIDENCE"], rows), file=out)
    print(f"\n{sum(s.done for s in states)}/{len(states)} steps done", file=out)


def show(
    client: str, evidence_dir: Path | None = None, out: TextIO = sys.stdout
) -> tuple[int, dict[str, Any]]:
    """Print the client's checklist; the exit code (0 all done, 75 steps open) and the plan's fields."""
    ctx, _ = load_context(client, evidence_dir)
    states = step_states(ctx)
    print_plan(ctx, states, out)
    return (EXIT_PENDING if any(not s.done for s in states) else EXIT_OK), plan_fields(ctx, states)


def cmd_plan(args: argparse.Namespace) -> int:
    if args.json:
        ctx, _ = load_context(args.client, args.evidence_dir)
        fields = plan_fields(ctx, step_states(ctx))
        return jsonout.emit("plan", EXIT_PENDING if fields["open"] else EXIT_OK, fields)
    code, _ = show(args.client, args.evidence_dir, console(args))
    return code


def register(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "plan", cmd_plan)
