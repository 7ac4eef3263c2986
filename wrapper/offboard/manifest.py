"""Manifests and the hash chain that make the evidence store tamper-evident.

Every run directory is sealed with MANIFEST.sha256 (sha256sum format: the hash of every other file of
the run) and, except the client's first run, PREVIOUS.sha256 (the hash of the previous run's manifest,
also in sha256sum format, also listed in the manifest). The client folder's HEAD names the newest
manifest. So `sha256sum -c` reproduces every check by hand (docs/evidence.md), and verify() walks the
chain from HEAD: an altered, added or missing file, a deleted run or a run outside the chain is named.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from offboard import signing
from offboard.fsutil import (
    atomic_write_text,
    is_link,
    is_regular_file,
    locked,
    open_nofollow,
    tighten_tree,
)

MANIFEST = "MANIFEST.sha256"
PREVIOUS = "PREVIOUS.sha256"
HEAD = "HEAD"
CHAIN_LOCK = ".chain.lock"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_nofollow(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _escape(name: str) -> tuple[str, str]:
    """GNU sha256sum escaping: names with a backslash or newline get a leading backslash."""
    if "\\" in name or "\n" in name:
        return "\\", name.replace("\\", "\\\\").replace("\n", "\\n")
    return "", name


def _unescape(name: str) -> str:
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name):
            out.append("\n" if name[i + 1] == "n" else name[i + 1])
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def format_line(digest: str, name: str) -> str:
    prefix, escaped = _escape(name)
    return f"{prefix}{digest}  {escaped}\n"


def parse_line(line: str) -> tuple[str, str] | None:
    """(digest, name) of one sha256sum line, or None when it is not one."""
    line = line.rstrip("\n")
    escaped = line.startswith("\\")
    if escaped:
        line = line[1:]
    if len(line) < 67 or line[64:66] not in ("  ", " *"):
        return None
    digest, name = line[:64], line[66:]
    if any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest, _unescape(name) if escaped else name


def run_files(run_dir: Path) -> Iterator[str]:
    """Relative paths (posix) of every file below run_dir except its manifest and the signature and
    time-stamp files made over it (signing.DETACHED), sorted, streamed per folder."""
    for root, dirs, files in os.walk(run_dir):
        dirs.sort()
        rel_root = Path(root).relative_to(run_dir)
        # os.walk does not descend into a symlinked folder but lists it: report it like a file.
        links = [d for d in dirs if is_link(os.path.join(root, d))]
        for name in sorted([*files, *links]):
            rel = (rel_root / name).as_posix()
            if rel != MANIFEST and rel not in signing.DETACHED:
                yield rel


def _first_line(path: Path) -> str | None:
    """The first line of a chain file (HEAD, PREVIOUS.sha256), never through a symlink; None if absent.

    Raises OSError when the file exists and cannot be read."""
    try:
        with open_nofollow(path, "r") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    return text.splitlines()[0] if text else ""


def read_head(client_dir: Path) -> tuple[str, str] | None:
    """(manifest digest, run id) named by HEAD, or None for a client without sealed runs."""
    try:
        line = _first_line(client_dir / HEAD)
    except OSError as exc:
        raise ValueError(
            f"{client_dir / HEAD} cannot be read ({exc.strerror or exc}; a symlink is not followed)"
        ) from None
    if line is None:
        return None
    parsed = parse_line(line)
    if not parsed:
        raise ValueError(f"{client_dir / HEAD} is not a sha256sum line")
    digest, name = parsed
    return digest, name.split("/", 1)[0]


def seal(run_dir: Path) -> str:
    """Write PREVIOUS.sha256 and MANIFEST.sha256 for a finished run, advance HEAD; returns the digest.

    The chain lock serialises sealing across processes (wrapper runs, plain ansible-playbook runs).
    With a signing key configured (signing.py) the manifest is signed, and time-stamped with a TSA set.
    """
    client_dir = run_dir.parent
    sign_cfg = signing.config_for(client_dir.name, client_dir)
    with locked(client_dir / CHAIN_LOCK):
        if (run_dir / MANIFEST).exists():
            raise ValueError(f"{run_dir} is already sealed")
        tighten_tree(run_dir)  # owner-only, whoever wrote the files
        head = read_head(client_dir)
        if head:
            atomic_write_text(run_dir / PREVIOUS, format_line(head[0], f"../{head[1]}/{MANIFEST}"))
        for name in signing.DETACHED:  # only ever made over this manifest: none may exist before it
            (run_dir / name).unlink(missing_ok=True)
        signed = signing.before_manifest(run_dir, sign_cfg)
        lines = (format_line(sha256_file(run_dir / rel), rel) for rel in run_files(run_dir))
        atomic_write_text(run_dir / MANIFEST, "".join(lines))
        signing.after_manifest(run_dir, sign_cfg, signed)
        digest = sha256_file(run_dir / MANIFEST)
        try:
            atomic_write_text(client_dir / HEAD, format_line(digest, f"{run_dir.name}/{MANIFEST}"))
        except BaseException:
            # HEAD did not move (disk full...): unseal, so a later seal links this run into the chain.
            for name in (MANIFEST, PREVIOUS):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(run_dir / name)
            raise
    return digest


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the evidence root's client folder
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass
class VerifyReport:
    client: str
    runs_checked: int = 0
    files_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_run(run_dir: Path, report: VerifyReport) -> None:
    """Re-hash one sealed run: altered, missing and added files become problems."""
    listed: set[str] = set()
    with open_nofollow(run_dir / MANIFEST, "r") as handle:  # invalid UTF-8 reads as malformed lines
        for number, line in enumerate(handle, 1):
            parsed = parse_line(line)
            if not parsed:
                report.problems.append(Problem(f"{run_dir.name}/{MANIFEST}", f"line {number} is malformed"))
                continue
            digest, rel = parsed
            listed.add(rel)
            path = run_dir / rel
            if is_link(path):
                report.problems.append(Problem(f"{run_dir.name}/{rel}", "a symlink (never followed)"))
                continue
            if not is_regular_file(path):
                report.problems.append(Problem(f"{run_dir.name}/{rel}", "missing (listed in the manifest)"))
                continue
            report.files_checked += 1
            if sha256_file(path) != digest:
                report.problems.append(Problem(f"{run_dir.name}/{rel}", "altered (sha256 differs)"))
    for rel in run_files(run_dir):
        if rel not in listed:
            what = "a symlink (never followed)" if is_link(run_dir / rel) else "added (not in the manifest)"
            report.problems.append(Problem(f"{run_dir.name}/{rel}", what))


def _previous_link(run_dir: Path) -> tuple[str, str] | None:
    try:
        line = _first_line(run_dir / PREVIOUS)
    except OSError:
        return ("", "")
    if line is None:
        return None
    parsed = parse_line(line)
    if not parsed:
        return ("", "")
    digest, name = parsed
    parts = Path(name).parts
    return digest, parts[1] if len(parts) == 3 and parts[0] == ".." else ""


def verify_chain(client_dir: Path, run_ids: list[str], active: set[str], report: VerifyReport) -> None:
    """Walk the chain from HEAD over every sealed run; report breaks, strays and unsealed runs.

    `run_ids` are the run folders present; `active` those still being written by a live process.
    """
    sealed = {r for r in run_ids if is_regular_file(client_dir / r / MANIFEST)}
    for run_id in sorted(set(run_ids) - sealed):
        if run_id in active:
            report.notes.append(f"{run_id}: run in progress (not sealed yet; a live run holds the lock)")
        else:
            report.problems.append(
                Problem(
                    run_id,
                    "not sealed, and no live run holds the client's lock: not evidence (a run that "
                    "died, or a folder made by hand); the next `offboard run` or `offboard retry` seals "
                    "a dead run as incomplete",
                )
            )
    try:
        head = read_head(client_dir)
    except ValueError as exc:
        report.problems.append(Problem(HEAD, str(exc)))
        head = None
    if head is None:
        if sealed:
            report.problems.append(Problem(HEAD, "missing: sealed runs exist but no chain head"))
        visited: set[str] = set()
    else:
        visited = _walk(client_dir, head, report)
    for run_id in sorted(sealed - visited):
        report.problems.append(
            Problem(run_id, "not in the chain from HEAD (added, or a later run was deleted)")
        )
    for run_id in sorted(sealed):
        report.runs_checked += 1
        verify_run(client_dir / run_id, report)


def _walk(client_dir: Path, head: tuple[str, str], report: VerifyReport) -> set[str]:
    visited: set[str] = set()
    digest, run_id = head
    where = HEAD
    while True:
        manifest = client_dir / run_id / MANIFEST
        if not run_id or not is_regular_file(manifest) or is_link(client_dir / run_id):
            report.problems.append(
                Problem(where, f"chain broken: links to run {run_id or '?'}, which is missing (deleted?)")
            )
            return visited
        if run_id in visited:
            report.problems.append(Problem(where, f"chain loops back to run {run_id}"))
            return visited
        visited.add(run_id)
        if sha256_file(manifest) != digest:
            report.problems.append(
                Problem(f"{run_id}/{MANIFEST}", f"altered (its sha256 differs from the one {where} holds)")
            )
        link = _previous_link(client_dir / run_id)
        if link is None:
            return visited  # the client's first run
        where = f"{run_id}/{PREVIOUS}"
        digest, run_id = link
