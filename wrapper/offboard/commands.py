"""Subcommands run, status, retry, verify, preflight: argument parsing, input checks, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from offboard import inventory, ledger, manifest, paths, psa, reach, runner, signing
from offboard.cli import EXIT_ERROR, EXIT_OK, EXIT_PENDING, EXIT_USAGE, UsageError
from offboard.evidence import EvidenceStore, active_runs
from offboard.inventory import ClientInventory, InventoryError
from offboard.lock import Holder, LockHeld, RunLock
from offboard.progress import stream_table, table
from offboard.records import utc_now

_EXITS = "Exit codes: 0 done, 1 error (see message), 2 usage, 75 devices still pending (retry later)."


def register(sub: argparse._SubParsersAction) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("client", metavar="CLIENT", help="client name: a folder under inventories/")
        parser.add_argument(
            "--evidence-dir",
            type=Path,
            metavar="DIR",
            help="evidence store root (default: $OFFBOARD_EVIDENCE_DIR or <project>/evidence)",
        )

    p = sub.add_parser(
        "run",
        help="run the offboarding phases against one client, keeping evidence",
        description="Run offboard.yml through ansible-runner against CLIENT's inventory only, "
        "with a preflight that sets offline hosts aside (they go on the pending list), live "
        "progress, a summary table, and sealed evidence in <evidence>/CLIENT/<run-id>/.",
        epilog=_EXITS,
    )
    common(p)
    p.add_argument("--tags", default="", help="comma-separated phases or role names, e.g. agents")
    p.add_argument(
        "--limit", default=None, help="narrow the run to some of the client's hosts (ansible pattern)"
    )
    p.add_argument("--check", action="store_true", help="rehearsal: report what would change, change nothing")
    p.add_argument("--preflight-timeout", type=float, default=reach.DEFAULT_TIMEOUT, metavar="SECONDS")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        help="the ledger: per host and component, done or pending",
        description="Fold every run's evidence records of CLIENT into the ledger (removed, "
        "absent, failed, unreachable, pending) and print it with the pending list. With --all: "
        "every client, per phase done/pending/failed device counts and the oldest pending item.",
        epilog=_EXITS,
    )
    p.add_argument("client", metavar="CLIENT", nargs="?", help="client name (omit with --all)")
    p.add_argument(
        "--evidence-dir",
        type=Path,
        metavar="DIR",
        help="evidence store root (default: $OFFBOARD_EVIDENCE_DIR or <project>/evidence)",
    )
    p.add_argument("--all", action="store_true", help="every client of the store and the inventories")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "retry",
        help="rerun only the hosts and phases still outstanding",
        description="Rerun only the hosts with outstanding items, and only the phases they "
        "miss. Meant for a scheduled CI job: exit 75 while devices are still pending.",
        epilog=_EXITS,
    )
    common(p)
    p.add_argument("--preflight-timeout", type=float, default=reach.DEFAULT_TIMEOUT, metavar="SECONDS")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser(
        "verify",
        help="re-hash the evidence and check the chain of manifests",
        description="Re-hash every file of every run of CLIENT against its manifest and walk "
        "the chain of manifests from HEAD; name every altered, added or missing file and "
        "every deleted or stray run. See docs/evidence.md to do the same with sha256sum.",
        epilog="Exit codes: 0 intact, 1 problems found, 2 usage.",
    )
    common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
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

    p = sub.add_parser(
        "preflight",
        help="classify hosts: reachable / unreachable / auth_failed",
        description="Probe every host of CLIENT in parallel with a short timeout (SSH, WinRM, "
        "docker_api) and classify it. Changes nothing, keeps no evidence.",
        epilog="Exit codes: 0 all reachable, 1 some auth failed, 2 usage, 75 some unreachable.",
    )
    common(p)
    p.add_argument("--limit", default=None, help="narrow to some of the client's hosts (ansible pattern)")
    p.add_argument("--timeout", type=float, default=reach.DEFAULT_TIMEOUT, metavar="SECONDS")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_preflight)


# --- shared checks ------------------------------------------------------------------------------
def _project() -> Path:
    try:
        return paths.project_root()
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def _store(args: argparse.Namespace) -> EvidenceStore:
    root = args.evidence_dir.resolve() if getattr(args, "evidence_dir", None) else paths.evidence_root()
    return EvidenceStore(root)


def _writable_store(args: argparse.Namespace, client: str) -> EvidenceStore | None:
    """The store, its client folder created owner-only; None (after saying why) when it is not writable."""
    store = _store(args)
    try:
        client_dir = store.client_dir(client, create=True)
        probe = client_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        print(
            f"offboard: evidence store {store.root} is not writable ({exc.strerror or exc}); fix its "
            "permissions or point --evidence-dir / OFFBOARD_EVIDENCE_DIR elsewhere. Nothing was run.",
            file=sys.stderr,
        )
        return None
    return store


def _load_inventory(client: str, project: Path, limit: str | None = None) -> ClientInventory:
    try:
        return inventory.load(client, project, limit)
    except InventoryError as exc:
        raise UsageError(str(exc)) from None


def _split_tags(text: str, project: Path) -> list[str]:
    tags = [t.strip() for t in text.split(",") if t.strip()]
    try:
        inventory.check_tags(tags, project)
    except InventoryError as exc:
        raise UsageError(str(exc)) from None
    return tags


def _lock(store: EvidenceStore, client: str, command: str) -> RunLock | None:
    holder = Holder(
        run_id="(starting)",
        operator=runner.evidence.operator(),
        pid=os.getpid(),
        hostname=socket.gethostname(),
        since=utc_now(),
        command=f"offboard {command}",
    )
    try:
        return RunLock(store.client_dir(client), client).acquire(holder)
    except LockHeld as exc:
        print(f"offboard: refused: {exc}", file=sys.stderr)
        return None


def _client_known(client: str, project: Path, store: EvidenceStore) -> None:
    try:
        inventory.check_client_name(client, project / "inventories")
    except InventoryError as exc:
        if not store.client_dir(client).is_dir():
            raise UsageError(str(exc)) from None


# --- run ----------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    os.umask(0o077)
    project = _project()
    tags = _split_tags(args.tags, project)
    inv = _load_inventory(args.client, project, args.limit)
    store = _writable_store(args, args.client)
    if store is None:
        return EXIT_ERROR
    lock = _lock(store, args.client, "run")
    if lock is None:
        return EXIT_ERROR
    with lock:
        request = runner.RunRequest(
            client=args.client,
            inventory=inv,
            tags=tags,
            user_limit=args.limit,
            check=args.check,
            command="run",
            phases=inventory.selected_phases(tags, project),
            preflight_timeout=args.preflight_timeout,
        )
        result = runner.execute(request, store, project)
    if result.metadata.status == runner.evidence.STATUS_REFUSED:
        print(f"run {result.run_id}: refused; nothing was run. Evidence in {result.run_dir}", file=sys.stderr)
        return EXIT_USAGE
    return _report_run(result, store, args.client)


def _report_run(result: runner.RunResult, store: EvidenceStore, client: str) -> int:
    rows = runner.host_summary(result)
    print()
    print(table(runner.summary_headers(result), rows))
    meta = result.metadata
    print(
        f"\nrun {meta.run_id}: {meta.status}{' (check mode)' if meta.check_mode else ''}; "
        f"evidence in {result.run_dir}"
    )
    if meta.reason:
        print(f"note: {meta.reason}")
    if not meta.complete:
        return EXIT_ERROR
    outcomes = {row[1] for row in rows}
    if meta.check_mode:
        if outcomes & {"failed", "auth_failed"} or (meta.runner_rc not in (None, 0, 4)):
            return EXIT_ERROR
        return EXIT_PENDING if outcomes & {"unreachable"} else EXIT_OK
    if meta.runner_rc not in (None, 0, 2, 4):
        return EXIT_ERROR  # the playbook itself errored (guard refusal, syntax): not a per-host outcome
    psa.sync_client(store, client)  # steps this run completed reach the PSA (docs/psa.md); never blocks
    folded = _ledger(store, client)
    return folded.exit_code(hosts=set(meta.hosts))


# --- status -------------------------------------------------------------------------------------
def _ledger(store: EvidenceStore, client: str) -> ledger.Ledger:
    return ledger.Ledger(client).fold(store.iter_client_records(client))


def cmd_status(args: argparse.Namespace) -> int:
    project = _project()
    store = _store(args)
    if getattr(args, "all", False) == bool(args.client):
        raise UsageError("give one CLIENT, or --all for every client (not both)")
    if args.all:
        from offboard import fleet

        return fleet.print_fleet(fleet.fleet(store, project / "inventories"), args.json)
    _client_known(args.client, project, store)
    folded = _ledger(store, args.client)
    runs = list(store.runs(args.client))
    active = active_runs(store, args.client)
    incomplete = [m.run_id for m in runs if not m.complete and m.run_id not in active]
    if args.json:
        _status_json(folded, incomplete, sorted(active), sys.stdout)
        return folded.exit_code()
    if not runs:
        print(f"no evidence yet for client {args.client} in {store.root}")
        return EXIT_OK
    last = runs[-1]
    print(
        f"client {args.client}: {len(runs)} run(s), last {last.run_id} ({last.command}, {last.status}"
        f"{', check mode' if last.check_mode else ''})"
    )
    for run_id in incomplete:
        print(f"  run {run_id} is INCOMPLETE (ended before ansible's final stats)")
    for run_id in sorted(active):
        print(f"  run {run_id} is in progress")
    print()

    def rows():
        keys = ("host", "phase", "component", "item", "state", "at", "run_id", "reason")
        return (tuple(r[k] for k in keys) for r in folded.rows())

    headers = ["HOST", "PHASE", "COMPONENT", "ITEM", "STATE", "SINCE", "RUN", "REASON"]
    stream_table(sys.stdout, headers, rows)
    print("\n" + ", ".join(f"{v} {k}" for k, v in folded.counts().items()))
    pending = folded.pending()
    if pending:
        print(
            f"\nPENDING ({len(pending)} host-phase(s); `offboard retry {args.client}` reruns exactly these):"
        )
        print(
            table(
                ["HOST", "PHASE", "STATE", "SINCE", "REASON"],
                [(p["host"], p["phase"], p["state"], p["since"], p["reason"]) for p in pending],
            )
        )
    else:
        print("\nnothing pending")
    return folded.exit_code()


def _status_json(folded: ledger.Ledger, incomplete: list[str], active: list[str], out) -> None:
    """The ledger as one JSON object, rows streamed (one compact line each) instead of built in memory."""
    head = {
        "client": folded.client,
        "runs": len(set(folded.runs)),
        "counts": folded.counts(),
        "exit_code": folded.exit_code(),
        "pending": folded.pending(),
        "incomplete_runs": incomplete,
        "active_runs": active,
    }
    text = json.dumps(head, indent=1)
    out.write(text[:-2] + ',\n "rows": [')
    for n, row in enumerate(folded.rows()):
        out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(row, separators=(",", ":")))
    out.write("\n ]\n}\n")


# --- retry --------------------------------------------------------------------------------------
def cmd_retry(args: argparse.Namespace) -> int:
    os.umask(0o077)
    project = _project()
    inv = _load_inventory(args.client, project)
    store = _writable_store(args, args.client)
    if store is None:
        return EXIT_ERROR
    lock = _lock(store, args.client, "retry")
    if lock is None:
        return EXIT_ERROR
    with lock:
        runner.recover(store, args.client, runner.collect_redactor(project, inv.path), sys.stdout)
        todo = _ledger(store, args.client).outstanding()
        known = set(inv.names)
        gone = sorted(set(todo) - known)
        if gone:
            print(f"note: not in the inventory any more, not retried: {', '.join(gone)}")
        groups: dict[tuple[str, ...], list[str]] = {}
        for host in sorted(set(todo) & known):
            groups.setdefault(tuple(sorted(todo[host])), []).append(host)
        if not groups:
            print(f"nothing outstanding for client {args.client}")
            return EXIT_OK
        implemented = inventory.playbook_phases(project)
        for phases, hosts in groups.items():
            tags = [p for p in phases if p in implemented]
            if not tags:
                print(f"note: phase(s) {', '.join(phases)} have no automation any more; skipping {hosts}")
                continue
            print(f"retry: {', '.join(hosts)} for phase(s) {', '.join(tags)}")
            subset = ClientInventory(inv.client, inv.path, [h for h in inv.hosts if h.name in hosts])
            request = runner.RunRequest(
                client=args.client,
                inventory=subset,
                tags=tags,
                user_limit=",".join(hosts),
                command="retry",
                phases=tags,
                preflight_timeout=args.preflight_timeout,
            )
            result = runner.execute(request, store, project)
            if result.metadata.status == runner.evidence.STATUS_REFUSED:
                return EXIT_USAGE
            print()
            print(table(runner.summary_headers(result), runner.host_summary(result)))
            print(f"run {result.run_id}: {result.metadata.status}; evidence in {result.run_dir}")
            if not result.metadata.complete:
                return EXIT_ERROR
    psa.sync_client(store, args.client)  # steps the retries completed reach the PSA; never blocks
    folded = _ledger(store, args.client)
    pending = folded.pending()
    if pending:
        print(f"\nstill outstanding: {', '.join(sorted({p['host'] for p in pending}))}")
    return folded.exit_code()


# --- verify -------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    project = _project()
    store = _store(args)
    _client_known(args.client, project, store)
    client_dir = store.client_dir(args.client)
    report = manifest.VerifyReport(args.client)
    if client_dir.is_dir():
        manifest.verify_chain(client_dir, store.run_ids(args.client), active_runs(store, args.client), report)
        stray = sorted(
            p.name
            for p in client_dir.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.name not in (manifest.HEAD, signing.ALLOWED_SIGNERS)
        )
        report.problems.extend(
            manifest.Problem(name, "added (unexpected file in the client folder)") for name in stray
        )
    sigs = _verify_signatures(args, store, client_dir, report)
    if args.json:
        json.dump(
            {
                "client": args.client,
                "ok": report.ok,
                "runs": report.runs_checked,
                "files": report.files_checked,
                "problems": [vars(p) for p in report.problems],
                "notes": report.notes,
                "signatures": [vars(r) for r in sigs.runs] if sigs else [],
            },
            sys.stdout,
            indent=1,
        )
        print()
    else:
        for note in report.notes:
            print(f"note: {note}")
        for problem in report.problems:
            print(f"FAIL {args.client}/{problem}")
        verdict = "intact" if report.ok else f"{len(report.problems)} problem(s)"
        print(
            f"verify {args.client}: {report.runs_checked} run(s), {report.files_checked} file(s): {verdict}"
        )
    return EXIT_OK if report.ok else EXIT_ERROR


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


# --- preflight ----------------------------------------------------------------------------------
def cmd_preflight(args: argparse.Namespace) -> int:
    project = _project()
    inv = _load_inventory(args.client, project, args.limit)
    results = reach.classify_all(inv.hosts, args.timeout)
    conns = {h.name: h.connection for h in inv.hosts}
    redact = runner.collect_redactor(project, inv.path)
    if args.json:
        json.dump(
            [
                {
                    "host": h,
                    "connection": conns[h],
                    "state": r.state,
                    "seconds": r.seconds,
                    "reason": redact(r.reason),
                }
                for h, r in results.items()
            ],
            sys.stdout,
            indent=1,
        )
        print()
    else:
        print(
            table(
                ["HOST", "CONNECTION", "STATE", "SECONDS", "REASON"],
                [(h, conns[h], r.state, f"{r.seconds:.2f}", redact(r.reason)) for h, r in results.items()],
            )
        )
    states = {r.state for r in results.values()}
    if reach.AUTH_FAILED in states:
        return EXIT_ERROR
    return EXIT_PENDING if reach.UNREACHABLE in states else EXIT_OK
