# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: the guard at the top of offboard.yml.

Runs on the controller, never contacts a host. Refuses, with a message that says what to do:
no --limit; a limit selecting hosts of several clients; hosts without a client id; invalid client
variables (dates, agent products); unknown or not-yet-implemented phase tags.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.offboard.msp.plugins.action import offboard_agents_preflight
from ansible_collections.offboard.msp.plugins.filter import gpo as gpo_filter
from ansible_collections.offboard.msp.plugins.module_utils import (
    offboard_guard,
    offboard_paths,
    offboard_products,
)
from ansible_collections.offboard.msp.plugins.module_utils.offboard_vocabulary import PHASES

DOCUMENTATION = r"""
module: offboard_preflight
short_description: Refuse a run that does not target exactly one valid client
description:
  - Checks the play's limit, the selected hosts' client, the client variables and the requested tags.
  - Runs on the controller only; supports check mode (it changes nothing in any mode).
  - The agent roles (the roles of the project's agents play) are asked where their catalogs are; each declares
    C(__<role>_catalog_dir) in its vars/main.yml. The catalogs' file names are the known product ids.
options:
  implemented_phases:
    description:
      - Phase tags that have roles; asking for another phase is refused.
      - Default, every phase of the record vocabulary (module_utils offboard_vocabulary PHASES).
    type: list
    elements: str
    required: false
"""

RETURN = r"""
client: {description: The client id the run targets, type: str, returned: success}
hosts: {description: Number of selected hosts, type: int, returned: success}
summary: {description: One line saying what the run is about to do, type: str, returned: success}
"""

CLIENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
OVERRIDE_KEYS = ("reason", "approved_by")
AGENTS_VARS = (
    offboard_products.NEW,
    "offboard_msp_agents",
    "offboard_security",
    "offboard_backup_terms",
    "offboard_msp_footprint",
    "offboard_gpo",
)
FNMATCH_FIELDS = ("account_patterns", "ssh_key_comment_patterns", "sudoers_patterns")
CHECKED_VARS = (
    "offboard_dates",
    "offboard_contract_end_override",
    "offboard_msp_access",
    *AGENTS_VARS,
    "offboard_security_uninstall_codes",
)
DEFAULT_TIMEOUT = 60.0
MAX_SCAN = 5000
# libyaml where PyYAML has it (about ten times faster); the same safe loading either way.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PreflightError(ValueError):
    """A refusal: the message says what to fix."""


@functools.lru_cache(maxsize=256)
def catalog_entry(folder: str, product: str) -> Mapping[str, Any]:
    """One product's catalog entry (its <id>.yml), read only for the products a client lists (libyaml)."""
    for ext in (".yml", ".yaml"):
        path = os.path.join(folder, product + ext)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                data = yaml.load(handle, Loader=_SAFE_LOADER) or {}
            entry = data.get(product) if isinstance(data, Mapping) else None
            return entry if isinstance(entry, Mapping) else {}
    return {}


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


