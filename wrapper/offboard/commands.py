"""Subcommands run, status, retry, verify, preflight: argument parsing, input checks, exit codes."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
from pathlib import Path

from offboard import inventory, ledger, manifest, paths, psa, reach, runner, signing
from offboard.errors import EXIT_ERROR, EXIT_OK, EXIT_PENDING, EXIT_USAGE, UsageError
from offboard.evidence import EvidenceStore, active_runs
from offboard.fsutil import is_link
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
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
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


def _redactor(project: Path, inv: ClientInventory):
    """The run's redactor; None (after saying why) when the vault cannot be loaded or holds a short secret."""
    from offboard import scrub

    try:
        return runner.collect_redactor(project, inv.path)
    except (scrub.VaultSourceError, scrub.ShortSecretError) as exc:
        print(f"offboard: refused: {exc}. Nothing was run.", file=sys.stderr)
        return None


def _execute(request: runner.RunRequest, store: EvidenceStore, project: Path) -> runner.RunResult | None:
    """runner.execute, with evidence that cannot be written (disk full) said in one line, not a traceback."""
    try:
        return runner.execute(request, store, project)
    except runner.EvidenceWriteError as exc:
        print(f"offboard: {exc}", file=sys.stderr)
    except OSError as exc:
        full = "the disk is full (ENOSPC)" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        print(
            f"offboard: evidence cannot be written in {store.root}: {full}"
            f"{f' ({exc.filename})' if exc.filename else ''}. Free space (or fix the store) and run again.",
            file=sys.stderr,
        )
    return None


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
    except OSError as exc:  # a planted .run.lock symlink (O_NOFOLLOW), a full disk
        print(f"offboard: refused: cannot take the client's run lock: {exc}", file=sys.stderr)
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
    redact = _redactor(project, inv)
    if redact is None:
        return EXIT_USAGE
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
            redact=redact,
            tags=tags,
            user_limit=args.limit,
            check=args.check,
            command="run",
            phases=inventory.selected_phases(tags, project),
            preflight_timeout=args.preflight_timeout,
        )
        result = _execute(request, store, project)
    if result is None:
        return EXIT_ERROR
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
    unsealed = [
        r for r in store.run_ids(args.client) if not store.is_sealed(args.client, r) and r not in active
    ]
    incomplete = sorted({m.run_id for m in runs if not m.complete and m.run_id not in active} | set(unsealed))
    if args.json:
        _status_json(folded, incomplete, sorted(active), sys.stdout, unsealed)
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
        if run_id in unsealed:
            print(f"  run {run_id} is UNSEALED: not evidence, not counted (`offboard verify` fails on it)")
        else:
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


def _status_json(
    folded: ledger.Ledger, incomplete: list[str], active: list[str], out, unsealed: list[str] | None = None
) -> None:
    """The ledger as one JSON object, rows streamed (one compact line each) instead of built in memory."""
    head = {
        "client": folded.client,
        "runs": len(set(folded.runs)),
        "counts": folded.counts(),
        "exit_code": folded.exit_code(),
        "pending": folded.pending(),
        "incomplete_runs": incomplete,
        "unsealed_runs": unsealed or [],
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
    redact = _redactor(project, inv)
    if redact is None:
        return EXIT_USAGE
    store = _writable_store(args, args.client)
    if store is None:
        return EXIT_ERROR
    lock = _lock(store, args.client, "retry")
    if lock is None:
        return EXIT_ERROR
    with lock:
        runner.recover(store, args.client, None, sys.stdout)
        if not _sealed_runs(store, args.client):
            print(
                f"offboard: no sealed evidence for client {args.client} in {store.root}: nothing has run "
                "yet, or the store was lost (a CI cache evicted?). Retry has nothing to go on: restore the "
                f"store, or start with `offboard run {args.client}`.",
                file=sys.stderr,
            )
            return EXIT_ERROR
        known = set(inv.names)
        todo = outstanding(_ledger(store, args.client), known)
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
                redact=redact,
                tags=tags,
                user_limit=",".join(hosts),
                command="retry",
                phases=tags,
                preflight_timeout=args.preflight_timeout,
            )
            result = _execute(request, store, project)
            if result is None:
                return EXIT_ERROR
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
    never = {h: p for h, p in outstanding(folded, set(inv.names)).items() if h not in folded.outstanding()}
    pending += [{"host": host} for host in sorted(never)]
    if pending:
        print(f"\nstill outstanding: {', '.join(sorted({p['host'] for p in pending}))}")
    return folded.exit_code() or (EXIT_PENDING if pending else EXIT_OK)


def outstanding(folded: ledger.Ledger, inventory_hosts: set[str]) -> dict[str, set[str]]:
    """Host -> phases to retry: the ledger's outstanding host-phases, plus every inventory host that never
    reached a terminal state in a phase that has run (added to the inventory later, or left outside
    every run's limit): nothing says it is done, so it is not."""
    todo = {host: set(phases) for host, phases in folded.outstanding().items()}
    for phase in folded.phases_run():
        for host in inventory_hosts:
            if (host, phase) not in folded.host_phases:
                todo.setdefault(host, set()).add(phase)
    return todo


def _sealed_runs(store: EvidenceStore, client: str) -> list[str]:
    return [r for r in store.run_ids(client) if store.is_sealed(client, r)]


# --- verify -------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    project = _project()
    store = _store(args)
    _client_known(args.client, project, store)
    report = manifest.VerifyReport(args.client)
    _verify_store(store, args.client, report)
    sigs = _verify_signatures(args, store, store.client_dir(args.client), report)
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
