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
from offboard.records import looks_secret, names_secret

EVENTS_FILE = "job_events.jsonl"  # every job event of a run, one JSON object per line, in counter order

MASK = "********"
MIN_SECRET_LINE_LEN = 16
MIN_SECRET_LEN = 6
SHORT_SECRET_MIN = 3  # below this, not even a whole value is masked ("ok", "0" would go everywhere)
# Variables kept (values still redacted) in the rebuilt `command` artifact: they explain the run.
_ENV_KEEP = re.compile(
    r"^(ANSIBLE_(?!.*(PASS|SECRET|TOKEN|KEY|VAULT)).*|OFFBOARD_(RUN_ID|CLIENT|OPERATOR)|PWD)$"
)
_ENV_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK", "XDG_SESSION_ID", "SESSION_MANAGER"})
_ENV_SECRET_HINT = re.compile(r"(PASS|SECRET|TOKEN|KEY|CRED|AUTH|VAULT|PRIVATE|COOKIE|SESSION)", re.I)


class ShortSecretError(ValueError):
    """A secret too short to be masked in free text (see docs/evidence.md, Short secrets)."""


# `scheme://user:password@host`: the password part of URL userinfo, in any value, whoever set it.
_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"\\]*:)(?P<pw>[^\s/@'\"\\]+)@")
# Keys of a no_log task's registered result whose string values are taken as secrets.
_NO_LOG_VALUE_KEYS = frozenset(
    {"stdout", "stderr", "stdout_lines", "stderr_lines", "content", "value", "msg"}
)


class Redactor:
    """Replaces known secret values (and their JSON-escaped forms) with a mask.

    Short-secret policy (docs/evidence.md): values of MIN_SECRET_LEN characters or more are masked
    wherever they occur; shorter ones cannot be masked in free text without masking ordinary words, so
    they are masked only in key-aware contexts: a whole string value of a record or event equal to one.
    Values under a key that looks secret (password, token, ...) are masked whatever their length, and
    the password of any URL's userinfo (`scheme://user:PASSWORD@host`) is masked wherever it appears.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._needles: set[str] = set()
        self.short: set[str] = set()
        self.needles: list[str] = []
        self._re: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[Any], short: bool = False, lines: bool = True) -> None:
        """Learn more secret values (e.g. a password generated during the run).

        Parts shorter than MIN_SECRET_LEN are ignored unless `short` (values known to be secrets, e.g.
        an environment variable named like a token): those are masked as whole values only. `lines=False`
        (values learned from a run's output) masks whole values only, never each line of them."""
        before = len(self._needles)
        for value in values:
            if value is None or isinstance(value, bool):
                continue
            value = str(value)
            # A multi-line secret (a key, a config) is also masked line by line, but only lines long enough
            # to be its own material: a line such as "backup" would mask that word all over the evidence.
            parts = (
                [ln for ln in value.splitlines() if len(ln.strip()) >= MIN_SECRET_LINE_LEN] if lines else []
            )
            for part in [value, *parts, *_url_passwords(value)]:
                part = part.strip() if part is not value else part
                if len(part) >= MIN_SECRET_LEN:
                    self._needles.add(part)
                    escaped = json.dumps(part)[1:-1]
                    if escaped != part:
                        self._needles.add(escaped)
                elif short and len(part.strip()) >= SHORT_SECRET_MIN and part != MASK:
                    self.short.add(part)
        if len(self._needles) != before:
            # Longest first, so a secret containing another is masked whole.
            self.needles = sorted(self._needles, key=len, reverse=True)
            self._re = re.compile("|".join(map(re.escape, self.needles)))

    def __call__(self, text: str) -> str:
        if "://" in text:
            text = _URL_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
        return self._re.sub(MASK, text) if self._re else text

    def data(self, value: Any, key: str = "") -> Any:
        """Redact structured data (a record, an event): every string, plus whole short values and
        every value under a secret-looking key."""
        if isinstance(value, str):
            if value and (value in self.short or (key and looks_secret(key) and value != MASK)):
                return MASK
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, key) for v in value]
        return value

    def __bool__(self) -> bool:
        return bool(self.needles or self.short)