def validate_products(hv: Mapping[str, Any], catalogs: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The client's MSP products checked against the agent roles' catalogs: (product ids, warnings).

    `catalogs` maps each agent role to its catalog folder (the product ids are its file names).
    offboard_msp_products holds every product; the old inputs (offboard_products.LEGACY) are still read,
    each with a warning, and only for their own role's products.
    """
    ids = offboard_products.catalog_ids
    owner = {product: role for role, folder in catalogs.items() for product in ids(folder)}
    known = ", ".join(sorted(owner)) or "none (no agent role with a catalog in this project)"
    # (name, value, the role an old input was for, its warning, bare ids allowed: the old lists of names)
    sources: list[tuple[str, Any, str | None, str, bool]] = [
        (offboard_products.NEW, hv.get(offboard_products.NEW), None, "", False)
    ]
    for var, key, role in offboard_products.LEGACY:
        sources.append(
            (
                offboard_products.legacy_name(var, key),
                offboard_products.legacy_value(hv, var, key),
                role,
                offboard_products.legacy_warning(var, key),
                key is not None,
            )
        )
    seen: list[str] = []
    warnings: list[str] = []
    for name, value, role, warning, names_allowed in sources:
        if value is None:
            continue
        if warning:
            warnings.append(warning)
        if not isinstance(value, list):
            raise PreflightError(f"{name} must be a list of {{product: <id>, instances: [...]}}")
        for index, raw in enumerate(value):
            where = f"{name}[{index}]"
            item = offboard_products.entry(raw) if names_allowed else raw
            if not isinstance(item, Mapping) or not item.get("product"):
                raise PreflightError(f"{where} must be a mapping with a 'product' key (one of: {known})")
            product = str(item["product"])
            unknown = set(item) - set(offboard_products.ENTRY_KEYS)
            if unknown:
                raise PreflightError(
                    f"{where} has unknown key(s) {sorted(unknown)}: only product and instances"
                )
            if product not in owner:
                raise PreflightError(f"{where}: unknown product {product!r}; known products: {known}")
            if role is not None and owner[product] != role:
                raise PreflightError(
                    f"{where}: {product} is not a product of {role} ({owner[product]} removes it): "
                    f"list it in {offboard_products.NEW}"
                )
            if product in seen:
                raise PreflightError(f"{where}: product {product!r} is listed twice; merge the entries")
            spec = catalog_entry(catalogs[owner[product]], product)
            _check_instances(where, product, spec, item.get("instances"))
            seen.append(product)
    return seen, warnings


def _check_instances(where: str, product: str, spec: Mapping[str, Any], instances: Any) -> None:
    if spec.get("instanced"):
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


def agent_catalogs(project: str, search: Iterable[str], roles: Mapping[str, str]) -> dict[str, str]:
    """Agent role -> its catalog folder, for the roles of the project's agents play that declare one.

    Each role is found by name on the role search path, as Ansible finds it, and asked where its catalog
    is (offboard_products.role_catalog_dir: its own vars/main.yml), so no path is written here.
    """
    catalogs: dict[str, str] = {}
    for role, phase in roles.items():
        path = offboard_products.find_role(role, search) if phase == "agents" else None
        folder = offboard_products.role_catalog_dir(role, path) if path else None
        if folder:
            catalogs[role] = folder
    return catalogs


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


def role_phases(project: str) -> dict[str, str]:
    """Role name -> phase, from the phase plays of playbooks/*.yml (offboard_phase)."""
    found: dict[str, str] = {}
    for path in sorted(Path(project, "playbooks").glob("*.yml")):
        try:
            plays = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError):
            continue
        for play in plays if isinstance(plays, list) else []:
            phase = ((play or {}).get("vars") or {}).get("offboard_phase") if isinstance(play, dict) else None
            if phase not in PHASES:
                continue
            for role in play.get("roles") or []:
                name = role.get("role") if isinstance(role, Mapping) else role
                if isinstance(name, str):
                    found.setdefault(name, phase)
    return found


def selected_phases(
    run_tags: Iterable[str], skip_tags: Iterable[str], implemented: Iterable[str], roles: Mapping[str, str]
) -> list[str]:
    """The phases whose roles this run executes (by phase or role tag), minus the skipped ones."""
    implemented = [p for p in PHASES if p in implemented]
    run_tags = [t for t in run_tags if t]
    if not run_tags or {"all", "untagged", "tagged"} & set(run_tags):
        chosen = set(implemented)
    else:
        chosen = {t for t in run_tags if t in implemented} | {roles[t] for t in run_tags if t in roles}
    skipped = set(skip_tags)
    return [p for p in implemented if p in chosen and p not in skipped]


def validate_contract_end(dates: Mapping[str, dt.date], override: Any, today: dt.date) -> dict[str, str]:
    """contract_end in the past needs offboard_contract_end_override {reason, approved_by} (recorded)."""
    if dates["contract_end"] >= today:
        return {}
    if isinstance(override, Mapping) and all(str(override.get(k) or "").strip() for k in OVERRIDE_KEYS):
        return {k: str(override[k]).strip() for k in OVERRIDE_KEYS}
    raise PreflightError(
        f"offboard_dates.contract_end ({dates['contract_end']}) is in the past (today is {today}, UTC): "
        "check the dates, or set offboard_contract_end_override: {reason: ..., approved_by: ...} "
        "(both are recorded in the evidence)"
    )


def phase_problems(hv: Mapping[str, Any], phases: list[str]) -> tuple[list[str], list[str]]:
    """(missing variables, invalid values) of the selected phases for one host's variables."""
    missing: list[str] = []
    bad: list[str] = []
    if "access" in phases:
        access = hv.get("offboard_msp_access")
        if not isinstance(access, Mapping) or not isinstance(access.get("accounts"), list):
            missing.append("offboard_msp_access (with accounts: the documented list, see docs/access.md)")
        else:
            for field in FNMATCH_FIELDS:
                for index, pattern in enumerate(access.get(field) or []):
                    reason = offboard_paths.pattern_reason(pattern, "fnmatch")
                    if reason:
                        bad.append(f"offboard_msp_access.{field}[{index}] {pattern!r} {reason}")
            directory = access.get("directory") or {}
            for index, pattern in enumerate(
                directory.get("account_patterns") or [] if isinstance(directory, Mapping) else []
            ):
                reason = offboard_paths.pattern_reason(pattern, "fnmatch")
                if reason:
                    bad.append(
                        f"offboard_msp_access.directory.account_patterns[{index}] {pattern!r} {reason}"
                    )
    if "agents" in phases and all(hv.get(name) is None for name in AGENTS_VARS):
        missing.append(f"one of {', '.join(AGENTS_VARS)} (what the agents phase removes)")
    return missing, bad


def agents_problems(
    hv: Mapping[str, Any], catalogs: Mapping[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """One host's agents-phase values: (invalid values, the MSP's product ids, warnings).

    Checked: the products against the agent roles' catalogs, the security and backup terms, the
    footprint patterns and folders, the GPO patterns.
    """
    bad: list[str] = []
    products: list[str] = []
    warnings: list[str] = []
    try:
        products, warnings = validate_products(hv, catalogs)
    except PreflightError as exc:
        bad.append(str(exc))
    try:
        offboard_agents_preflight.check(hv)
    except offboard_agents_preflight.PreflightError as exc:
        bad.append(str(exc))
    gpo = hv.get("offboard_gpo")
    if gpo is not None:
        try:
            gpo_filter.offboard_gpo_check(gpo)
        except Exception as exc:  # AnsibleFilterError from the role's own check
            bad.append(str(exc))
    return bad, products, warnings


def check(
    task_vars: Mapping[str, Any],
    project: str,
    implemented: list[str],
    *,
    roles_path: Iterable[str] = (),
    today: dt.date | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """All preflight checks over the play's variables; raises PreflightError naming what to fix.

    Every selected host's effective variables are checked (identical values once); the problems of all
    hosts are reported together. Bounded by `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    today = today or dt.datetime.now(dt.UTC).date()
    env = os.environ if env is None else env
    hostvars = task_vars["hostvars"]
    all_hosts = list(task_vars.get("groups", {}).get("all", []))
    limit = task_vars.get("ansible_limit")
    selected = list(task_vars.get("ansible_play_hosts_all") or [])

    def client_of(host: str) -> str | None:
        value = hostvars[host].get("offboard_client_id")
        return str(value) if value else None

    if not limit:
        clients = sorted({c for c in (client_of(h) for h in all_hosts[:MAX_SCAN]) if c})
        raise PreflightError(
            "no --limit given: an offboarding targets exactly one client. Run with -l <client> "
            f"(clients in this inventory: {', '.join(clients) or 'none'})"
        )
    if not selected:
        raise PreflightError(f"the limit {limit!r} selects no host: check the client name")
    by_client: dict[str, int] = {}
    without = []
    for index, host in enumerate(selected):
        if index % 256 == 0 and time.monotonic() > deadline:
            raise PreflightError(_too_slow(timeout, index, len(selected)))
        client = client_of(host)
        if not client:
            without.append(host)
        else:
            by_client[client] = by_client.get(client, 0) + 1
    if without:
        raise PreflightError(
            f"host(s) {', '.join(sorted(without)[:10])} have no offboard_client_id: every host must "
            "belong to a client folder inventories/<client>/ whose group_vars set offboard_client_id"
        )
    if len(by_client) > 1:
        spread = ", ".join(f"{c} ({n} hosts)" for c, n in sorted(by_client.items()))
        raise PreflightError(
            f"the limit {limit!r} selects hosts of more than one client: {spread}. "
            "Offboard one client per run: -l <client>"
        )
    client = next(iter(by_client))
    if not CLIENT_RE.match(client):
        raise PreflightError(
            f"offboard_client_id {client!r} is not a client name: lower-case letters, digits, - and _ "
            "(it names the client's folder and its evidence)"
        )
    groups = task_vars.get("groups", {})
    if client not in groups:
        raise PreflightError(
            f"client {client!r} has no inventory group of that name: name the top group in "
            f"inventories/{client}/hosts.yml '{client}'"
        )
    members = set(groups[client])
    outside = [h for h in selected if h not in members]
    if outside:
        raise PreflightError(
            f"host(s) {', '.join(outside[:10])} claim client {client!r} but are not in its group: "
            "fix their offboard_client_id or move them into the client's inventory"
        )
    check_env(env, client)
    search = [os.path.join(project, "roles"), *roles_path]
    roles = role_phases(project)
    role_names = sorted(
        set(roles) | {n for n in _listdir(search[0]) if os.path.isdir(os.path.join(search[0], n))}
    )
    tags = validate_tags(task_vars.get("ansible_run_tags") or ["all"], implemented, role_names)
    # A phase counts when the project has a play for it (a trimmed project may have fewer).
    playable = [p for p in implemented if p in set(roles.values())] or list(implemented)
    phases = selected_phases(tags, task_vars.get("ansible_skip_tags") or [], playable, roles)
    catalogs = agent_catalogs(project, search, roles) if "agents" in phases else {}

    problems: dict[str, list[str]] = {}  # message -> hosts
    missing: dict[str, list[str]] = {}  # variable -> hosts
    seen: dict[str, tuple[list[str], list[str]]] = {}
    first_dates: dict[str, dt.date] | None = None
    overrides: dict[str, str] = {}
    products: list[str] = []
    warnings: list[str] = []
    for index, host in enumerate(selected):
        if time.monotonic() > deadline:
            raise PreflightError(_too_slow(timeout, index, len(selected)))
        hv = hostvars[host]
        values = {name: hv.get(name) for name in CHECKED_VARS}
        key = json.dumps(values, sort_keys=True, default=str)
        if key not in seen:
            bad: list[str] = []
            try:
                dates = validate_dates(values["offboard_dates"])
                used = validate_contract_end(dates, values["offboard_contract_end_override"], today)
                if first_dates is None:
                    first_dates, overrides = dates, used
            except PreflightError as exc:
                bad.append(str(exc))
            lacking, invalid = phase_problems(values, phases)
            bad += invalid
            if "agents" in phases:
                invalid, found, warned = agents_problems(values, catalogs)
                bad += invalid
                products = products or found
                warnings += [w for w in warned if w not in warnings]
            seen[key] = (lacking, bad)
        lacking, bad = seen[key]
        for name in lacking:
            missing.setdefault(name, []).append(host)
        for message in bad:
            problems.setdefault(message, []).append(host)
    if missing or problems:
        lines = []
        if missing:
            lines.append(f"the selected phase(s) {', '.join(phases)} need variables that are not set:")
            lines += [f"  - {name} (on {_hosts(hosts, len(selected))})" for name, hosts in missing.items()]
        if problems:
            lines.append(f"client {client}'s variables are refused:")
        lines += [f"  - {message} (on {_hosts(hosts, len(selected))})" for message, hosts in problems.items()]
        lines.append(f"Set or fix them in inventories/{client}/ (group_vars/{client}.yml or host_vars/).")
        raise PreflightError("\n".join(lines))
    assert first_dates is not None
    check_mode = bool(task_vars.get("ansible_check_mode"))
    mode = "CHECK MODE (rehearsal: nothing will change)" if check_mode else "LIVE (changes will be made)"
    summary = (
        f"client {client} ({hostvars[selected[0]].get('offboard_client_name', client)}): "
        f"{len(selected)} host(s), phases {','.join(phases) or 'none'}, tags {','.join(tags)}, {mode}; "
        f"dates start {first_dates['start']}, contract end {first_dates['contract_end']}, access revocation "
        f"{first_dates['access_revocation']}; MSP agents in scope: {', '.join(products) or 'none'}"
        + (
            f"; contract end OVERRIDDEN by {overrides['approved_by']}: {overrides['reason']}"
            if overrides
            else ""
        )
    )
    return {
        "client": client,
        "hosts": len(selected),
        "host_names": selected,
        "phases": phases,
        "tags": tags,
        "check_mode": check_mode,
        "products": products,
        "warnings": warnings,
        "contract_end_override": overrides,
        "summary": summary,
    }


def check_env(env: Mapping[str, str], client: str) -> None:
    """The environment cannot send this run's evidence to another client or outside the store."""
    named = env.get("OFFBOARD_CLIENT")
    if named and named != client:
        raise PreflightError(
            f"OFFBOARD_CLIENT={named!r} but the limit selects client {client!r}: unset OFFBOARD_CLIENT "
            "(a run's evidence always goes to the client the preflight validated)"
        )
    run_dir = env.get("OFFBOARD_EVIDENCE_RUN_DIR")
    if run_dir:
        path = Path(run_dir)
        if named != client or path.parent.name != client or path.name != env.get("OFFBOARD_RUN_ID"):
            raise PreflightError(
                f"OFFBOARD_EVIDENCE_RUN_DIR={run_dir!r} is not a run folder of client {client!r} set by the "
                "offboard wrapper: unset OFFBOARD_EVIDENCE_RUN_DIR, OFFBOARD_RUN_ID and OFFBOARD_CLIENT, or "
                f"use `offboard run {client}`"
            )


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _hosts(hosts: list[str], total: int) -> str:
    if len(hosts) == total and total > 1:
        return f"all {total} hosts"
    return ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")


def _too_slow(timeout: float, done: int, total: int) -> str:
    return (
        f"the preflight did not finish within {timeout:g} s ({done} of {total} hosts checked): the inventory "
        "is too large or its variables too costly to evaluate. Split the client's inventory, simplify "
        "templated variables, or raise OFFBOARD_PREFLIGHT_TIMEOUT (seconds)"
    )


class _Overrun(Exception):
    pass


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("implemented_phases",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            timeout = float(os.environ.get("OFFBOARD_PREFLIGHT_TIMEOUT") or DEFAULT_TIMEOUT)
        except ValueError:
            timeout = DEFAULT_TIMEOUT

        def overrun(signum: int, frame: Any) -> None:
            raise _Overrun

        # A hard stop a little after the soft deadline, for time spent inside one host's variables.
        previous = signal.signal(signal.SIGALRM, overrun)
        signal.setitimer(signal.ITIMER_REAL, timeout + 5)
        try:
            outcome = check(
                task_vars or {},
                # The project: this task's playbook lies in its playbooks/ folder.
                os.path.dirname(os.path.dirname(self._task.get_path().rpartition(":")[0])),
                list(args.get("implemented_phases") or PHASES),
                roles_path=C.DEFAULT_ROLES_PATH or (),
                timeout=timeout,
            )
        except PreflightError as exc:
            raise AnsibleActionFail(f"REFUSED before any change: {exc}") from None
        except _Overrun:
            raise AnsibleActionFail(f"REFUSED before any change: {_too_slow(timeout + 5, 0, 0)}") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        # The proof for the phase plays (their hosts: lookup) and the evidence callback: this
        # ansible-playbook process (our parent: tasks run in forks of it) passed its preflight.
        token = offboard_guard.write_token(
            os.getppid(),
            {
                "client": outcome["client"],
                "hosts": outcome["host_names"],
                "phases": outcome["phases"],
                "contract_end_override": outcome["contract_end_override"],
            },
        )
        result.update(outcome)
        result["token"] = str(token)
        result["changed"] = False
        return result
