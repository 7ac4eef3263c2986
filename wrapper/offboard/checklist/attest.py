"""`offboard attest CLIENT STEP --by NAME`: a person attests a manual step done, with files as proof."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from offboard import manifest, psa
from offboard import plan as planlib
from offboard.checklist.client import find_person
from offboard.checklist.history import CHECKLIST_LOCK, write_run
from offboard.checklist.options import add_command, finish
from offboard.checklist.state import load_context, step_states
from offboard.errors import EXIT_ERROR, EXIT_OK, UsageError
from offboard.evidence import operator
from offboard.fsutil import locked

ATTACHMENTS = "attachments"


def _refused(message: str, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    print(f"offboard: refused: {message}", file=sys.stderr)
    return EXIT_ERROR, {**fields, "recorded": False, "refused": message}


def attest(
    client: str,
    step_id: str,
    by: str,
    *,
    note: str = "",
    attach: list[Path] | None = None,
    evidence_dir: Path | None = None,
    out: TextIO = sys.stdout,
) -> tuple[int, dict[str, Any]]:
    """Record the attestation (0), or refuse it when the evidence contradicts it (1); the --json fields."""
    ctx, evidence = load_context(client, evidence_dir)
    if step_id not in ctx.process.ids:
        raise UsageError(f"unknown step {step_id!r}: steps are {', '.join(ctx.process.ids)}")
    person = find_person(ctx.cvars, by)
    attachments = list(attach or [])
    for path in attachments:
        if not path.is_file():
            raise UsageError(f"attachment {path} is not a readable file")
    step = ctx.process.step(step_id)
    fields: dict[str, Any] = {"client": client, "step": step.id}
    if step.requires == "replacement_coverage_confirmed" and not ctx.cvars.coverage_confirmed:
        return _refused(
            f"step {step.id} ({step.title}) needs the client's replacement EDR/AV coverage confirmed first: "
            "set offboard_security.replacement_coverage_confirmed (and who/when) in the client inventory",
            fields,
        )
    state = next(s for s in step_states(ctx) if s.id == step_id)
    if state.contradiction:
        return _refused(
            f"the evidence contradicts step {step.id} ({step.title}): {state.contradiction}. Finish it "
            f"(e.g. `offboard retry {client}`) and the step completes from the evidence.",
            fields,
        )
    at = planlib.now()
    files: dict[str, Path | str] = {}
    listed = []
    for n, path in enumerate(attachments, 1):
        rel = f"{ATTACHMENTS}/{n:02d}-{re.sub(r'[^A-Za-z0-9._-]', '_', path.name) or 'file'}"
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
        "note": note,
        "attachments": listed,
        "recorded_at": planlib.iso_utc(at),
    }
    with locked(evidence.client_dir(client) / CHECKLIST_LOCK):
        run_dir = write_run(evidence, client, "attest", [record], files, at)
    print(
        f"step {step.id} ({step.title}) attested by {person.name} at {record['recorded_at']}"
        + (f" with {len(listed)} file(s)" if listed else "")
        + f"; evidence in {run_dir}",
        file=out,
    )
    psa.sync_client(evidence, client)  # the PSA learns of the completed step; never blocks
    return EXIT_OK, {**fields, "recorded": True, "run_dir": str(run_dir), "attestation": record}


def cmd_attest(args: argparse.Namespace) -> int:
    return finish(args, attest, args.step, args.by, note=args.note or "", attach=args.attach)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "attest", cmd_attest)
    p.add_argument("step", metavar="STEP", help="step id, e.g. 1.1 (see `offboard plan CLIENT`)")
    p.add_argument("--by", required=True, metavar="NAME", help="the person attesting (name or e-mail)")
    p.add_argument("--note", default="", help="what was done, where the proof is")
    p.add_argument("--attach", type=Path, action="append", metavar="FILE", help="file to keep (repeatable)")
