"""A client's inventory as the wrapper needs it: hosts, their connection settings, the known tags.

Loaded with Ansible's own inventory code (same plugins, same group_vars) so the wrapper and the
playbook agree on what a host is. Secret connection values (passwords) stay in memory, never printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from offboard.records import PHASES

_CLIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CONN_KEYS = (
    "ansible_connection",
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_password",
    "ansible_ssh_private_key_file",
    "ansible_winrm_transport",
    "ansible_winrm_scheme",
    "ansible_winrm_server_cert_validation",
    "ansible_psrp_protocol",
    "ansible_psrp_port",
    "ansible_psrp_user",
    "ansible_psrp_auth",
    "ansible_psrp_path",
    "ansible_psrp_cert_validation",
    "ansible_psrp_message_encryption",
    "docker_host",
    "ansible_docker_host",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_become_password",
    "offboard_client_id",
)


class InventoryError(ValueError):
    """Bad client or inventory: reported before anything runs."""


@dataclass
class HostConn:
    name: str
    connection: str
    address: str
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class ClientInventory:
    client: str
    path: Path
    hosts: list[HostConn]

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]


def check_client_name(client: str, inventories: Path) -> Path:
    """The client's inventory folder; InventoryError naming the known clients otherwise."""
    if not _CLIENT_RE.match(client):
        raise InventoryError(f"{client!r} is not a client name (letters, digits, . _ -)")
    path = inventories / client
    if not path.is_dir():
        known = sorted(p.name for p in inventories.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise InventoryError(
            f"unknown client {client!r}: no folder {path}. Known clients: {', '.join(known) or 'none'}"
        )
    return path


class _VarsLoader(yaml.SafeLoader):
    """Reads group_vars without a vault password: !vault values stay opaque placeholders."""


_VarsLoader.add_multi_constructor("!", lambda loader, suffix, node: f"<{suffix} value>")


def client_vars(client: str, project: Path) -> dict[str, Any]:
    """The client group's variables (group_vars/<client>.yml or group_vars/<client>/*.yml), unvaulted.

    For the checklist, which needs the team, dates and terms, not connection secrets: no vault password
    is asked for and an encrypted file is skipped."""
    gv = check_client_name(client, project / "inventories") / "group_vars"
    values: dict[str, Any] = {}
    for file in [gv / f"{client}.yml", gv / f"{client}.yaml", *sorted((gv / client).glob("*.y*ml"))]:
        if not file.is_file():
            continue
        try:
            data = yaml.load(file.read_text(encoding="utf-8"), Loader=_VarsLoader)
        except yaml.YAMLError as exc:
            raise InventoryError(f"cannot read {file}: {exc}") from None
        if isinstance(data, dict):  # an encrypted vault file loads as one string: skipped
            values.update(data)
    return values


def load(client: str, project: Path, limit: str | None = None) -> ClientInventory:
    """Hosts of the client's group (narrowed by an ansible --limit pattern) with their connection settings."""
    path = check_client_name(client, project / "inventories")
    from ansible.errors import AnsibleError

    try:
        ansible = open_ansible(project, path)
        manager, variables = ansible.manager, ansible.variables
        if client not in manager.groups:
            raise InventoryError(
                f"inventory {path} has no group named {client!r}: the client's top group must carry its name"
            )
        if limit:
            manager.subset(limit)
            if not manager.get_hosts(client):
                raise InventoryError(f"--limit {limit!r} selects no host of client {client!r}")
        hosts = []
        for host in manager.get_hosts(client):
            hostvars = variables.get_vars(host=host, include_hostvars=False)
            templar = ansible.templar(hostvars)
            conn: dict[str, Any] = {}
            for key in _CONN_KEYS:
                if key in hostvars:
                    try:
                        conn[key] = templar.template(hostvars[key])
                    except Exception:
                        continue
            hosts.append(_host_conn(host.name, conn))
    except AnsibleError as exc:
        raise InventoryError(f"cannot load inventory {path}: {exc}") from None
    if not hosts:
        raise InventoryError(f"client {client!r} has no hosts in {path}: nothing to offboard")
    return ClientInventory(client, path, hosts)


@dataclass
class AnsibleInventory:
    """An inventory source as Ansible loads it: loader (vault secrets given), manager and variables."""

    loader: Any
    manager: Any
    variables: Any

    def templar(self, variables: Mapping[str, Any]) -> Any:
        from ansible.template import Templar

        return Templar(loader=self.loader, variables=variables)


def open_ansible(project: Path, source: Path) -> AnsibleInventory:
    """Load `source` with Ansible's own code (plugins, group_vars, vault), as the playbook will.

    A vault source that fails raises InventoryError; Ansible's own errors (AnsibleError) pass through."""
    os.environ.setdefault("ANSIBLE_CONFIG", str(project / "ansible.cfg"))
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.vars.manager import VariableManager

    init_plugin_loader()
    loader = DataLoader()
    loader.set_basedir(str(project))
    _vault_secrets(loader)
    manager = InventoryManager(loader=loader, sources=[str(source)])
    return AnsibleInventory(loader, manager, VariableManager(loader=loader, inventory=manager))


def _vault_secrets(loader: Any) -> None:
    """Give the loader the vault secrets the run will use (every source, loaded by Ansible's own code),
    so connection vars can be read; a source that fails refuses the run (scrub.load_vault_secrets)."""
    from offboard.scrub import VaultSourceError, load_vault_secrets

    try:
        secrets = load_vault_secrets(loader=loader)
    except VaultSourceError as exc:
        raise InventoryError(str(exc)) from None
    if secrets:
        loader.set_vault_secrets(secrets)


def _host_conn(name: str, conn: dict[str, Any]) -> HostConn:
    connection = str(conn.get("ansible_connection") or "ssh")
    port = conn.get("ansible_port")
    return HostConn(
        name=name,
        connection=connection.rsplit(".", 1)[-1] if connection.startswith("ansible.builtin.") else connection,
        address=str(conn.get("ansible_host") or name),
        port=int(port) if port not in (None, "") else None,
        user=str(conn["ansible_user"]) if conn.get("ansible_user") else None,
        password=str(conn["ansible_password"]) if conn.get("ansible_password") else None,
        key_file=str(conn["ansible_ssh_private_key_file"])
        if conn.get("ansible_ssh_private_key_file")
        else None,
        extra={k: v for k, v in conn.items() if k not in ("ansible_password", "ansible_become_password")},
    )


# --- tags ---------------------------------------------------------------------------------------
def playbook_phases(project: Path) -> list[str]:
    """Phases that have a play in offboard.yml (its imported playbooks set offboard_phase)."""
    found: set[str] = set()
    for path in [project / "offboard.yml", *sorted((project / "playbooks").glob("*.yml"))]:
        found.update(_play_phases(path))
    return [p for p in PHASES if p in found]


def _play_phases(path: Path) -> set[Any]:
    """The offboard_phase of every play of one playbook (nothing for a file that is not one)."""
    try:
        plays = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError):
        return set()
    if not isinstance(plays, list):
        return set()
    return {(play.get("vars") or {}).get("offboard_phase") for play in plays if isinstance(play, dict)}


def known_tags(project: Path) -> set[str]:
    roles = project / "roles"
    role_names = {p.name for p in roles.iterdir() if p.is_dir()} if roles.is_dir() else set()
    return set(playbook_phases(project)) | role_names | {"all", "always", "tagged", "untagged"}


def check_tags(tags: list[str], project: Path) -> None:
    known = known_tags(project)
    phases = playbook_phases(project)
    for tag in tags:
        if tag in PHASES and tag not in phases:
            raise InventoryError(
                f"phase {tag!r} has no automation yet; implemented phases: {', '.join(phases)}"
            )
        if tag not in known:
            raise InventoryError(
                f"unknown tag {tag!r}: use a phase ({', '.join(phases)}) or a role name "
                f"({', '.join(sorted(known - set(phases) - {'all', 'always', 'tagged', 'untagged'}))})"
            )


def selected_phases(tags: list[str], project: Path) -> list[str]:
    """The phases a run with these tags executes (all implemented phases when no phase tag is given)."""
    phases = playbook_phases(project)
    chosen = [t for t in tags if t in phases]
    return chosen or phases
