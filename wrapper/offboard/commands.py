"""Subcommands run, retry and preflight (status and verify live in their own modules): argument parsing,
input checks, exit codes, and the --json documents of docs/cli-json.md."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

from offboard import cmdshared, inventory, jsonout, ledger, psa, reach, run_summary, runner, status, verify
from offboard.errors import EXIT_ERROR, EXIT_OK, EXIT_PENDING, EXIT_USAGE, UsageError
from offboard.evidence import EvidenceStore
from offboard.helptext import add_command
from offboard.inventory import ClientInventory, InventoryError
from offboard.lock import Holder, LockHeld, RunLock
from offboard.progress import write_table
from offboard.records import utc_now


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "run")
    cmdshared.add_client(p)
    p.add_argument("--tags", default="", help="comma-separated phases or role names, e.g. agents")
    p.add_argument(
        "--limit", default=None, help="narrow the run to some of the client's hosts (ansible pattern)"
    )
    p.add_argument("--check", action="store_true", help="rehearsal: report what would change, change nothing")
    p.add_argument("--preflight-timeout", type=float, default=reach.DEFAULT_TIMEOUT, metavar="SECONDS")
    p.set_defaults(func=cmd_run)

    status.register(sub)

    p = add_command(sub, "retry")
    cmdshared.add_client(p)
    p.add_argument("--preflight-timeout", type=float, default=reach.DEFAULT_TIMEOUT, metavar="SECONDS")
    p.set_defaults(func=cmd_retry)

    verify.register(sub)

    p = add_command(sub, "preflight")
    cmdshared.add_client(p)
    p.add_argument("--limit", default=None, help="narrow to some of the client's hosts (ansible pattern)")
    p.add_argument("--timeout", type=float, default=reach.DEFAULT_TIMEOUT, metavar="SECONDS")
    p.set_defaults(func=cmd_preflight)


# --- shared by run and retry --------------------------------------------------------------------
def _writable_store(args: argparse.Namespace, client: str) -> EvidenceStore | None:
    """The store, its client folder created owner-only; None (after saying why) when it is not writable."""
    store = cmdshared.store(args)
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


def _execute(
    request: runner.RunRequest, store: EvidenceStore, project: Path, out: TextIO
) -> runner.RunResult | None:
    """runner.execute, with evidence that cannot be written (disk full) said in one line, not a traceback."""
    try:
        return runner.execute(request, store, project, out)
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


class _Session:
    """What run and retry set up before ansible starts: inventory, redactor, writable store, run lock."""

    def __init__(self, args: argparse.Namespace, command: str, limit: str | None = None) -> None:
        os.umask(0o077)
        self.args, self.command = args, command
        self.json = bool(getattr(args, "json", False))
        self.out = cmdshared.console(args)
        self.project = cmdshared.project()
        self.tags = _split_tags(getattr(args, "tags", ""), self.project)
        self.inv = _load_inventory(args.client, self.project, limit)
        self.runs: list[runner.RunResult] = []
        self.redact, self.store, self.lock = None, None, None

    def open(self) -> int:
        """EXIT_OK when everything is ready (the lock taken), else the exit code (the reason said)."""
        self.redact = _redactor(self.project, self.inv)
        if self.redact is None:
            return EXIT_USAGE
        self.store = _writable_store(self.args, self.args.client)
        if self.store is None:
            return EXIT_ERROR
        self.lock = _lock(self.store, self.args.client, self.command)
        return EXIT_OK if self.lock is not None else EXIT_ERROR

    def launch(
        self, inv: ClientInventory, tags: list[str], user_limit: str | None, check: bool
    ) -> int | None:
        """One ansible run with its summary table; None when it completed, else the exit code to stop on."""
        assert self.store is not None
        request = runner.RunRequest(
            client=self.args.client,
            inventory=inv,
            redact=self.redact,
            tags=tags,
            user_limit=user_limit,
            check=check,
            command=self.command,
            phases=inventory.selected_phases(tags, self.project) if self.command == "run" else tags,
            preflight_timeout=self.args.preflight_timeout,
        )
        result = _execute(request, self.store, self.project, self.out)
        if result is None:
            return EXIT_ERROR
        self.runs.append(result)
        meta = result.metadata
        if meta.status == runner.evidence.STATUS_REFUSED:
            refused = f"run {result.run_id}: refused; nothing was run. Evidence in {result.run_dir}"
            print(refused, file=sys.stderr)
            return EXIT_USAGE
        print(file=self.out)
        write_table(self.out, run_summary.summary_headers(result), run_summary.host_summary(result))
        print(
            f"\nrun {meta.run_id}: {meta.status}{' (check mode)' if meta.check_mode else ''}; "
            f"evidence in {result.run_dir}",
            file=self.out,
        )
        if meta.reason:
            print(f"note: {meta.reason}", file=self.out)
        return None if meta.complete else EXIT_ERROR

    def finish(self, code: int, **fields: Any) -> int:
        """The exit code, with the command's JSON document on stdout when --json was given."""
        if not self.json:
            return code
        return jsonout.emit(
            self.command,
            code,
            {"client": self.args.client, **fields, "runs": [_run_doc(r) for r in self.runs]},
        )


