# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: the footprint engine shared by the three agent roles (RMM, backup, security software).

Per host and role: load the catalog, build the items in scope, run ONE discovery (agent_footprint on
Linux/macOS, win_agent_footprint on Windows), then ONE removal call per product actually found (the
module removes in layers and re-probes the whole derived set), and emit one evidence record per product.
Products not present cost nothing per product. Role-specific parts are hooks given as arguments: a guard
that refuses every found product (security: replacement coverage), codes that must be present for
tamper-protected products (security), extra `before` fields (security: the replacement record).
The records go out in `results[*].offboard_record`, where the offboard_evidence callback picks them up.
With `fail_on_error`, a product that could not be removed fails the task (after every product was processed,
with all the records), so a role needs no separate report task (a worker per host even when it skips).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

import yaml
from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.offboard.msp.plugins.action import offboard_record as _record
from ansible_collections.offboard.msp.plugins.filter import agents as _scope
from ansible_collections.offboard.msp.plugins.filter import agents_guards as _guards
from ansible_collections.offboard.msp.plugins.module_utils.offboard_os_facts import os_facts

DOCUMENTATION = r"""
module: offboard_agent_engine
short_description: Discover, remove (in layers), verify and record an MSP's agents on one host
description:
  - Loads the role's catalog, builds the products in scope for the host's OS, discovers all of them in
    one module call, removes each product found with one module call (state=absent), records one
    evidence record per product. Check mode discovers only and records C(would_remove).
  - C(verified_absent) is recorded only when the module's final re-probe of the whole derived set is empty;
    otherwise the product is C(failed) and the record names what remains.
options:
  component: {description: Record component (rmm_agent, backup_agent, security_agent)., type: str}
  catalog_dir: {description: Folder of the role's catalog files (one product per file)., type: path}
  products: {description: The MSP's products (catalog ids; instances for per-instance tools)., type: list}
  category_order: {description: Categories in removal order (e.g. remote_access before rmm)., type: list}
  timeout: {description: Upper bound in seconds for one uninstaller or package-manager call., type: int}
  secrets_var:
    description: Name of a variable holding product id -> uninstall code (read here, so that no code is
      ever a task argument; the task needs no no_log, and its records are kept).
    type: str
  secret_vars: {description: Product id -> name of a variable holding that product's code., type: dict}
  remove_leftovers: {description: Delete the vendor's paths in the forced layer., type: bool}
  refusal: {description: Guard text; when not empty every found product is refused with it., type: str}
  require_secrets: {description: Refuse found products whose uninstaller needs a code not given., type: bool}
  before_extra: {description: Fields added to the C(before) of every found product's record., type: dict}
"""

RETURN = r"""
items: {description: the module's per-product results (discovery, and removal where run), type: list}
results: {description: one entry per product with its offboard_record, type: list}
failed_items: {description: keys of the products that could not be removed, type: list}
"""

_ARGS = frozenset(
    (
        "component",
        "catalog_dir",
        "products",
        "category_order",
        "timeout",
        "secrets_var",
        "secret_vars",
        "remove_leftovers",
        "refusal",
        "require_secrets",
        "before_extra",
        "fail_on_error",
    )
)
VERIFY_POSIX = (
    "re-probe of the whole derived set: packages (named and owning a vendor file), systemd units (named and "
    "any whose Exec/WorkingDirectory points into a vendor path), init.d/rc.local/cron/launchd entries, "
    "processes by executable, vendor paths"
)
VERIFY_WINDOWS = (
    "re-probe of the whole derived set: services (named and by image path), scheduled tasks, Run keys, "
    "uninstall entries pointing into a vendor folder, processes by image path, vendor paths and registry keys"
)


def _names(entries: list[Any], field: str = "name") -> list[str]:
    out: list[str] = []
    for entry in entries or []:
        value = entry.get(field) if isinstance(entry, Mapping) else entry
        if value is not None and str(value) not in out:
            out.append(str(value))
    return out


