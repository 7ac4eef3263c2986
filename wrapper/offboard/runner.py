"""One offboarding run: preflight, ansible-runner over offboard.yml, scrubbed artifacts, sealed evidence.

The caller holds the client's run lock. The private data dir lives inside the client's evidence folder
(.work-<run-id>, owner-only, not evidence) so a killed run's partial artifacts are found, scrubbed and
kept by the next run that seals it as incomplete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from offboard import evidence, guard, reach, scrub
from offboard.evidence import EvidenceStore, RunMetadata
from offboard.fsutil import is_link
from offboard.inventory import ClientInventory
from offboard.progress import Progress
from offboard.records import Record, utc_now

WORK_PREFIX = ".work-"

# ansible-runner reads the playbook's output from a pty through pexpect, which pauses 0.1 ms after each
# read of at most 2,000 bytes: the wrapper wakes for nearly every write Ansible makes. Pausing 20 ms and
# then reading up to 64 KiB wakes it at most 50 times a second and hands it events in batches: the
# wrapper's CPU for a whole-lab run went from about 2.0 s to 1.5 s (docs/evidence.md, Performance).
# The pty holds tens of KiB; the lab's whole agents phase writes under 0.5 MB in a 65 s run, so Ansible does
# not wait on the pause. Progress lines come at most 20 ms later.
READ_PAUSE = 0.02
REFUSED_EXIT = 2  # the CLI's usage exit: bad input, nothing was run
READ_SIZE = 64 * 1024


@dataclass
class RunRequest:
    client: str
    inventory: ClientInventory
    redact: scrub.Redactor | None = None  # collected before the lock (commands); else here
    tags: list[str] = field(default_factory=list)
    user_limit: str | None = None
    check: bool = False
    command: str = "run"
    phases: list[str] = field(default_factory=list)  # phases this run executes (for offline hosts' records)
    preflight_timeout: float = reach.DEFAULT_TIMEOUT
    extra_cmdline: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    metadata: RunMetadata
    preflight: dict[str, reach.Reach]
    stats: dict[str, dict[str, int]] | None


class EvidenceWriteError(RuntimeError):
    """The run's evidence could not be written or sealed (the message says why, e.g. the disk is full)."""


def collect_redactor(project: Path, inventory: Path) -> scrub.Redactor:
    """Environment secrets, URL passwords and the vault's values, loaded the way Ansible loads them.

    Raises scrub.VaultSourceError (a vault password script that fails) or scrub.ShortSecretError: the
    run must not start with secrets it could not redact."""
    env = dict(os.environ)
    redact = scrub.env_redactor(env)
    redact.add(scrub.secrets_from_vault(env, inventory))
    return redact


def recover(store: EvidenceStore, client: str, redact: scrub.Redactor | None, out: TextIO) -> list[str]:
    """Seal dead runs as incomplete with what they had already scrubbed; drop their raw output.

    A killed run's private data dir holds ansible-runner's raw output. It is never scrubbed here: this
    process's secrets (environment, vault) are not the killed run's, so what its redactor would have
    masked cannot be known. Its events were scrubbed as they arrived (artifacts/job_events.jsonl) and
    are kept; the raw stdout is dropped, and the run's metadata says so."""
    del redact  # kept in the signature for callers; deliberately unused (see above)
    client_dir = store.client_dir(client)
    dropped: set[str] = set()
    for work in sorted(client_dir.glob(f"{WORK_PREFIX}*")):
        run_id = work.name[len(WORK_PREFIX) :]
        run_dir = client_dir / run_id
        meta = evidence.read_metadata(run_dir) if run_dir.is_dir() else None
        if meta and evidence.pid_alive(meta.pid, meta.hostname):
            continue
        if is_link(work):
            work.unlink()
        else:
            shutil.rmtree(work, ignore_errors=True)
        dropped.add(run_id)
    recovered = evidence.recover_dead_runs(
        store,
        client,
        note={
            r: "its raw ansible output was dropped unscrubbed (only events scrubbed while it ran are kept)"
            for r in dropped
        },
    )
    for run_id in recovered:
        print(f"run {run_id} had died before finishing: sealed as incomplete", file=out)
    return recovered