def _run_doc(result: runner.RunResult) -> dict[str, Any]:
    """One run in a --json document: its id, folder, status and its hosts done / pending / failed."""
    rows = run_summary.host_summary(result)
    hosts: dict[str, list[str]] = {"done": [], "pending": [], "failed": []}
    for host, outcome, *_ in rows:
        key = "done" if outcome == "ok" else "failed" if outcome in ("failed", "auth_failed") else "pending"
        hosts[key].append(host)
    meta = result.metadata
    return {
        "run_id": result.run_id,
        "run_dir": str(result.run_dir),
        "status": meta.status,
        "check_mode": meta.check_mode,
        "reason": meta.reason or "",
        "hosts": hosts,
        "summary": [
            dict(zip(("host", "outcome", "removed", "absent", "failed", "note"), r, strict=True))
            for r in rows
        ],
    }


def _ledger_hosts(folded: ledger.Ledger, todo: dict[str, set[str]], hosts: list[str]) -> dict[str, list[str]]:
    """The client's hosts done / pending / failed by the ledger after the runs (what is still owed)."""
    failed = {p["host"] for p in folded.pending() if p["state"] == ledger.FAILED}
    pending = set(todo) - failed
    return {
        "done": sorted(set(hosts) - failed - pending),
        "pending": sorted(pending),
        "failed": sorted(failed),
    }


# --- run ----------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    session = _Session(args, "run", args.limit)
    code = session.open()
    if code != EXIT_OK:
        return session.finish(code)
    assert session.lock is not None and session.store is not None
    with session.lock:
        stop = session.launch(session.inv, session.tags, args.limit, args.check)
    if stop is not None:
        return session.finish(stop)
    return session.finish(_run_exit(session.runs[-1], session.store, args.client))


def _run_exit(result: runner.RunResult, store: EvidenceStore, client: str) -> int:
    meta = result.metadata
    outcomes = {row[1] for row in run_summary.host_summary(result)}
    if meta.check_mode:
        if outcomes & {"failed", "auth_failed"} or (meta.runner_rc not in (None, 0, 4)):
            return EXIT_ERROR
        return EXIT_PENDING if outcomes & {"unreachable"} else EXIT_OK
    if meta.runner_rc not in (None, 0, 2, 4):
        return EXIT_ERROR  # the playbook itself errored (guard refusal, syntax): not a per-host outcome
    psa.sync_client(store, client)  # steps this run completed reach the PSA (docs/psa.md); never blocks
    return cmdshared.fold(store, client).exit_code(hosts=set(meta.hosts))


