"""Where secret values come from: the environment, the vault (password and decrypted inventory values)
and a task's result (facts and registered values). The redactor (redactor.py) masks what these find.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from offboard.records import looks_secret, names_secret
from offboard.redactor import MIN_SECRET_LEN, Redactor, ShortSecretError, url_passwords

_ENV_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK", "XDG_SESSION_ID", "SESSION_MANAGER"})
_ENV_SECRET_HINT = re.compile(r"(PASS|SECRET|TOKEN|KEY|CRED|AUTH|VAULT|PRIVATE|COOKIE|SESSION)", re.I)
# Keys of a no_log task's registered result whose string values are taken as secrets.
_NO_LOG_VALUE_KEYS = frozenset(
    {"stdout", "stderr", "stdout_lines", "stderr_lines", "content", "value", "msg"}
)


def secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names suggest a secret, and every URL password in any value."""
    found = []
    for key, value in env.items():
        found.extend(url_passwords(value))
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