def execute(req: RunRequest, store: EvidenceStore, project: Path, out: TextIO = sys.stdout) -> RunResult:
    import ansible_runner

    client_dir = store.client_dir(req.client, create=True)
    redact = req.redact if req.redact is not None else collect_redactor(project, req.inventory.path)
    recover(store, req.client, redact, out)

    # The playbook's guard first, in this process: a run it would refuse never probes a host.
    refusal = guard.validate(
        req.inventory,
        project,
        req.user_limit,
        req.tags,
        req.check,
        warn=lambda message: print(f"warning: {message}", file=out),
    )
    if refusal is not None:
        return refuse(req, store, project, refusal, out)

    hosts = req.inventory.hosts
    print(f"preflight: probing {len(hosts)} host(s) of {req.client}", file=out, flush=True)
    checks = reach.classify_all(hosts, req.preflight_timeout)
    down = {h: r for h, r in checks.items() if not r.usable}
    usable = [h.name for h in hosts if h.name not in down]
    for name, result in sorted(down.items()):
        print(redact(f"  {name}: {result.state} ({result.reason})"), file=out)

    run = _open(
        req,
        store,
        project,
        hosts=[h.name for h in hosts],
        preflight={
            h: {"state": r.state, "reason": redact(r.reason), "at": r.at, "seconds": str(r.seconds)}
            for h, r in checks.items()
        },
    )
    run_dir, run_id, meta = run.dir, run.run_id, run.meta
    if not usable:
        _all_down(run, req, down)
        _finish(
            run,
            evidence.STATUS_COMPLETE,
            "every targeted host failed the preflight: ansible was not started",
            None,
        )
        return RunResult(run_id, run_dir, meta, checks, None)

    # The client name reads best in the guard's messages; a host list when some hosts are set aside.
    limit = req.client if not down and not req.user_limit else ",".join(usable)
    meta.limit = limit
    run.describe()

    work = client_dir / f"{WORK_PREFIX}{run_id}"
    work.mkdir(mode=0o700)
    progress = Progress([h.name for h in hosts], out=out, redact=redact)
    for name in down:
        progress.mark_down(name)
    envvars = {
        # The ansible-playbook next to this Python (the venv's), even when the venv is not activated.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
        # runner sets ANSIBLE_CALLBACK_PLUGINS (its own dir), which hides ansible.cfg's callback_plugins.
        "ANSIBLE_CALLBACK_PLUGINS": str(project / "plugins" / "callback"),
        # Runner reads Ansible's output from a pty, where Python's stdout is line-buffered: each event's
        # markers (several writes without a newline) leave in one write, and runner's callback flushes at
        # the end of each event. PYTHONUNBUFFERED (set in many CI and container images) would make every
        # small write its own system call (twice as many writes, each releasing and retaking the GIL in
        # Ansible's main thread; counted in docs/evidence.md, Performance).
        "PYTHONUNBUFFERED": "",
        # runner's callback drops a result bigger than this from its event (the record keeps the facts)
        "MAX_EVENT_RES": str(EVENT_RES_MAX),
        "OFFBOARD_RUN_ID": run_id,
        "OFFBOARD_WRAPPER_PID": str(os.getpid()),
        "OFFBOARD_CLIENT": req.client,
        "OFFBOARD_EVIDENCE_RUN_DIR": str(run_dir),
        "OFFBOARD_PREFLIGHT_DOWN": json.dumps(
            {h: {"reason": redact(r.reason), "at": r.at, "state": r.state} for h, r in down.items()},
            sort_keys=True,
        ),
    }
    command_file = work / "artifacts" / run_id / "command"

    def on_status(data: dict[str, Any], runner_config: Any = None) -> None:
        if data.get("status") == "running":
            scrub.scrub_command_in_place(command_file, redact)

    cmdline = [*(["--check"] if req.check else []), *req.extra_cmdline]
    events = scrub.EventLog(run_dir / evidence.ARTIFACTS, redact)

    refused: list[str] = []

    def on_event(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_failed" and str(data.get("task_action", "")).endswith(
            "offboard_preflight"
        ):
            refused.append(str((data.get("res") or {}).get("msg") or "the preflight failed"))
        event = slim_event(event)
        progress.handle(event)
        events.write(event)  # an OSError (disk full) is kept by the log and stops the run below
        return False  # kept by the EventLog: runner need not write its own file per event

    def cancelled() -> bool:
        return events.error is not None

    runner = None
    status_reason: str | None = None
    run_error: OSError | None = None
    try:
        with batched_reads():
            runner = ansible_runner.run(
                private_data_dir=str(work),
                ident=run_id,
                project_dir=str(project),
                playbook=str(project / "offboard.yml"),
                inventory=str(req.inventory.path),
                limit=limit,
                tags=",".join(req.tags) or None,
                cmdline=" ".join(cmdline) or None,
                envvars=envvars,
                suppress_env_files=True,
                quiet=True,
                rotate_artifacts=0,
                event_handler=on_event,
                status_handler=on_status,
                cancel_callback=cancelled,
            )
    except KeyboardInterrupt:
        status_reason = "interrupted (Ctrl-C) before ansible's final stats"
        raise
    except OSError as exc:  # runner could not write its own files (disk full)
        run_error = exc
    finally:
        write_error: OSError | None = run_error
        try:
            events.close()
        except OSError as exc:
            write_error = exc
        write_error = write_error or events.error
        if write_error is None and progress.stats is None and _disk_full(work):
            # Ansible stopped because its own evidence writes failed (records, events for the wrapper).
            write_error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        artifacts = work / "artifacts" / run_id
        if artifacts.is_dir() and write_error is None:
            try:
                scrub.copy_artifacts(artifacts, run_dir / evidence.ARTIFACTS, redact)
            except OSError as exc:
                write_error = exc
        # The private data dir holds runner's raw output: it never outlives the run, whatever failed.
        shutil.rmtree(work, ignore_errors=True)
        meta.runner_status = getattr(runner, "status", None) if runner else "interrupted"
        meta.runner_rc = getattr(runner, "rc", None) if runner else None
        meta.stats = progress.stats or {}
        complete = progress.stats is not None and write_error is None
        if write_error is not None:
            status_reason = f"evidence could not be written: {_why(write_error)}; the run was stopped"
            _drop_partial_copy(run_dir)
        elif not complete and status_reason is None:
            status_reason = f"ansible-playbook ended without final stats (runner status {meta.runner_status})"
        status = evidence.STATUS_COMPLETE if complete else evidence.STATUS_INCOMPLETE
        if refused:  # the playbook's own preflight refused: no phase play ran
            status, status_reason = evidence.STATUS_REFUSED, redact(f"refused by the preflight: {refused[0]}")
        _finish(run, status, status_reason, meta.runner_rc)
    if write_error is not None:
        raise EvidenceWriteError(
            f"run {run_id}: evidence could not be written: {_why(write_error)}. The run was stopped and "
            "sealed as incomplete with what was already scrubbed; free space and run it again"
        )
    return RunResult(run_id, run_dir, meta, checks, progress.stats)


