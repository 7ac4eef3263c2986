"""`offboard remind CLIENT|--all`: reminders, escalations and the kick-off notice, each sent once a day."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from offboard import notify, psa
from offboard import plan as planlib
from offboard.checklist.client import load_client_vars, project
from offboard.checklist.history import CHECKLIST_LOCK, read_history, store, write_run
from offboard.checklist.notices import already_sent, notices, what
from offboard.checklist.options import add_command, finish
from offboard.checklist.state import load_context, step_states
from offboard.errors import EXIT_ERROR, EXIT_OK, EXIT_PENDING, UsageError
from offboard.fsutil import locked


def remind_client(
    client: str,
    ch: notify.Channels,
    *,
    evidence_dir: Path | None = None,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> tuple[int, dict[str, Any]]:
    """Send (or with dry_run, list) today's messages for one client; the exit code and the --json fields."""
    ctx, evidence = load_context(client, evidence_dir)
    if not dry_run:  # the daily run also tells the PSA of steps completed from run evidence
        psa.sync_client(evidence, client)
    states = step_states(ctx)
    day = ctx.today.isoformat()
    sent = already_sent(ctx)
    todo: list[planlib.Notice] = []
    for n in notices(ctx, states):
        key = (n.step, n.to_email.lower(), day)
        if key in sent:
            continue
        sent.add(key)  # one message per step, person and day, also within this run
        todo.append(n)
    overdue = [s for s in states if not s.done and s.effective_due < ctx.today]
    pending = EXIT_PENDING if overdue else EXIT_OK
    fields: dict[str, Any] = {"client": client, "overdue": [s.id for s in overdue], "messages": []}
    if not todo:
        print(f"{client}: nothing to send today ({len(overdue)} step(s) overdue)", file=out)
        return pending, fields
    if dry_run:
        for n in todo:
            print(
                f"{client}: would send {what(n)} to {n.to_name} <{n.to_email}> via "
                f"{', '.join(ch.names) or 'no channel configured'}: {n.subject}",
                file=out,
            )
            fields["messages"].append({"kind": n.kind, "step": n.step, "to_email": n.to_email, "sent": False})
        return pending, fields
    records = []
    failed = False
    for n in todo:
        results = notify.deliver(ch, notify.Outgoing(n.to_name, n.to_email, n.subject, n.body))
        ok = any(v.startswith("ok") for v in results.values())
        failed |= not ok or any(v.startswith("error") for v in results.values())
        print(
            f"{client}: {what(n)} to {n.to_name} <{n.to_email}>: "
            + ", ".join(f"{k} {v}" for k, v in results.items()),
            file=out,
        )
        fields["messages"].append(
            {"kind": n.kind, "step": n.step, "to_email": n.to_email, "channels": results}
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
    with locked(evidence.client_dir(client) / CHECKLIST_LOCK):
        fields["run_dir"] = str(write_run(evidence, client, "remind", records))
    return (EXIT_ERROR if failed else pending), fields


def remind(
    client: str | None,
    *,
    every: bool = False,
    evidence_dir: Path | None = None,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> tuple[int, dict[str, Any]]:
    """remind_client for one client or every client with a plan; the worst exit code and the fields."""
    if bool(client) == every:
        raise UsageError("name one CLIENT or use --all")
    evidence = store(evidence_dir)
    if every:
        found = sorted(evidence.root.iterdir()) if evidence.root.is_dir() else []
        clients = [p.name for p in found if p.is_dir() and read_history(evidence, p.name).plan]
    else:
        clients = [str(client)]
    codes, results = [], []
    for name in clients:
        cvars = load_client_vars(name, project())
        cch = notify.channels(cvars.values.get("offboard_notify"))
        if not cch.names and not dry_run:
            raise UsageError(
                "no notification channel configured: set OFFBOARD_SMTP_HOST (e-mail) and/or "
                "OFFBOARD_WEBHOOK_URL, or offboard_notify in the client inventory"
            )
        code, fields = remind_client(name, cch, evidence_dir=evidence_dir, dry_run=dry_run, out=out)
        codes.append(code)
        results.append({**fields, "exit_code": code})
    if not clients:
        print("no client has a plan yet", file=out)
    worst = max(codes, key=lambda c: {EXIT_ERROR: 2, EXIT_PENDING: 1}.get(c, 0), default=EXIT_OK)
    return worst, {"dry_run": dry_run, "clients": results}


def cmd_remind(args: argparse.Namespace) -> int:
    return finish(args, remind, every=args.all, dry_run=args.dry_run)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "remind", cmd_remind, client="CLIENT?")
    p.add_argument("--all", action="store_true", help="every client with a plan in the evidence store")
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; send and record nothing")