def _url_passwords(value: str) -> list[str]:
    return [m.group("pw") for m in _URL_USERINFO.finditer(value)] if "://" in value else []


def secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names suggest a secret, and every URL password in any value."""
    found = []
    for key, value in env.items():
        found.extend(_url_passwords(value))
        if key in _ENV_NOT_SECRET or not value or _is_path_var(key, value):
            continue
        if looks_secret(key) or _ENV_SECRET_HINT.search(key):
            found.append(value)
    return found


def short_env_secrets(env: Mapping[str, str]) -> list[str]:
    """Short values (under MIN_SECRET_LEN) of variables clearly named as secrets (MSP_API_TOKEN): masked as
    whole values only. Looser hints (ANSIBLE_HOST_KEY_CHECKING=False) would mask every "False"."""
    return [
        value
        for key, value in env.items()
        if key not in _ENV_NOT_SECRET and looks_secret(key) and 0 < len(value.strip()) < MIN_SECRET_LEN
    ]


def env_redactor(env: Mapping[str, str]) -> Redactor:
    """A redactor holding the environment's secrets (long ones anywhere, short ones as whole values)."""
    redact = Redactor(secrets_from_env(env))
    redact.add(short_env_secrets(env), short=True)
    return redact


def _is_path_var(key: str, value: str) -> bool:
    # ANSIBLE_VAULT_PASSWORD_FILE, SSH_AUTH_SOCK ... hold paths, not secrets; their targets are handled apart.
    return key.endswith(("_FILE", "_SOCK", "_PATH", "_DIR")) and os.path.isabs(value)


class VaultSourceError(RuntimeError):
    """The vault secrets could not be loaded the way ansible-playbook would load them."""


def load_vault_secrets(env: Mapping[str, str] | None = None, loader: Any = None) -> list[tuple[str, Any]]:
    """The vault secrets ansible-playbook would use, loaded by Ansible's own code.

    Every source Ansible reads: ANSIBLE_VAULT_PASSWORD_FILE / vault_password_file (a plain file, an
    executable script, a `-client` script) and ANSIBLE_VAULT_IDENTITY_LIST / vault_identity_list.
    Raises VaultSourceError when one cannot be loaded (the run must not start without them: their
    values could not be redacted).
    """
    from ansible import constants as C
    from ansible.cli import CLI
    from ansible.parsing.dataloader import DataLoader

    env = os.environ if env is None else env
    if env.get("ANSIBLE_VAULT_IDENTITY_LIST"):
        ids = [i.strip() for i in env["ANSIBLE_VAULT_IDENTITY_LIST"].split(",") if i.strip()]
    else:
        ids = list(C.config.get_config_value("DEFAULT_VAULT_IDENTITY_LIST") or [])
    password_file = env.get("ANSIBLE_VAULT_PASSWORD_FILE") or C.config.get_config_value(
        "DEFAULT_VAULT_PASSWORD_FILE"
    )
    files = [str(password_file)] if password_file else []
    if not ids and not files:
        return []
    try:
        return list(
            CLI.setup_vault_secrets(
                loader or DataLoader(),
                vault_ids=ids,
                vault_password_files=files,
                ask_vault_pass=False,
                auto_prompt=False,
                initialize_context=False,
            )
        )
    except Exception as exc:
        raise VaultSourceError(
            f"cannot load the vault secrets ({exc}); fix the vault password file/script, or the run "
            "would hold vault values that cannot be redacted"
        ) from None


def vault_values(secrets: Iterable[tuple[str, Any]], inventory: Path | Iterable[Path]) -> list[str]:
    """The vault passwords and every decrypted vault value under `inventory` (files and inline values).

    Raises ShortSecretError for a vault password, or a vaulted value under a secret-looking key, shorter
    than MIN_SECRET_LEN: it could not be masked in free text (docs/evidence.md, Short secrets).
    """
    secrets = [(vid, s) for vid, s in secrets if getattr(s, "bytes", None)]
    found: list[str] = []
    for vault_id, secret in secrets:
        password = secret.bytes.decode("utf-8", "replace").strip()
        if len(password) < MIN_SECRET_LEN:
            raise ShortSecretError(
                f"the vault password of vault id {vault_id!r} is shorter than {MIN_SECRET_LEN} characters"
            )
        found.append(password)
    if not secrets:
        return found
    roots = [inventory] if isinstance(inventory, Path) else list(inventory)
    for root in roots:
        found.extend(_decrypt_inventory(root, secrets))
    return found


