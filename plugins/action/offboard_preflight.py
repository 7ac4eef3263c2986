# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: the guard at the top of offboard.yml.

Runs on the controller, never contacts a host. Refuses, with a message that says what to do:
no --limit; a limit selecting hosts of several clients; hosts without a client id; invalid client
variables (dates, agent products); unknown or not-yet-implemented phase tags.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
module: offboard_preflight
short_description: Refuse a run that does not target exactly one valid client
description:
  - Checks the play's limit, the selected hosts' client, the client variables and the requested tags.
  - Runs on the controller only; supports check mode (it changes nothing in any mode).
options:
  catalog_dirs:
    description: Folders of agent catalog files; their file names are the known product ids.
    type: list
    elements: path
    required: true
  implemented_phases:
    description: Phase tags that have roles; asking for another phase is refused.
    type: list
    elements: str
    required: true
"""

RETURN = r"""
client: {description: The client id the run targets, type: str, returned: success}
hosts: {description: Number of selected hosts, type: int, returned: success}
summary: {description: One line saying what the run is about to do, type: str, returned: success}
"""

PHASES = ("docs", "access", "agents", "infra")
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PreflightError(ValueError):
    """A refusal: the message says what to fix."""


def load_catalog(dirs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Product id -> catalog entry, from every <id>.yml in the catalog folders."""
    products: dict[str, dict[str, Any]] = {}
    for folder in dirs:
        if not os.path.isdir(folder):
            raise PreflightError(f"agent catalog folder {folder} does not exist")
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext not in (".yml", ".yaml") or stem == "sources":
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
            if stem in data:
                products[stem] = data[stem]
    return products


def parse_date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PreflightError(f"{name} is {value!r}: write it as an ISO date, e.g. 2026-11-30")


def validate_dates(dates: Any) -> dict[str, dt.date]:
    if not isinstance(dates, Mapping):
        raise PreflightError(
            "offboard_dates is missing: set offboard_dates.start, .contract_end and .access_revocation "
            "in the client's group_vars"
        )
    parsed = {}
    for key in ("start", "contract_end", "access_revocation"):
        if key not in dates or dates[key] in (None, ""):
            raise PreflightError(f"offboard_dates.{key} is missing: set it in the client's group_vars")
        parsed[key] = parse_date(dates[key], f"offboard_dates.{key}")
    if parsed["contract_end"] < parsed["start"]:
        raise PreflightError(
            f"offboard_dates.contract_end ({parsed['contract_end']}) is before offboard_dates.start "
            f"({parsed['start']}): fix the dates from the contract"
        )
    if not parsed["start"] <= parsed["access_revocation"] <= parsed["contract_end"]:
        raise PreflightError(
            f"offboard_dates.access_revocation ({parsed['access_revocation']}) must fall between the start "
            f"({parsed['start']}) and the contract end ({parsed['contract_end']})"
        )
    return parsed