def summary(footprint: Mapping[str, Any] | None) -> dict[str, Any]:
    """The record's view of a footprint: names only, non-empty kinds only."""
    fp = footprint or {}
    view = {
        "packages": _names(fp.get("packages")),
        "services": _names(fp.get("services")),
        "processes": _names(fp.get("processes")),
        "paths": [str(p) for p in fp.get("paths") or []],
        "startup": [f"{e.get('kind')}: {e.get('where')}: {e.get('entry')}" for e in fp.get("startup") or []],
        "kernel_modules": _names(fp.get("kernel_modules")),
        "registry": [
            str(r.get("key", r)) if isinstance(r, Mapping) else str(r) for r in fp.get("registry") or []
        ],
        "uninstall_entries": _names(fp.get("uninstall_entries"), "display_name"),
    }
    return {k: v for k, v in view.items() if v}


def derived(footprint: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Every derived entry of a footprint: what it is and what pointed to it."""
    out = []
    for kind in ("packages", "services", "processes", "startup", "uninstall_entries"):
        for entry in (footprint or {}).get(kind) or []:
            if isinstance(entry, Mapping) and entry.get("derived_from"):
                name = (
                    entry.get("name") or entry.get("display_name") or entry.get("where") or entry.get("pid")
                )
                out.append({"kind": kind, "name": str(name), "derived_from": str(entry["derived_from"])})
    return out


def outcome(found: Mapping[str, Any], removal: Mapping[str, Any] | None, check_mode: bool) -> dict[str, Any]:
    """Action, verification result and error for one product, from the module's results only.

    `verified_absent` needs a removal whose final re-probe of the whole derived set is empty: the
    module's own `verified_absent` flag AND an empty `remaining` (either one alone is not trusted).
    """
    if not found.get("found"):
        return {"action": "none", "result": "verified_absent", "error": None}
    if check_mode:
        return {"action": "would_remove", "result": "not_verified", "error": None}
    if not removal:
        return {"action": "failed", "result": "not_verified", "error": "no removal result from the host"}
    remaining = summary(removal.get("remaining"))
    if removal.get("verified_absent") is True and not remaining:
        return {"action": "removed", "result": "verified_absent", "error": None}
    tried = ", ".join(a.get("method", "?") for a in removal.get("attempts") or []) or "nothing"
    left = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in remaining.items()) or "unknown"
    return {
        "action": "failed",
        "result": "still_present",
        "error": f"still present after {tried}: {left}"[:1500],
    }


def uninstaller_rc(removal: Mapping[str, Any] | None) -> int | None:
    rcs = [
        a.get("rc") for a in (removal or {}).get("attempts") or [] if a.get("method") == "vendor_uninstaller"
    ]
    return rcs[-1] if rcs else None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        unknown = set(args) - _ARGS
        if unknown:
            raise AnsibleActionFail(
                f"offboard_agent_engine: unknown argument(s) {', '.join(sorted(unknown))}"
            )
        component = str(args.get("component") or "")
        if not component:
            raise AnsibleActionFail("offboard_agent_engine: 'component' is required")
        check_mode = bool(self._task.check_mode or task_vars.get("ansible_check_mode"))

        facts, setup_failed = os_facts(self._execute_module, task_vars, result)
        if setup_failed:
            return setup_failed
        family = facts.get("os_family") or facts.get("ansible_os_family")
        os_key = "windows" if family == "Windows" else "macos" if family == "Darwin" else "linux"
        module_name = "win_agent_footprint" if os_key == "windows" else "agent_footprint"

        catalog = self._catalog(str(args.get("catalog_dir") or ""))
        order = args.get("category_order") or ["remote_access", "rmm"]
        try:
            items = _scope.agent_scope(args.get("products") or [], catalog, os_key, order)
        except Exception as exc:  # AnsibleFilterError: bad product id or missing instances
            raise AnsibleActionFail(f"offboard_agent_engine: {exc}") from None
        supported = [i for i in items if i.get("supported")]
        secrets = self._secrets(args, task_vars)
        timeout = int(args.get("timeout") or 300)
        extra = dict(args.get("before_extra") or {})
        records: list[dict[str, Any]] = []
        # Which products have a code (never the codes): what the guard and the removal will see.
        facts_out = {"os": os_key, "codes_for": sorted(secrets)}

        for item in items:
            if not item.get("supported"):
                records.append(
                    self._record(
                        task_vars,
                        check_mode,
                        component=component,
                        item=item["key"],
                        before={"found": False, "supported_on_os": False, "os": os_key},
                        action="none",
                        after={"found": False},
                        verification={
                            "method": "catalog",
                            "result": "not_verified",
                            "note": item.get("unsupported_reason") or "",
                        },
                    )
                )
        found_items: list[dict[str, Any]] = []
        if supported:
            discovery = self._execute_module(
                module_name=module_name,
                module_args={"items": supported, "state": "query", "timeout": timeout},
                task_vars=task_vars,
            )
            if discovery.get("unreachable"):
                return discovery
            if discovery.get("failed"):
                raise AnsibleActionFail(f"offboard_agent_engine: discovery failed: {discovery.get('msg')}")
            found_items = list(discovery.get("items") or [])
        if len(found_items) != len(supported):
            raise AnsibleActionFail("offboard_agent_engine: the module returned another number of items")

        refusals: dict[str, str] = {}
        if args.get("refusal") or args.get("require_secrets"):
            # Linux/macOS discovery names the one uninstaller it would run (needs_secret); on Windows the
            # module chooses on the host, so any catalog step taking {secret} counts (specs).
            specs = supported if os_key == "windows" else None
            refusals = _guards.security_refusals(found_items, str(args.get("refusal") or ""), secrets, specs)

        # The contract's options (items, state, timeout, secrets); remove_leftovers is agent_footprint's
        # own, passed to win_agent_footprint only when switched off.
        absent_args: dict[str, Any] = {"state": "absent", "timeout": timeout}
        if os_key != "windows" or not args.get("remove_leftovers", True):
            absent_args["remove_leftovers"] = bool(args.get("remove_leftovers", True))
        changed = False
        failed: list[str] = []
        results_out: list[dict[str, Any]] = []
        for spec, found in zip(supported, found_items, strict=True):
            key = spec["key"]
            fp = found.get("footprint") or {}
            before = {"found": bool(found.get("found")), **summary(fp), "derived": derived(fp)}
            if found.get("uninstaller"):
                before["uninstaller"] = (found["uninstaller"] or {}).get("program")
            if spec.get("kernel_modules"):
                before["kernel_modules_loaded"] = _names(fp.get("kernel_modules"))
                before["dkms_sources"] = [p for p in fp.get("paths") or [] if str(p).startswith("/usr/src/")]
            if found.get("found"):
                before.update(extra)
            if refusals.get(key):
                records.append(
                    self._record(
                        task_vars,
                        check_mode,
                        component=component,
                        item=key,
                        before=before,
                        action="refused",
                        after={"found": True, "unchanged": True},
                        verification={"method": "none (nothing was changed)", "result": "not_verified"},
                        error=refusals[key],
                    )
                )
                results_out.append(found)
                continue
            removal = None
            refused_paths = list(found.get("refused") or [])
            if found.get("found") and not check_mode:
                product_secrets = (
                    {spec["product"]: secrets[spec["product"]]} if spec.get("product") in secrets else {}
                )
                removed = self._execute_module(
                    module_name=module_name,
                    module_args=absent_args | {"items": [spec], "secrets": product_secrets},
                    task_vars=task_vars,
                )
                if removed.get("unreachable"):
                    removed["results"] = [{"offboard_record": r} for r in records]
                    return removed
                changed = True
                if removed.get("failed") or not removed.get("items"):
                    msg = str(removed.get("msg") or "the removal call failed")[:500]
                    removal = {"attempts": [], "method": None, "remaining": fp, "verified_absent": False}
                    verdict = {"action": "failed", "result": "not_verified", "error": msg}
                else:
                    found = {**found, **removed["items"][0]}
                    removal = found.get("removal") or {}
                    refused_paths = list(found.get("refused") or [])
                    verdict = outcome(found, removal, check_mode)
            else:
                verdict = outcome(found, None, check_mode)
                changed = changed or verdict["action"] == "would_remove"
            after: dict[str, Any] = {"found": verdict["action"] not in ("removed", "none")}
            if removal is not None:
                after.update(
                    method=removal.get("method"),
                    uninstaller_rc=uninstaller_rc(removal),
                    attempts=[
                        {k: a.get(k) for k in ("method", "rc", "timed_out", "detail")}
                        for a in removal.get("attempts") or []
                    ],
                    remaining=summary(removal.get("remaining")),
                    remaining_derived=derived(removal.get("remaining")),
                )
            elif verdict["action"] == "would_remove":
                after["found"] = True
            if refused_paths:
                after["refused"] = refused_paths
            verification = {
                "method": VERIFY_WINDOWS if os_key == "windows" else VERIFY_POSIX,
                "result": verdict["result"],
            }
            if verdict["action"] == "failed":
                failed.append(key)
            records.append(
                self._record(
                    task_vars,
                    check_mode,
                    component=component,
                    item=key,
                    before=before,
                    action=verdict["action"],
                    after=after,
                    verification=verification,
                    error=verdict["error"],
                )
            )
            results_out.append(found)

        result.update(
            changed=changed,
            items=results_out,
            failed_items=failed,
            engine=facts_out,
            results=[{"offboard_record": r} for r in records],
        )
        if failed and boolean(args.get("fail_on_error", False), strict=False):
            result["failed"] = True
            result["msg"] = (
                f"Could not remove {', '.join(failed)} on {task_vars.get('inventory_hostname', '')}; see the "
                "evidence records for the reason. The other products on this host were processed."
            )
        return result

    def _secrets(self, args: Mapping[str, Any], task_vars: Mapping[str, Any]) -> dict[str, str]:
        """Product id -> code, from the variables named in the arguments; empty codes are left out."""
        out: dict[str, str] = {}

        def value(name: Any) -> Any:
            if not name or str(name) not in task_vars:
                return None
            return self._templar.template(task_vars[str(name)])

        codes = value(args.get("secrets_var"))
        if isinstance(codes, Mapping):
            out.update({str(k): str(v) for k, v in codes.items() if v})
        for product, name in dict(args.get("secret_vars") or {}).items():
            code = value(name)
            if code:
                out[str(product)] = str(code)
        return out

    def _catalog(self, folder: str) -> dict[str, Any]:
        if not folder or not os.path.isdir(folder):
            raise AnsibleActionFail(f"offboard_agent_engine: catalog_dir {folder!r} is not a folder")
        catalog: dict[str, Any] = {}
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".yml") or name == "sources.yml" or not name[:-4].replace("_", "").isalnum():
                continue
            data = _load_yaml(os.path.join(folder, name))
            if isinstance(data, Mapping):
                catalog.update(data)
        return catalog

    def _record(self, task_vars: dict[str, Any], check_mode: bool, **fields: Any) -> dict[str, Any]:
        fields = {k: v for k, v in fields.items() if v is not None}
        try:
            record = _record.validate({"phase": "agents", **fields})
        except ValueError as exc:
            raise AnsibleActionFail(f"offboard_agent_engine: {exc}") from None
        record["host"] = task_vars.get("inventory_hostname", "")
        record["client"] = str(task_vars.get("offboard_client_id") or "")
        record["recorded_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record["check_mode"] = check_mode
        return record


# The catalogs are plain data (no templates, no vault): libyaml's safe loader reads them about ten times
# faster than the controller's DataLoader (which tags every value with its origin, then deep-copies its
# cache), and this runs in a fresh worker for every engine call.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise AnsibleActionFail(f"offboard_agent_engine: cannot read the catalog {path}: {exc}") from None
