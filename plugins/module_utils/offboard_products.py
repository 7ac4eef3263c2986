# Copyright: the offboard project contributors
# Apache-2.0
"""The client's MSP products: one input shape for the three agent roles, the old names still read.

A client lists every product the departing MSP installed in ONE variable, whatever its kind (RMM, remote
access, AV/EDR, backup):

    offboard_msp_products:
      - product: ninjaone
      - product: screenconnect
        instances: [a1b2c3d4e5f60718]
      - product: sentinelone
      - product: veeam_agent

Each agent role takes the entries whose product is in its own catalog. Before this shape, the same facts
were given in three places and two shapes; those names are still read, each with a warning that says
where the entries go now (LEGACY). The preflight (plugins/action/offboard_preflight.py) checks all of it
against the catalogs, and the roles' defaults select through the filter offboard_products_in.

Also here: how a role says where its catalog is. The agent roles declare `__<role>_catalog_dir` in their
vars/main.yml (`{{ role_path }}/...`, the value the role itself uses); the preflight reads that
declaration, so no playbook or wrapper writes a role's folder layout.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

NEW = "offboard_msp_products"
ENTRY_KEYS = ("product", "instances")

# (client variable, key inside it or None for the variable itself, the role that read it): the old inputs.
LEGACY: tuple[tuple[str, str | None, str], ...] = (
    ("offboard_msp_agents", None, "rmm_agent_removal"),
    ("offboard_security", "msp_products", "security_software_transition"),
    ("offboard_backup_terms", "msp_products", "backup_agent_removal"),
)


def legacy_name(var: str, key: str | None) -> str:
    return f"{var}.{key}" if key else var


def legacy_value(hostvars: Mapping[str, Any], var: str, key: str | None) -> Any:
    """The old input's value in these variables, or None when it is not set."""
    value = hostvars.get(var)
    if key is None or value is None:
        return value
    return value.get(key) if isinstance(value, Mapping) else None


def legacy_warning(var: str, key: str | None) -> str:
    how = "rename it" if key is None else "move its entries there as {product: <id>}"
    return (
        f"{legacy_name(var, key)} is the old name of the MSP's products: {how} to {NEW} (one list for every "
        "agent role). It is still read for now."
    )


def entry(value: Any) -> Any:
    """One product entry in the one shape: a bare id (old lists of names) becomes {product: id}."""
    return {"product": value} if isinstance(value, str) else value


@functools.lru_cache(maxsize=32)
def catalog_ids(folder: str) -> frozenset[str]:
    """The product ids of a catalog folder: its <id>.yml files (sources.yml lists the sources)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return frozenset()
    return frozenset(
        stem for stem, ext in map(os.path.splitext, names) if ext in (".yml", ".yaml") and stem != "sources"
    )


def products_in(entries: Iterable[Any] | None, folder: str, legacy: Iterable[Any] | None = None) -> list[Any]:
    """The entries (one shape) that belong to this catalog, then the role's old input (all of it).

    A well-formed entry of another catalog's product is left out. A malformed entry, and the old input
    whole, are passed on: the role's argument check and the engine refuse what is wrong (the preflight
    has refused it already, before any host).
    """
    ids = catalog_ids(folder)
    mine = []
    for item in entries or []:
        product = item.get("product") if isinstance(item, Mapping) else None
        if not isinstance(product, str) or product in ids:
            mine.append(item)
    return mine + [entry(value) for value in legacy or []]


def role_catalog_dir(role: str, role_path: str) -> str | None:
    """Where the role says its catalog is (`__<role>_catalog_dir` in its vars/main.yml), or None."""
    try:
        with open(os.path.join(role_path, "vars", "main.yml"), encoding="utf-8") as handle:
            declared = (yaml.safe_load(handle) or {}).get(f"__{role}_catalog_dir")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    if not isinstance(declared, str):
        return None
    # The role's own value is "{{ role_path }}/<folder>": the one variable it may use, resolved here as
    # Ansible resolves it when the role runs.
    folder = declared.replace("{{ role_path }}", role_path)
    return None if "{{" in folder else os.path.normpath(folder)


def find_role(role: str, search: Iterable[str]) -> str | None:
    """The first folder named role under the search paths (as Ansible finds a role by name)."""
    for base in search:
        path = os.path.join(base, role)
        if os.path.isdir(path):
            return path
    return None
