"""Secrets out of the evidence: redact known secret values, rebuild runner's `command` artifact.

ansible-runner's `command` artifact holds the whole process environment; job events and stdout hold
whatever a task printed. Before anything is kept, we:
  - rebuild `command` from the argv, the cwd and an allow-list of non-secret variables;
  - replace every known secret value (secret-looking environment variables, the vault password,
    decrypted vault values of the client's inventory) in every kept file, and on the console;
  - never keep runner's env/ folder (the wrapper also runs with suppress_env_files).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from offboard.fsutil import open_private
from offboard.records import looks_secret

EVENTS_FILE = "job_events.jsonl"  # every job event of a run, one JSON object per line, in counter order

MASK = "********"
MIN_SECRET_LEN = 6
# Variables kept (values still redacted) in the rebuilt `command` artifact: they explain the run.
_ENV_KEEP = re.compile(
    r"^(ANSIBLE_(?!.*(PASS|SECRET|TOKEN|KEY|VAULT)).*|OFFBOARD_(RUN_ID|CLIENT|OPERATOR)|PWD)$"
)
_ENV_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK", "XDG_SESSION_ID", "SESSION_MANAGER"})
_ENV_SECRET_HINT = re.compile(r"(PASS|SECRET|TOKEN|KEY|CRED|AUTH|VAULT|PRIVATE|COOKIE|SESSION)", re.I)


class Redactor:
    """Replaces known secret values (and their JSON-escaped forms) with a mask."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        needles: set[str] = set()
        for value in values:
            for part in [value, *value.splitlines()]:
                part = part.strip() if part is not value else part
                if len(part) >= MIN_SECRET_LEN:
                    needles.add(part)
                    escaped = json.dumps(part)[1:-1]
                    if escaped != part:
                        needles.add(escaped)
        # Longest first, so a secret containing another is masked whole.
        self.needles = sorted(needles, key=len, reverse=True)
        self._re = re.compile("|".join(map(re.escape, self.needles))) if self.needles else None

    def __call__(self, text: str) -> str:
        return self._re.sub(MASK, text) if self._re else text

    def __bool__(self) -> bool:
        return bool(self.needles)


def secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names suggest a secret."""
    found = []
    for key, value in env.items():
        if key in _ENV_NOT_SECRET:
            continue
        if value and (looks_secret(key) or _ENV_SECRET_HINT.search(key)) and not _is_path_var(key, value):
            found.append(value)
    return found


def _is_path_var(key: str, value: str) -> bool:
    # ANSIBLE_VAULT_PASSWORD_FILE, SSH_AUTH_SOCK ... hold paths, not secrets; their targets are handled apart.
    return key.endswith(("_FILE", "_SOCK", "_PATH", "_DIR")) and os.path.isabs(value)


def secrets_from_vault(env: Mapping[str, str], inventory: Path) -> list[str]:
    """The vault password (from a plain password file) and every decrypted vault value in the inventory."""
    password_file = env.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if not password_file:
        return []
    path = Path(password_file)
    try:
        if not path.is_file() or os.access(path, os.X_OK):
            return []  # a vault client script: we do not run it here
        password = path.read_text(encoding="utf-8").strip()
    except OSError:
        return []
    found = [password] if password else []
    found.extend(_decrypt_inventory(inventory, password))
    return found


def _decrypt_inventory(inventory: Path, password: str) -> list[str]:
    try:
        from ansible.constants import DEFAULT_VAULT_ID_MATCH
        from ansible.parsing.vault import VaultLib, VaultSecret
    except ImportError:
        return []
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password.encode()))])
    values: list[str] = []
    for path in sorted(inventory.rglob("*")):
        if not path.is_file() or path.suffix not in (".yml", ".yaml", ".json", ""):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        blobs = []
        if text.startswith("$ANSIBLE_VAULT"):
            blobs.append(text)
        for match in re.finditer(r"!vault \|\s*\n((?:[ \t]+\S.*\n?)+)", text):
            blobs.append("\n".join(line.strip() for line in match.group(1).splitlines()))
        for blob in blobs:
            try:
                plain = vault.decrypt(blob).decode("utf-8", "replace")
            except Exception:
                continue
            values.extend(_leaf_strings(plain))
    return values


def _leaf_strings(plain: str) -> list[str]:
    """Leaf values of a decrypted vault file (YAML), or the decrypted string itself."""
    try:
        import yaml

        data = yaml.safe_load(plain)
    except Exception:
        return [plain]
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif node is not None and not isinstance(node, bool):
            out.append(str(node))

    walk(data)
    return out if isinstance(data, Mapping | list) else [plain]


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

    def write(self, event: dict) -> None:
        self._file.write(self._redact(json.dumps(event, sort_keys=True, separators=(",", ":"))) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


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
