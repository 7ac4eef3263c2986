"""`offboard verify`: re-hash one client's evidence, walk its chain of manifests, check signatures."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from offboard import cmdshared, jsonout, manifest, signing
from offboard.errors import EXIT_ERROR, EXIT_OK
from offboard.evidence import EvidenceStore, active_runs
from offboard.fsutil import is_link
from offboard.helptext import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "verify")
    cmdshared.add_client(p)
    p.add_argument(
        "--allowed-signers",
        type=Path,
        metavar="FILE",
        help="ssh-keygen allowed_signers to check manifest signatures against (default: "
        "$OFFBOARD_ALLOWED_SIGNERS, the inventory's offboard_allowed_signers, or <evidence>/CLIENT/"
        "allowed_signers); keep your own copy: one inside the store is only as safe as the store",
    )
    p.add_argument(
        "--require-signatures", action="store_true", help="fail every unsigned run, not only report it"
    )
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    project = cmdshared.project()
    store = cmdshared.store(args)
    cmdshared.client_known(args.client, project, store)
    report = manifest.VerifyReport(args.client)
    _verify_store(store, args.client, report)
    sigs = _verify_signatures(args, store, store.client_dir(args.client), report)
    code = EXIT_OK if report.ok else EXIT_ERROR
    if args.json:
        return jsonout.emit(
            "verify",
            code,
            {
                "client": args.client,
                "runs": report.runs_checked,
                "files": report.files_checked,
                "problems": [vars(p) for p in report.problems],
                "notes": report.notes,
                "signatures": [vars(r) for r in sigs.runs] if sigs else [],
            },
        )
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"FAIL {args.client}/{problem}")
    verdict = "intact" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"verify {args.client}: {report.runs_checked} run(s), {report.files_checked} file(s): {verdict}")
    return code


def _verify_signatures(
    args: argparse.Namespace, store: EvidenceStore, client_dir: Path, report: manifest.VerifyReport
) -> signing.SignatureReport | None:
    """The signature step of verify (signing.py): its problems and notes join the report."""
    if not client_dir.is_dir():
        return None
    cfg = signing.config_for(args.client, client_dir, getattr(args, "allowed_signers", None))
    sigs = signing.verify_runs(
        client_dir, store.run_ids(args.client), cfg, getattr(args, "require_signatures", False)
    )
    report.problems.extend(manifest.Problem(path, what) for path, what in sigs.problems)
    report.notes.extend(sigs.notes)
    good = sigs.count("signed")
    if good:
        who = sorted({r.principal for r in sigs.runs if r.state == "signed"})
        report.notes.append(f"{good} run(s) signed, signatures good ({', '.join(who)})")
    return sigs


def _verify_store(store: EvidenceStore, client: str, report: manifest.VerifyReport) -> None:
    """Every check `verify` makes, one after another (more, e.g. signatures, can be appended here)."""
    client_dir = store.client_dir(client)
    if is_link(client_dir):
        report.problems.append(manifest.Problem(".", f"{client_dir} is a symlink; the store follows none"))
        return
    run_ids = store.run_ids(client) if client_dir.is_dir() else []
    if not run_ids:
        report.problems.append(
            manifest.Problem(
                ".",
                f"no evidence for client {client} in {store.root}: nothing to verify. An empty or lost store "
                "is not evidence that anything was done",
            )
        )
        return
    manifest.verify_chain(client_dir, run_ids, active_runs(store, client), report)
    for entry in sorted(os.scandir(client_dir), key=lambda e: e.name):
        if entry.is_symlink():
            report.problems.append(manifest.Problem(entry.name, "a symlink (the store follows none)"))
        elif (
            entry.is_file(follow_symlinks=False)
            and not entry.name.startswith(".")
            and entry.name not in (manifest.HEAD, signing.ALLOWED_SIGNERS)
        ):
            report.problems.append(
                manifest.Problem(entry.name, "added (unexpected file in the client folder)")
            )
