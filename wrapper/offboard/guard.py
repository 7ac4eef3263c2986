"""The playbook's preflight checks, run by the wrapper before it probes any host.

`offboard run` must not touch a host (not even an SSH banner) for a client whose variables the playbook's
guard would refuse. This runs the very checks of plugins/action/offboard_preflight.py in this process,
over the client's inventory as Ansible loads it (same vars plugins, same group_vars, templated), with
the limit and tags the run will use. The playbook's own preflight still runs (and decides) in the run.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from offboard.inventory import ClientInventory, playbook_phases


class _LazyHostVars(Mapping[str, Any]):
    """One host's variables, templated when read (the preflight reads only a few)."""

    def __init__(self, raw: Mapping[str, Any], templar: Any) -> None:
        self._raw = raw
        self._templar = templar

    def __getitem__(self, key: str) -> Any:
        return self._templar.template(self._raw[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _preflight_module(project: Path) -> Any:
    path = project / "plugins" / "action" / "offboard_preflight.py"
    name = f"offboard_wrapper_preflight_{abs(hash(str(path)))}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def validate(
    inv: ClientInventory,
    project: Path,
    limit: str | None,
    tags: list[str],
    check: bool,
    warn: Callable[[str], None] | None = None,
) -> str | None:
    """The preflight's refusal for this run (what to fix), or None when it would pass.

    What the preflight warns about (old client-variable names, still read) goes to `warn`.
    """
    path = project / "plugins" / "action" / "offboard_preflight.py"
    if not path.is_file():
        return f"{path} is missing: the run cannot be validated, so it is not started"
    from ansible.errors import AnsibleError

    from offboard.inventory import open_ansible

    try:
        ansible = open_ansible(project, inv.path)
        manager, variables = ansible.manager, ansible.variables
        everyone = [h.name for h in manager.get_hosts("all", ignore_restrictions=True)]
        manager.subset(limit or inv.client)
        selected = [h.name for h in manager.get_hosts("all")]
        hostvars: dict[str, Any] = {}
        for host in manager.get_hosts("all", ignore_restrictions=True):
            raw = variables.get_vars(host=host, include_hostvars=False)
            hostvars[host.name] = _LazyHostVars(raw, ansible.templar(raw))
        groups = {name: [h.name for h in group.get_hosts()] for name, group in manager.groups.items()}
        groups["all"] = everyone
    except AnsibleError as exc:
        return f"cannot load inventory {inv.path}: {exc}"
    # After open_ansible set up the collection loader: the preflight imports its checks as
    # ansible_collections.offboard.msp.*.
    module = _preflight_module(project)
    task_vars = {
        "hostvars": hostvars,
        "groups": groups,
        "ansible_limit": limit or inv.client,
        "ansible_play_hosts_all": selected,
        "ansible_run_tags": tags or ["all"],
        "ansible_skip_tags": [],
        "ansible_check_mode": check,
    }
    try:
        # The agent roles are asked where their catalogs are, as the playbook's preflight asks them.
        outcome = module.check(
            task_vars, str(project), playbook_phases(project), env={"OFFBOARD_CLIENT": inv.client}
        )
    except module.PreflightError as exc:
        return str(exc)
    except AnsibleError as exc:
        return f"a client variable cannot be evaluated: {exc}"
    for message in outcome.get("warnings") or []:
        if warn is not None:
            warn(message)
    return None