def validate_agents(agents: Any, catalog: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Check offboard_msp_agents against the catalog; return the product ids."""
    if agents is None:
        return []
    if not isinstance(agents, list):
        raise PreflightError("offboard_msp_agents must be a list of {product: <id>, instances: [...]}")
    seen: list[str] = []
    known = ", ".join(sorted(catalog))
    for index, entry in enumerate(agents):
        where = f"offboard_msp_agents[{index}]"
        if not isinstance(entry, Mapping) or not entry.get("product"):
            raise PreflightError(f"{where} must be a mapping with a 'product' key (one of: {known})")
        product = str(entry["product"])
        unknown = set(entry) - {"product", "instances"}
        if unknown:
            raise PreflightError(f"{where} has unknown key(s) {sorted(unknown)}: only product and instances")
        if product not in catalog:
            raise PreflightError(f"{where}: unknown product {product!r}; known products: {known}")
        if product in seen:
            raise PreflightError(f"{where}: product {product!r} is listed twice; merge the entries")
        instanced = bool(catalog[product].get("instanced"))
        instances = entry.get("instances")
        if instanced:
            if not isinstance(instances, list) or not instances:
                raise PreflightError(
                    f"{where}: {product} installs one agent per server instance; list the departing MSP's "
                    "instance ids under 'instances' so that other instances (the client's, the next MSP's) "
                    "are left alone"
                )
            for inst in instances:
                if not isinstance(inst, str) or not _INSTANCE_RE.match(inst):
                    raise PreflightError(
                        f"{where}: instance id {inst!r} is not a plain id (letters, digits, .-_)"
                    )
        elif instances:
            raise PreflightError(f"{where}: {product} has no per-instance agents; remove 'instances'")
        seen.append(product)
    return seen


def validate_tags(
    run_tags: Iterable[str], implemented: Iterable[str], role_names: Iterable[str]
) -> list[str]:
    run_tags = [t for t in run_tags if t]
    implemented = list(implemented)
    allowed = set(implemented) | set(role_names) | {"all", "always", "tagged", "untagged"}
    for tag in run_tags:
        if tag in PHASES and tag not in implemented:
            raise PreflightError(
                f"phase '{tag}' has no automation in this version yet; implemented phases: "
                f"{', '.join(implemented)}"
            )
        if tag not in allowed:
            raise PreflightError(
                f"unknown tag '{tag}': use a phase ({', '.join(implemented)}) or a role name "
                f"({', '.join(sorted(role_names))})"
            )
    return run_tags


def check(task_vars: Mapping[str, Any], catalog_dirs: list[str], implemented: list[str]) -> dict[str, Any]:
    """All preflight checks over the play's variables; raises PreflightError on the first refusal."""
    hostvars = task_vars["hostvars"]
    all_hosts = list(task_vars.get("groups", {}).get("all", []))

    def client_of(host: str) -> str | None:
        value = hostvars[host].get("offboard_client_id")
        return str(value) if value else None

    known_clients = sorted({c for c in (client_of(h) for h in all_hosts) if c})
    limit = task_vars.get("ansible_limit")
    if not limit:
        raise PreflightError(
            "no --limit given: an offboarding targets exactly one client. Run with -l <client> "
            f"(clients in this inventory: {', '.join(known_clients) or 'none'})"
        )
    selected = list(task_vars.get("ansible_play_hosts_all") or [])
    if not selected:
        raise PreflightError(f"the limit {limit!r} selects no host: check the client name")
    without = [h for h in selected if not client_of(h)]
    if without:
        raise PreflightError(
            f"host(s) {', '.join(sorted(without)[:10])} have no offboard_client_id: every host must "
            "belong to a client folder inventories/<client>/ whose group_vars set offboard_client_id"
        )
    by_client: dict[str, int] = {}
    for host in selected:
        by_client[client_of(host)] = by_client.get(client_of(host), 0) + 1  # type: ignore[index]
    if len(by_client) > 1:
        spread = ", ".join(f"{c} ({n} hosts)" for c, n in sorted(by_client.items()))
        raise PreflightError(
            f"the limit {limit!r} selects hosts of more than one client: {spread}. "
            "Offboard one client per run: -l <client>"
        )
    client = next(iter(by_client))
    groups = task_vars.get("groups", {})
    if client not in groups:
        raise PreflightError(
            f"client {client!r} has no inventory group of that name: name the top group in "
            f"inventories/{client}/hosts.yml '{client}'"
        )
    outside = [h for h in selected if h not in groups[client]]
    if outside:
        raise PreflightError(
            f"host(s) {', '.join(outside[:10])} claim client {client!r} but are not in its group: "
            "fix their offboard_client_id or move them into the client's inventory"
        )
    first = hostvars[selected[0]]
    dates = validate_dates(first.get("offboard_dates"))
    catalog = load_catalog(catalog_dirs)
    products = validate_agents(first.get("offboard_msp_agents"), catalog)
    roles_dir = os.path.normpath(os.path.join(catalog_dirs[0], "..", "..", ".."))
    role_names = sorted(n for n in os.listdir(roles_dir) if os.path.isdir(os.path.join(roles_dir, n)))
    tags = validate_tags(task_vars.get("ansible_run_tags") or ["all"], implemented, role_names)
    check_mode = bool(task_vars.get("ansible_check_mode"))
    mode = "CHECK MODE (rehearsal: nothing will change)" if check_mode else "LIVE (changes will be made)"
    summary = (
        f"client {client} ({first.get('offboard_client_name', client)}): {len(selected)} host(s), "
        f"tags {','.join(tags)}, {mode}; dates start {dates['start']}, contract end "
        f"{dates['contract_end']}, access revocation {dates['access_revocation']}; "
        f"MSP agents in scope: {', '.join(products) or 'none'}"
    )
    return {
        "client": client,
        "hosts": len(selected),
        "tags": tags,
        "check_mode": check_mode,
        "products": products,
        "summary": summary,
    }


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("catalog_dirs", "implemented_phases"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            result.update(
                check(task_vars or {}, list(args["catalog_dirs"]), list(args["implemented_phases"]))
            )
        except PreflightError as exc:
            raise AnsibleActionFail(f"REFUSED before any change: {exc}") from None
        result["changed"] = False
        return result
