# Copyright: the offboard project contributors
# Apache-2.0
"""Load group_vars/ and host_vars/ of every client folder below the configured inventory folder.

ansible.cfg points `inventory` at `inventories/`, so that `ansible-playbook offboard.yml -l acme` works
from the repository root. Ansible's own host_group_vars plugin only looks for group_vars/ next to an
inventory source, i.e. `inventories/group_vars/`, and would ignore `inventories/acme/group_vars/`.
This plugin applies the same loader to each client folder one level down.

A client folder sets variables only for its own group and hosts. Refused, with an error naming the file:
group_vars/all (any extension, file or folder) and group_vars/ungrouped, which would apply to every
client; group_vars for a group that is not the client's top group or one of its descendants; host_vars
for a host that is not in the client's group; a group or a host that sits in two client folders' groups
(its variables would cross); a folder whose hosts file does not have exactly one top group named like
the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.inventory.group import Group
from ansible.inventory.host import Host
from ansible.plugins.vars.host_group_vars import VarsModule as HostGroupVars
from ansible.utils.vars import combine_vars

DOCUMENTATION = """
    name: client_dirs
    short_description: group_vars and host_vars of each client folder below an inventory folder
    description:
      - Applies the host_group_vars loader to every sub-folder of an inventory folder.
      - Refuses variables a client folder sets for anything but its own group and hosts.
    options: {}
"""

_SKIP = {"group_vars", "host_vars"}
_VAR_EXTS = ("", ".yml", ".yaml", ".json")
_INVENTORY_NAMES = ("hosts", "hosts.yml", "hosts.yaml", "inventory.yml", "inventory.yaml")


def _stem(name: str) -> str:
    """The entity a group_vars/host_vars entry is loaded for ('' when ansible ignores the entry)."""
    if name.startswith("."):
        return ""
    for ext in _VAR_EXTS[1:]:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _leaks(name: str) -> bool:
    """all / ungrouped with any extension (or none), file or folder: it would apply to every client."""
    return name.split(".", 1)[0] in ("all", "ungrouped")


def _inventory_data(client_dir: Path) -> dict | None:
    """The folder's YAML hosts file; None when there is none we can read (ansible reports a bad one)."""
    for name in _INVENTORY_NAMES:
        path = client_dir / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                return None
            return data if isinstance(data, dict) else None
    return None


def _declared(data: dict) -> tuple[set[str], set[str]]:
    """(groups, hosts) a YAML inventory declares, at any depth."""
    groups: set[str] = set()
    hosts: set[str] = set()
    todo = list(data.items())
    while todo:
        name, body = todo.pop()
        groups.add(str(name))
        if isinstance(body, dict):
            hosts |= {str(h) for h in body.get("hosts") or {}}
            todo += list((body.get("children") or {}).items())
    return groups, hosts


def _clients(path: str) -> list[Path]:
    return [
        Path(path, name)
        for name in sorted(os.listdir(path))
        if name not in _SKIP and not name.startswith(".") and os.path.isdir(os.path.join(path, name))
    ]


def _structure_errors(client_dir: Path) -> list[str]:
    """Problems visible from the folder alone: a leaking all/ungrouped, a wrongly named top group."""
    name = client_dir.name
    errors = []
    for entry in (
        sorted((client_dir / "group_vars").iterdir()) if (client_dir / "group_vars").is_dir() else []
    ):
        if _leaks(entry.name):
            errors.append(
                f"{entry} would apply to the hosts of every client. Move its variables to "
                f"{client_dir}/group_vars/{name}.yml (the client's own group)."
            )
    data = _inventory_data(client_dir)
    if data is None:
        return errors
    tops = list(data)
    if tops != [name]:
        errors.append(
            f"{client_dir}: the hosts file's top group is {', '.join(map(str, tops)) or 'missing'}; it must "
            f"be exactly one group named {name!r} like the folder (other groups go under its children), so "
            "that -l <client>, the preflight and the evidence agree on the client"
        )
    groups, hosts = _declared(data)
    for folder, known, what in (("group_vars", groups, "group"), ("host_vars", hosts, "host")):
        base = client_dir / folder
        for entry in sorted(base.iterdir()) if base.is_dir() else []:
            stem = _stem(entry.name)
            if stem and stem not in known and not _leaks(entry.name):
                errors.append(
                    f"{entry} sets variables for {stem!r}, which is not a {what} of client {name} (its hosts "
                    f"file): a client folder sets variables only for its own group and hosts. Move it to "
                    "the folder of the client it belongs to, or remove it"
                )
    return errors


def _client_groups(entity: Group | Host) -> set[str]:
    groups = entity.get_groups() if isinstance(entity, Host) else [entity, *entity.get_ancestors()]
    return {g.name for g in groups}


class VarsModule(HostGroupVars):
    REQUIRES_ENABLED = False

    _checked: dict[str, tuple[float, list[str]]] = {}

    def _folder_errors(self, client_dir: Path) -> list[str]:
        key = str(client_dir)
        mtime = max(
            (p.stat().st_mtime for p in (client_dir, client_dir / "group_vars") if p.exists()), default=0.0
        )
        cached = self._checked.get(key)
        if cached is None or cached[0] != mtime:
            cached = (mtime, _structure_errors(client_dir))
            self._checked[key] = cached
        return cached[1]

    def get_vars(self, loader, path, entities, cache=True):
        data: dict = {}
        if not os.path.isdir(path):
            return data
        if not isinstance(entities, list):
            entities = [entities]
        clients = _clients(path)
        names = {c.name for c in clients}
        for client_dir in clients:
            errors = self._folder_errors(client_dir)
            if errors:
                raise AnsibleError(errors[0])
        for entity in entities:
            mine = sorted(_client_groups(entity) & names)
            if len(mine) > 1:
                kind = "host" if isinstance(entity, Host) else "group"
                raise AnsibleError(
                    f"{kind} {entity.name!r} is in the groups of several client folders ({', '.join(mine)}) "
                    f"below {path}: its variables would cross between clients. Give each client its own "
                    "hosts and groups (prefix child groups with the client name)"
                )
        for client_dir in clients:
            client = client_dir.name
            for entity in entities:
                belongs = client in _client_groups(entity)
                folder = "host_vars" if isinstance(entity, Host) else "group_vars"
                if belongs:
                    continue
                for ext in _VAR_EXTS:
                    found = client_dir / folder / f"{entity.name}{ext}"
                    if found.exists():
                        raise AnsibleError(
                            f"{found} sets variables for {entity.name!r}, which is not in the group of "
                            f"client {client}: a client folder sets variables only for its own group and "
                            f"hosts. Move it to the folder of the client it belongs to, or remove it"
                        )
            data = combine_vars(data, super().get_vars(loader, str(client_dir), entities, cache=cache))
        return data