# Event data (issue 18): the records come from the evidence callback under every launcher, so an event
# only feeds the progress line and the final stats. Its payload (module results, task args, paths) is
# dropped before it is scrubbed and written, except where it is read: a failure's result (its reason is
# shown, a preflight refusal named) and the stats. Runner's own MAX_EVENT_RES bounds what crosses the pipe.
EVENT_RES_MAX = 64 * 1024
_EVENT_KEYS = ("host", "play", "task", "task_action", "role", "ignore_errors")
_FAILURES = ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed", "runner_on_async_failed")


def slim_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event with only the event data the wrapper reads."""
    data = event.get("event_data")
    kind = event.get("event")
    if not data or kind == "playbook_on_stats":
        return event
    kept = {k: data[k] for k in _EVENT_KEYS if k in data}
    if kind in _FAILURES and "res" in data:
        kept["res"] = data["res"]
    return {**event, "event_data": kept}


def _disk_full(path: Path) -> bool:
    """Less than 64 KiB free for us where the run writes: nothing more can be written there."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full (ENOSPC)"
    return exc.strerror or str(exc)


def _drop_partial_copy(run_dir: Path) -> None:
    """After a write failure, keep the scrubbed events but not a half-copied stdout/stderr."""
    for name in ("stdout", "stderr"):
        with contextlib.suppress(OSError):
            (run_dir / evidence.ARTIFACTS / name).unlink()


