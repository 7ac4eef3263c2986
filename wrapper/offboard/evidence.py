"""The evidence store: evidence/<client>/<run-id>/ with records, metadata, scrubbed artifacts, manifest.

Layout (docs/evidence.md):
  <root>/<client>/HEAD                      newest manifest (sha256sum line)
  <root>/<client>/.run.lock                 one run per client (not evidence)
  <root>/<client>/<run-id>/metadata.json    who, when, what, versions, exit status, complete or not
  <root>/<client>/<run-id>/records.jsonl    normalized evidence records (offboard.records)
  <root>/<client>/<run-id>/artifacts/       ansible-runner artifacts, scrubbed of secrets
  <root>/<client>/<run-id>/PREVIOUS.sha256  hash of the previous run's manifest (chain)
  <root>/<client>/<run-id>/MANIFEST.sha256  sha256 of every other file of the run
Everything is owner-only: folders 0700, files 0600.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from offboard import manifest
from offboard.fsutil import (
    atomic_write_text,
    is_real_dir,
    is_regular_file,
    open_nofollow,
    open_private,
    private_dir,
)
from offboard.records import ChecklistRecord, Record, RecordError, iter_raw, schema_problem, utc_now

METADATA = "metadata.json"
RECORDS = "records.jsonl"
ARTIFACTS = "artifacts"

STATUS_RUNNING = "running"
STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
# The guard refused the run before any host was contacted: nothing ran; the reason says what to fix.
STATUS_REFUSED = "refused"


def new_run_id(now: dt.datetime | None = None) -> str:
    """UTC timestamp (ms) plus a short random suffix: sorts by start time, unique across machines."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def operator() -> str:
    """Who runs this: $OFFBOARD_OPERATOR (CI jobs set it to the pipeline user), else user@host."""
    env = os.environ.get("OFFBOARD_OPERATOR")
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def tool_versions() -> dict[str, str | None]:
    from importlib import metadata as md

    versions: dict[str, str | None] = {}
    for dist, key in (
        ("ansible-core", "ansible_core"),
        ("ansible-runner", "ansible_runner"),
        ("offboard", "offboard"),
        ("ansible", "ansible"),
    ):
        try:
            versions[key] = md.version(dist)
        except md.PackageNotFoundError:
            versions[key] = None
    versions["python"] = ".".join(map(str, sys.version_info[:3]))
    return versions


def repo_commit(project: Path) -> dict[str, Any]:
    """The project's git commit and whether the work tree differs from it (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(project), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--verify", "-q", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


@dataclass
class RunMetadata:
    run_id: str
    client: str
    source: str  # wrapper | ansible-playbook
    command: str  # run | retry | ansible-playbook
    operator: str
    started_at: str
    status: str = STATUS_RUNNING
    complete: bool = False
    ended_at: str | None = None
    exit_code: int | None = None
    runner_status: str | None = None
    runner_rc: int | None = None
    reason: str | None = None
    tags: list[str] = field(default_factory=list)
    skip_tags: list[str] = field(default_factory=list)
    limit: str | None = None
    check_mode: bool = False
    hosts: list[str] = field(default_factory=list)
    preflight: dict[str, dict[str, str]] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    repository: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    hostname: str = ""
    schema: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunMetadata:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class EvidenceStore:
    """The evidence root; one folder per client, one folder per run."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def client_dir(self, client: str, create: bool = False) -> Path:
        path = self.root / client
        if create:
            private_dir(self.root, tighten=False)  # an existing root keeps its mode (it may be shared)
            private_dir(path)
        return path

    def run_ids(self, client: str) -> list[str]:
        """Run folders of the client (real folders only: a symlink is not followed, not a run)."""
        path = self.client_dir(client)
        if not is_real_dir(path):
            return []
        return sorted(
            e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        )

    def is_sealed(self, client: str, run_id: str) -> bool:
        return is_regular_file(self.client_dir(client) / run_id / manifest.MANIFEST)

    def new_run(self, client: str, run_id: str | None = None) -> Path:
        run_dir = self.client_dir(client, create=True) / (run_id or new_run_id())
        run_dir.mkdir(mode=0o700)
        return run_dir

    def iter_client_records(self, client: str) -> Iterator[dict[str, Any]]:
        """Records of the client's sealed runs as dicts, runs in start order, records in file order.

        Unsealed runs are not evidence (a run in progress, a dead one not yet recovered, or a folder
        someone made by hand): the ledger never counts them. Bad lines are reported and skipped."""
        client_dir = self.client_dir(client)
        for run_id in self.run_ids(client):
            if self.is_sealed(client, run_id):
                yield from iter_raw(client_dir / run_id / RECORDS)

    def runs(self, client: str) -> Iterator[RunMetadata]:
        client_dir = self.client_dir(client)
        for run_id in self.run_ids(client):
            meta = read_metadata(client_dir / run_id)
            if meta is not None:
                yield meta