def secrets_from_vault(env: Mapping[str, str], inventory: Path) -> list[str]:
    """The vault password(s) and every decrypted vault value in the inventory (Ansible's own loading)."""
    return vault_values(load_vault_secrets(env), inventory)


def _decrypt_inventory(inventory: Path, secrets: list[tuple[str, Any]]) -> list[str]:
    try:
        from ansible.parsing.vault import VaultLib
    except ImportError:
        return []
    vault = VaultLib(secrets)
    values: list[str] = []
    paths = [inventory] if inventory.is_file() else sorted(inventory.rglob("*"))
    for path in paths:
        if path.is_symlink() or not path.is_file() or path.suffix not in (".yml", ".yaml", ".json", ""):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        blobs: list[tuple[str, str]] = []
        if text.startswith("$ANSIBLE_VAULT"):
            blobs.append(("", text))
        for match in re.finditer(r"([\w.-]+):\s*!vault \|\s*\n((?:[ \t]+\S.*\n?)+)", text):
            blobs.append((match.group(1), "\n".join(line.strip() for line in match.group(2).splitlines())))
        for key, blob in blobs:
            try:
                plain = vault.decrypt(blob).decode("utf-8", "replace")
            except Exception:
                continue
            values.extend(_leaf_strings(plain, key, path))
    return values


def _leaf_strings(plain: str, key: str = "", where: Path | None = None) -> list[str]:
    """Leaf values of a decrypted vault file (YAML), or the decrypted string itself (an inline value)."""
    data: Any = plain
    if not key:
        try:
            import yaml

            data = yaml.safe_load(plain)
        except Exception:
            data = plain
    out: list[str] = []

    def walk(node: Any, name: str) -> None:
        if isinstance(node, Mapping):
            for sub, value in node.items():
                walk(value, str(sub))
        elif isinstance(node, list):
            for value in node:
                walk(value, name)
        elif node is not None and not isinstance(node, bool):
            text = str(node)
            if len(text.strip()) < MIN_SECRET_LEN and looks_secret(name):
                raise ShortSecretError(
                    f"vaulted {name or 'value'} in {where} is shorter than {MIN_SECRET_LEN} characters: "
                    "too short to be masked reliably; use a longer secret"
                )
            out.append(text)

    walk(data if isinstance(data, Mapping | list) else plain, key)
    return out


def secrets_from_result(result: Mapping[str, Any], no_log: bool) -> list[str]:
    """Secret values in a task's result as the controller keeps it (facts, registered values).

    Every value under a secret-looking key (how roles mark a fact secret: `__role_secret`,
    `new_password`, ...), and for a `no_log` task its output values too (stdout, content, ...).
    """
    found: list[str] = []

    def leaves(node: Any) -> None:
        if isinstance(node, Mapping):
            for value in node.values():
                leaves(value)
        elif isinstance(node, list | tuple):
            for value in node:
                leaves(value)
        elif isinstance(node, str) and node.strip():
            found.append(node)

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for sub, value in node.items():
                sub = str(sub)
                # A key that names a secret by its last word (`password`, `new_secret`), not any key with such
                # a word in it: `password_last_set` or `login_password_files` hold dates and paths.
                # getent's facts are named for the database they read (getent_passwd): account names and
                # home folders, not secrets.
                if (names_secret(sub) and not sub.startswith("getent_")) or (
                    no_log and sub in _NO_LOG_VALUE_KEYS
                ):
                    leaves(value)
                else:
                    walk(value, sub)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value, key)
        elif no_log and isinstance(node, str) and node.strip() and key == "":
            found.append(node)

    walk(result, "")
    return found


# The redactor of this process, for code that runs inside ansible-playbook (the offboard_evidence
# callback sets it; the offboard_export and docs package actions, forked after it, inherit it).
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