def _open(req: RunRequest, store: EvidenceStore, project: Path, **fields: Any) -> evidence.Run:
    """The wrapper's run folder, described with the request (tags, check mode) and `fields`."""
    return evidence.Run.open(
        store,
        req.client,
        source="wrapper",
        command=req.command,
        project=project,
        tags=list(req.tags),
        check_mode=req.check,
        **fields,
    )


def refuse(req: RunRequest, store: EvidenceStore, project: Path, reason: str, out: TextIO) -> RunResult:
    """Seal a run the guard refused (status `refused`, the reason, no host contacted) into the chain."""
    print(f"REFUSED before any host: {reason}", file=out, flush=True)
    run = _open(req, store, project, limit=req.user_limit, hosts=[h.name for h in req.inventory.hosts])
    # A whole record of a refusal (complete: nothing of it is pending).
    run.finish(evidence.STATUS_REFUSED, f"refused by the preflight: {reason}", REFUSED_EXIT).seal()
    return RunResult(run.run_id, run.dir, run.meta, {}, None)


@contextlib.contextmanager
def batched_reads() -> Iterator[None]:
    """While inside, ansible-runner spawns the playbook with READ_PAUSE and READ_SIZE (see above).

    Only runner's own reference to pexpect is swapped, and only for the duration: pexpect itself and
    anything else using it are untouched. A runner that no longer spawns through pexpect.spawn is
    left alone (tests/unit/test_wrapper_pipeline.py fails then, so the tuning is not lost unnoticed).
    """
    import ansible_runner.runner as runner_module

    original = getattr(runner_module, "pexpect", None)
    if not isinstance(original, types.ModuleType) or not hasattr(original, "spawn"):
        yield
        return

    class BatchedSpawn(original.spawn):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("maxread", READ_SIZE)
            super().__init__(*args, **kwargs)
            self.delayafterread = READ_PAUSE

    proxy = types.SimpleNamespace(**vars(original))
    proxy.spawn = BatchedSpawn
    runner_module.pexpect = proxy
    try:
        yield
    finally:
        runner_module.pexpect = original


def _all_down(run: evidence.Run, req: RunRequest, down: dict[str, reach.Reach]) -> None:
    """No host to run on: the offline hosts' records are written here instead of by the callback."""
    with run.records() as writer:
        for phase in req.phases:
            for host, result in sorted(down.items()):
                writer.write(
                    Record(
                        kind="unreachable",
                        run_id=run.run_id,
                        client=req.client,
                        phase=phase,
                        host=host,
                        recorded_at=result.at or utc_now(),
                        check_mode=req.check,
                        reason=f"preflight: {result.reason}",
                        task="preflight",
                    )
                )


def _finish(run: evidence.Run, status: str, reason: str | None, rc: int | None) -> None:
    """Write the final metadata and seal; each step protected.

    On a write failure (disk full) the run is marked incomplete with the reason and sealed again after
    dropping its bulk (scrubbed stdout, events) to make room; if even that fails, EvidenceWriteError
    says so (the run stays unsealed: `verify` reports it, the next run seals it as incomplete)."""
    run.finish(status, reason, rc)
    try:
        run.seal()
        return
    except OSError as exc:
        first = exc
    run.meta.status, run.meta.complete = evidence.STATUS_INCOMPLETE, False
    run.meta.reason = f"evidence could not be sealed: {_why(first)}" + (f"; {reason}" if reason else "")
    for attempt in ("as is", "without its raw output"):
        if attempt != "as is":
            _drop_partial_copy(run.dir)
            with contextlib.suppress(OSError):
                (run.dir / evidence.ARTIFACTS / scrub.EVENTS_FILE).unlink()
            run.meta.reason += "; its scrubbed output was dropped to make room"
        try:
            run.seal()
            return
        except OSError:
            continue
    raise EvidenceWriteError(
        f"run {run.run_id}: evidence could not be sealed: {_why(first)}. The run is left unsealed "
        "(`offboard verify` reports it); free space, then `offboard run` or `offboard retry` seals it as "
        "incomplete"
    )