def write_metadata(run_dir: Path, meta: RunMetadata) -> None:
    atomic_write_text(run_dir / METADATA, json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n")


def read_metadata(run_dir: Path) -> RunMetadata | None:
    try:
        with open_nofollow(run_dir / METADATA) as handle:
            data = json.loads(handle.read())
        meta = RunMetadata.from_dict(data)
    except (OSError, ValueError, TypeError):
        return None
    if (
        not isinstance(meta.run_id, str)
        or not isinstance(meta.pid, int)
        or not isinstance(meta.hostname, str)
    ):
        return None
    return meta


def run_lock(store: EvidenceStore, client: str, run_id: str, command: str) -> Any:
    """Take the client's run lock (one run per client at a time) held by this process; a RunLock.

    Raises lock.LockHeld (another run holds it, named) or OSError (cannot be written)."""
    from offboard.lock import Holder, RunLock

    holder = Holder(run_id, operator(), os.getpid(), socket.gethostname(), utc_now(), command)
    return RunLock(store.client_dir(client, create=True), client).acquire(holder)


@dataclass
class Run:
    """One run folder from opening to seal: the folder, its description (metadata.json), its records and
    the seal (manifest, signature, chain) through manifest.seal, the one sealing function.

    The wrapper (runner.execute), the evidence callback (plain ansible-playbook runs) and the checklist
    open their runs here; the caller holds the client's lock (run_lock, or the checklist's lock)."""

    dir: Path
    meta: RunMetadata

    @classmethod
    def open(
        cls,
        store: EvidenceStore,
        client: str,
        *,
        source: str,
        command: str,
        run_id: str | None = None,
        project: Path | None = None,
        started_at: str | None = None,
        **fields: Any,
    ) -> Run:
        """Create the run folder and write its first description; `project` adds versions and commit."""
        run_dir = store.new_run(client, run_id)
        meta = RunMetadata(
            run_id=run_dir.name,
            client=client,
            source=source,
            command=command,
            operator=operator(),
            started_at=started_at or utc_now(),
            pid=os.getpid(),
            hostname=socket.gethostname(),
            **fields,
        )
        if project is not None:
            meta.versions, meta.repository = tool_versions(), repo_commit(project)
        run = cls(run_dir, meta)
        run.describe()
        return run

    @property
    def run_id(self) -> str:
        return self.dir.name

    def describe(self) -> None:
        """Write the run's description as it stands (metadata.json, atomically)."""
        write_metadata(self.dir, self.meta)

    def records(self, redact: Any = None) -> RecordWriter:
        return RecordWriter(self.dir, redact=redact)

    def finish(
        self,
        status: str,
        reason: str | None = None,
        exit_code: int | None = None,
        ended_at: str | None = None,
    ) -> Run:
        """Set the final status (complete, refused, incomplete); seal() writes it: run.finish(...).seal()."""
        self.meta.status = status
        self.meta.complete = status in (STATUS_COMPLETE, STATUS_REFUSED)
        self.meta.reason = reason
        self.meta.exit_code = exit_code
        self.meta.ended_at = ended_at or utc_now()
        return self

    def seal(self) -> str:
        """Write the final description and seal the run into the client's chain; the manifest digest."""
        self.describe()
        return manifest.seal(self.dir)


class RecordWriter:
    """Appends records to a run's records.jsonl, one flushed line each (a kill leaves whole lines).

    Each record is redacted (when given a redactor) and checked against docs/record.schema.json before
    it is written: a record that breaks the schema raises RecordError and is not written."""

    def __init__(self, run_dir: Path, redact: Any = None) -> None:
        self._handle = open_private(run_dir / RECORDS, "a")
        self._redact = redact

    def write(self, record: Record | ChecklistRecord) -> None:
        data = record.to_dict()
        if self._redact is not None:
            data = self._redact.data(data)
        problem = schema_problem(json.loads(json.dumps(data, default=str)))
        if problem:
            raise RecordError(f"record breaks docs/record.schema.json ({problem}); not written")
        self._handle.write(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pid_alive(pid: int, hostname: str) -> bool:
    """Is the writer of a run still alive? Runs from other machines are assumed alive."""
    if hostname and hostname != socket.gethostname():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unsealed_runs(store: EvidenceStore, client: str) -> Iterator[tuple[str, Path, RunMetadata | None]]:
    """(run id, run dir, metadata or None) of every run of the client without a manifest yet."""
    client_dir = store.client_dir(client)
    for run_id in store.run_ids(client):
        run_dir = client_dir / run_id
        if not store.is_sealed(client, run_id):
            yield run_id, run_dir, read_metadata(run_dir)


def active_runs(store: EvidenceStore, client: str) -> set[str]:
    """Unsealed runs that may be in progress: only while a live process holds the client's run lock.

    The lock is the kernel's word (an flock dies with its holder); a pid or host name in a metadata
    file is not, so an unsealed folder with no lock held is never "in progress"."""
    from offboard.lock import is_locked

    if not is_locked(store.client_dir(client)):
        return set()
    return {run_id for run_id, _, _ in _unsealed_runs(store, client)}


def recover_dead_runs(store: EvidenceStore, client: str, note: dict[str, str] | None = None) -> list[str]:
    """Seal every unsealed run whose writer died, marked incomplete. Call under the client's run lock.

    `note` adds a sentence to a run's reason (e.g. that its raw output was dropped)."""
    recovered = []
    for run_id, run_dir, meta in _unsealed_runs(store, client):
        if meta and pid_alive(meta.pid, meta.hostname):
            continue
        if meta is None:
            meta = RunMetadata(run_id, client, "unknown", "unknown", "unknown", "")
        reason = meta.reason or (
            "the run ended before ansible's final stats (killed or crashed); sealed by a later run"
        )
        if note and note.get(run_id):
            reason += f"; {note[run_id]}"
        Run(run_dir, meta).finish(STATUS_INCOMPLETE, reason, meta.exit_code, meta.ended_at).seal()
        recovered.append(run_id)
    return recovered
