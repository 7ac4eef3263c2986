"""Secrets out of the evidence: redact known secret values, rebuild runner's `command` artifact.

ansible-runner's `command` artifact holds the whole process environment; job events and stdout hold
whatever a task printed. Before anything is kept, we:
  - rebuild `command` from the argv, the cwd and an allow-list of non-secret variables;
  - replace every known secret value (secret-looking environment variables, the vault password,
    decrypted vault values of the client's inventory) in every kept file, and on the console;
  - never keep runner's env/ folder (the wrapper also runs with suppress_env_files).

Parts: redactor.py (the Redactor), secret_sources.py (where secret values come from); this module
applies them to what a run keeps (the command artifact, job events, stdout).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from offboard.fsutil import open_private
from offboard.redactor import (
    MASK,
    MIN_SECRET_LEN,
    MIN_SECRET_LINE_LEN,
    SHORT_SECRET_MIN,
    Redactor,
    ShortSecretError,
)
from offboard.secret_sources import (
    VaultSourceError,
    env_redactor,
    load_vault_secrets,
    secrets_from_env,
    secrets_from_result,
    secrets_from_vault,
    short_env_secrets,
    vault_values,
)

__all__ = [
    "EVENTS_FILE",
    "MASK",
    "MIN_SECRET_LEN",
    "MIN_SECRET_LINE_LEN",
    "SHORT_SECRET_MIN",
    "EventLog",
    "Redactor",
    "ShortSecretError",
    "VaultSourceError",
    "active",
    "copy_artifacts",
    "env_redactor",
    "load_vault_secrets",
    "redact_bytes",
    "scrub_command_in_place",
    "scrubbed_command",
    "secrets_from_env",
    "secrets_from_result",
    "secrets_from_vault",
    "set_active",
    "short_env_secrets",
    "vault_values",
]

EVENTS_FILE = "job_events.jsonl"  # every job event of a run, one JSON object per line, in counter order
# Variables kept (values still redacted) in the rebuilt `command` artifact: they explain the run.
_ENV_KEEP = re.compile(
    r"^(ANSIBLE_(?!.*(PASS|SECRET|TOKEN|KEY|VAULT)).*|OFFBOARD_(RUN_ID|CLIENT|OPERATOR)|PWD)$"
)


_ACTIVE: Redactor | None = None


def set_active(redact: Redactor | None) -> None:
    global _ACTIVE
    _ACTIVE = redact


def active() -> Redactor:
    """This process's redactor (environment secrets and URL passwords at least)."""
    return _ACTIVE if _ACTIVE is not None else env_redactor(os.environ)


def redact_bytes(data: bytes, redact: Redactor) -> bytes:
    """Redact a file's bytes when they are UTF-8 text; binary data is returned unchanged."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return redact(text).encode("utf-8")


def scrubbed_command(command_file: Path, redact: Redactor) -> dict[str, Any]:
    """The `command` artifact without the environment: argv, cwd and allow-listed, redacted variables."""
    data = json.loads(command_file.read_text(encoding="utf-8"))
    env = data.get("env") or {}
    kept = {k: redact(str(v)) for k, v in sorted(env.items()) if _ENV_KEEP.match(k)}
    return {
        "command": [redact(str(arg)) for arg in data.get("command") or []],
        "cwd": data.get("cwd"),
        "env": kept,
        "env_note": "rebuilt by offboard: only non-secret ANSIBLE_*/OFFBOARD_* variables are kept",
    }


def scrub_command_in_place(command_file: Path, redact: Redactor) -> None:
    """Overwrite runner's `command` artifact as soon as it exists (before the playbook starts)."""
    if not command_file.exists():
        return
    clean = scrubbed_command(command_file, redact)
    tmp = command_file.with_name(".command.tmp")
    with open_private(tmp, "w") as handle:
        json.dump(clean, handle, indent=2)
    os.replace(tmp, command_file)


def copy_artifacts(artifact_dir: Path, dest: Path, redact: Redactor) -> None:
    """Copy runner artifacts into the evidence run folder, scrubbed; job events packed into one file.

    job_events/*.json (one file per event) become job_events.jsonl ordered by counter: one file to
    hash instead of thousands, streamed line by line.
    """
    dest.mkdir(mode=0o700, exist_ok=True)
    for base, dirs, files in os.walk(artifact_dir):
        dirs.sort()
        rel_base = Path(base).relative_to(artifact_dir)
        if rel_base.parts[:1] == ("job_events",):
            continue
        for name in sorted(files):
            src = Path(base) / name
            rel = rel_base / name
            if rel.as_posix() == "command":
                with open_private(dest / "command", "w") as handle:
                    json.dump(scrubbed_command(src, redact), handle, indent=2)
                continue
            if name.startswith(".") or name == "ssh_key_data":
                continue
            target = dest / rel
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _copy_text(src, target, redact)
    events_dir = artifact_dir / "job_events"
    # The wrapper streams events into job_events.jsonl as they arrive (EventLog); packing runner's
    # per-event files is for artifacts written without it, and never replaces a streamed log.
    target = dest / EVENTS_FILE
    if events_dir.is_dir() and not target.exists():
        _pack_events(events_dir, dest, redact)


class EventLog:
    """Runner events, scrubbed, appended to one JSON-lines file as they arrive.

    Used as part of runner's event_handler, it replaces runner's one-file-per-event writing (create,
    write, rename per event, then packed into this same file at the end): the run's CPU then goes to
    Ansible, not to the evidence. Each line is flushed, so a run killed half-way keeps its events."""

    def __init__(self, dest: Path, redact: Redactor) -> None:
        dest.mkdir(mode=0o700, exist_ok=True)
        self._file = open_private(dest / EVENTS_FILE, "a")
        self._redact = redact
        self.error: OSError | None = None  # the first write failure (disk full): the run must stop

    def write(self, event: dict) -> None:
        if self.error is not None:
            return
        line = json.dumps(self._redact.data(event), sort_keys=True, separators=(",", ":"))
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            self.error = exc

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            if self.error is None:
                raise


def _copy_text(src: Path, target: Path, redact: Redactor) -> None:
    with src.open(encoding="utf-8", errors="replace") as reader, open_private(target, "w") as writer:
        for line in reader:
            writer.write(redact(line))


def _event_counter(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 1 << 62


def _pack_events(events_dir: Path, dest: Path, redact: Redactor) -> None:
    names = sorted((n for n in os.listdir(events_dir) if n.endswith(".json")), key=_event_counter)
    log = EventLog(dest, redact)
    try:
        for name in names:
            try:
                text = (events_dir / name).read_text(encoding="utf-8", errors="replace")
                event = json.loads(text)
            except (OSError, ValueError):
                continue
            log.write(event)
    finally:
        log.close()