# --- retry --------------------------------------------------------------------------------------
def cmd_retry(args: argparse.Namespace) -> int:
    session = _Session(args, "retry")
    code = session.open()
    if code != EXIT_OK:
        return session.finish(code)
    store, inv, out = session.store, session.inv, session.out
    assert session.lock is not None and store is not None
    known = set(inv.names)
    with session.lock:
        runner.recover(store, args.client, None, out)
        if not _sealed_runs(store, args.client):
            print(
                f"offboard: no sealed evidence for client {args.client} in {store.root}: nothing has run "
                "yet, or the store was lost (a CI cache evicted?). Retry has nothing to go on: restore the "
                f"store, or start with `offboard run {args.client}`.",
                file=sys.stderr,
            )
            return session.finish(EXIT_ERROR)
        todo = outstanding(cmdshared.fold(store, args.client), known)
        gone = sorted(set(todo) - known)
        if gone:
            print(f"note: not in the inventory any more, not retried: {', '.join(gone)}", file=out)
        groups: dict[tuple[str, ...], list[str]] = {}
        for host in sorted(set(todo) & known):
            groups.setdefault(tuple(sorted(todo[host])), []).append(host)
        if not groups:
            print(f"nothing outstanding for client {args.client}", file=out)
            return session.finish(
                EXIT_OK,
                not_in_inventory=gone,
                hosts=_ledger_hosts(cmdshared.fold(store, args.client), {}, inv.names),
            )
        implemented = inventory.playbook_phases(session.project)
        for phases, hosts in groups.items():
            tags = [p for p in phases if p in implemented]
            if not tags:
                print(
                    f"note: phase(s) {', '.join(phases)} have no automation any more; skipping {hosts}",
                    file=out,
                )
                continue
            print(f"retry: {', '.join(hosts)} for phase(s) {', '.join(tags)}", file=out)
            subset = ClientInventory(inv.client, inv.path, [h for h in inv.hosts if h.name in hosts])
            stop = session.launch(subset, tags, ",".join(hosts), False)
            if stop is not None:
                return session.finish(stop, not_in_inventory=gone)
    psa.sync_client(store, args.client)  # steps the retries completed reach the PSA; never blocks
    folded = cmdshared.fold(store, args.client)
    left = outstanding(folded, known)
    pending = folded.pending()
    never = {h: p for h, p in left.items() if h not in folded.outstanding()}
    pending += [{"host": host} for host in sorted(never)]
    if pending:
        print(f"\nstill outstanding: {', '.join(sorted({p['host'] for p in pending}))}", file=out)
    code = folded.exit_code() or (EXIT_PENDING if pending else EXIT_OK)
    return session.finish(code, not_in_inventory=gone, hosts=_ledger_hosts(folded, left, inv.names))


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


# --- preflight ----------------------------------------------------------------------------------
def cmd_preflight(args: argparse.Namespace) -> int:
    project = cmdshared.project()
    inv = _load_inventory(args.client, project, args.limit)
    results = reach.classify_all(inv.hosts, args.timeout)
    conns = {h.name: h.connection for h in inv.hosts}
    redact = runner.collect_redactor(project, inv.path)
    states = {r.state for r in results.values()}
    code = (
        EXIT_ERROR
        if reach.AUTH_FAILED in states
        else EXIT_PENDING
        if reach.UNREACHABLE in states
        else EXIT_OK
    )
    if args.json:
        hosts = [
            {
                "host": h,
                "connection": conns[h],
                "state": r.state,
                "seconds": r.seconds,
                "reason": redact(r.reason),
            }
            for h, r in results.items()
        ]
        return jsonout.emit("preflight", code, {"client": args.client, "hosts": hosts})
    write_table(
        sys.stdout,
        ["HOST", "CONNECTION", "STATE", "SECONDS", "REASON"],
        [(h, conns[h], r.state, f"{r.seconds:.2f}", redact(r.reason)) for h, r in results.items()],
    )
    return code
