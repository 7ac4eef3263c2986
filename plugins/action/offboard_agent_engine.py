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

One discovery per host for the three roles: the first engine call on a host also discovers the products the
other agent roles of the play will ask for (from their role variables `<role>_products` and
`__<role>_catalog_dir`), each catalog in its own round of the same module call, and leaves those results in
a per-run, per-host cache in the controller's run folder (C.DEFAULT_LOCAL_TMP, removed when the run ends).
A later call uses a cached result only when it was discovered for exactly the items that call builds (same
OS, same specs), in the same mode, and, in a real run, only for products that were not found (removals only
take things away, so "absent" cannot go stale; a product found is discovered again before its removal).
Each cached result is used once. On Linux/macOS the first call also learns the OS family from the same
module call (os_facts), so no separate setup runs where the module can tell it exactly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import yaml
from ansible import constants as C
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


# Record component -> the role whose variables name its products and catalog: what the other engine calls of
# the play will be given, so that the first call on a host can discover for them too.
ROLES = {
    "security_agent": "security_software_transition",
    "backup_agent": "backup_agent_removal",
    "rmm_agent": "rmm_agent_removal",
}
CACHE_PREFIX = "offboard-agent-discovery-"


def digest(item: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(host: str, folder: str | None = None) -> str | None:
    """This run's cache file for one host, in the controller's per-run temp folder (None without one)."""
    folder = folder if folder is not None else getattr(C, "DEFAULT_LOCAL_TMP", None)
    if not folder or not os.path.isdir(folder):
        return None
    return os.path.join(folder, CACHE_PREFIX + hashlib.sha256(host.encode()).hexdigest()[:24] + ".json")


def cache_entry(
    os_key: str, check_mode: bool, items: list[dict[str, Any]], found: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "os": os_key,
        "check_mode": check_mode,
        "items": [[spec["key"], digest(spec), result] for spec, result in zip(items, found, strict=True)],
    }


def cached_found(
    entry: Mapping[str, Any] | None, os_key: str, check_mode: bool, items: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """The cached discovery results for exactly these items, or None when they may not be used.

    Used only for the same OS, mode and item specs (key and content, in any order); in a real run only
    when nothing was found (a found product is discovered again right before its removal)."""
    if not entry or entry.get("os") != os_key or bool(entry.get("check_mode")) != check_mode:
        return None
    by_key = {}
    for key, item_digest, result in entry.get("items") or []:
        by_key[key] = (item_digest, result)
    if len(by_key) != len(items) or len(entry.get("items") or []) != len(items):
        return None
    out = []
    for spec in items:
        hit = by_key.get(spec["key"])
        if hit is None or hit[0] != digest(spec) or not isinstance(hit[1], Mapping):
            return None
        if hit[1].get("key") != spec["key"] or (hit[1].get("found") and not check_mode):
            return None
        out.append(dict(hit[1]))
    return out


def _read_cache(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: str | None, data: Mapping[str, Any]) -> None:
    if not path:
        return
    if not data:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    tmp = f"{path}.{os.getpid()}"
    try:
        with open(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
        ) as handle:
            handle.write(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


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


def _os_key(family: str) -> str:
    return "windows" if family == "Windows" else "macos" if family == "Darwin" else "linux"


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

        facts = dict(task_vars.get("ansible_facts") or {})
        family = facts.get("os_family") or facts.get("ansible_os_family")
        if not family and self._powershell():
            facts, setup_failed = os_facts(self._execute_module, task_vars, result)
            if setup_failed:
                return setup_failed
            family = facts.get("os_family") or facts.get("ansible_os_family")
        # None: Linux or macOS, not known yet; the discovery call tells (and returns the facts).
        os_key = _os_key(family) if family else None

        catalog = self._catalog(str(args.get("catalog_dir") or ""))
        order = args.get("category_order") or ["remote_access", "rmm"]
        candidates = [os_key] if os_key else ["linux", "macos"]
        try:
            scoped = {
                o: _scope.agent_scope(args.get("products") or [], catalog, o, order) for o in candidates
            }
        except Exception as exc:  # AnsibleFilterError: bad product id or missing instances
            raise AnsibleActionFail(f"offboard_agent_engine: {exc}") from None
        own = {o: [i for i in its if i.get("supported")] for o, its in scoped.items()}
        timeout = int(args.get("timeout") or 300)

        found_items: list[dict[str, Any]] | None = None
        path = cache_path(str(task_vars.get("inventory_hostname", "")))
        if os_key:
            cache = _read_cache(path)
            entry = cache.pop(component, None)  # each cached result is used once
            if entry is not None:
                _write_cache(path, cache)
            found_items = [] if not own[os_key] else cached_found(entry, os_key, check_mode, own[os_key])
        if found_items is None:
            discovered = self._discover(component, own, os_key, timeout, task_vars, check_mode, path)
            if "unreachable" in discovered:
                return discovered["unreachable"]
            os_key, found_items = discovered["os"], discovered["found"]
            if discovered["facts"]:
                result["ansible_facts"] = discovered["facts"]
            elif not family:
                # The module could not tell the OS family as setup would: gather it for the later roles.
                _facts, setup_failed = os_facts(self._execute_module, task_vars, result)
                if setup_failed:
                    return setup_failed
        module_name = "win_agent_footprint" if os_key == "windows" else "agent_footprint"
        items = scoped[os_key]
        supported = own[os_key]
        secrets = self._secrets(args, task_vars)
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

    def _powershell(self) -> bool:
        """Whether the connection talks to Windows (its shell is PowerShell)."""
        shell = getattr(self._connection, "_shell", None)
        return getattr(shell, "SHELL_FAMILY", "") == "powershell"

    def _discover(
        self,
        component: str,
        own: Mapping[str, list[dict[str, Any]]],
        os_key: str | None,
        timeout: int,
        task_vars: dict[str, Any],
        check_mode: bool,
        path: str | None,
    ) -> dict[str, Any]:
        """One module call: this role's items, and on Linux/macOS the other agent roles' items (each its own
        round, cached for their calls). {'os', 'found', 'facts'}, or {'unreachable': result}."""
        others = {} if os_key == "windows" else self._other_roles_items(component, task_vars, list(own))
        layouts: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
        args: dict[str, Any] = {"state": "query", "timeout": timeout}
        for o in own:
            layout = [(component, own[o])] + [(c, by_os[o]) for c, by_os in others.items() if by_os.get(o)]
            keys = [i["key"] for _c, its in layout for i in its]
            if len(set(keys)) != len(keys):  # a key in two catalogs: keep the call to this role's items
                layout = layout[:1]
            layouts[o] = layout
            prefix = "macos_" if os_key is None and o == "macos" else ""
            args[f"{prefix}items"] = [i for _c, its in layout for i in its]
            if len(layout) > 1:
                args[f"{prefix}groups"] = [len(its) for _c, its in layout]
        if os_key is None:
            args["os_facts"] = True
        module_name = "win_agent_footprint" if os_key == "windows" else "agent_footprint"
        discovery = self._execute_module(module_name=module_name, module_args=args, task_vars=task_vars)
        if discovery.get("unreachable"):
            return {"unreachable": discovery}
        if discovery.get("failed"):
            raise AnsibleActionFail(f"offboard_agent_engine: discovery failed: {discovery.get('msg')}")
        got = os_key or ("macos" if discovery.get("os") == "macos" else "linux")
        found = list(discovery.get("items") or [])
        layout = layouts[got]
        if len(found) != sum(len(its) for _c, its in layout):
            raise AnsibleActionFail("offboard_agent_engine: the module returned another number of items")
        own_found = found[: len(layout[0][1])]
        if len(layout) > 1:
            cache = _read_cache(path)
            start = len(own_found)
            for other, its in layout[1:]:
                cache[other] = cache_entry(got, check_mode, its, found[start : start + len(its)])
                start += len(its)
            _write_cache(path, cache)
        facts = dict(discovery.get("ansible_facts") or {}) if os_key is None else {}
        return {"os": got, "found": own_found, "facts": facts if facts.get("os_family") else {}}

    def _other_roles_items(
        self, component: str, task_vars: dict[str, Any], os_keys: list[str]
    ) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """The supported items the play's later agent roles will ask for, per OS, from their role variables
        (templated with their own role_path). A role whose items cannot be built here is left out: its own
        call discovers (and reports) as it always did."""
        role = getattr(self._task, "_role", None)
        play = getattr(role, "_play", None)
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        if play is None:
            return out
        # Only the roles after this one in the play: those before it have had their call.
        names = [getattr(r, "_role_name", None) for r in getattr(play, "roles", None) or []]
        here = getattr(role, "_role_name", None)
        later = names[names.index(here) + 1 :] if here in names else []
        roles = {}
        for r in getattr(play, "roles", None) or []:
            if getattr(r, "_role_name", None) in later:
                roles.setdefault(r._role_name, r)
        for other, role_name in ROLES.items():
            products_var, dir_var = f"{role_name}_products", f"__{role_name}_catalog_dir"
            if other == component or role_name not in roles or products_var not in task_vars:
                continue
            if dir_var not in task_vars:
                continue
            try:
                variables = dict(task_vars)
                variables["role_path"] = roles[role_name]._role_path
                templar = self._templar.copy_with_new_env(available_variables=variables)
                products = templar.template(task_vars[products_var])
                if not products:
                    continue
                catalog = self._catalog(str(templar.template(task_vars[dir_var])))
                out[other] = {
                    o: [i for i in _scope.agent_scope(products, catalog, o) if i.get("supported")]
                    for o in os_keys
                }
            except Exception:  # only a prefetch: the role's own call reports any error
                continue
        return out

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
        names = [
            name
            for name in sorted(os.listdir(folder))
            if name.endswith(".yml") and name != "sources.yml" and name[:-4].replace("_", "").isalnum()
        ]
        # Every engine call of the run reads the same catalogs (the first call on a host reads all three):
        # a JSON copy in the run's temp folder, valid while no file changed, reads ~30x faster than YAML.
        stamp = []
        for name in names:
            st = os.stat(os.path.join(folder, name))
            stamp.append([name, st.st_mtime_ns, st.st_size])
        copy = cache_path(f"catalog:{os.path.realpath(folder)}")
        cached = _read_cache(copy)
        if cached.get("stamp") == stamp and isinstance(cached.get("catalog"), dict):
            return cached["catalog"]
        catalog: dict[str, Any] = {}
        for name in names:
            data = _load_yaml(os.path.join(folder, name))
            if isinstance(data, Mapping):
                catalog.update(data)
        try:
            lossless = json.loads(json.dumps(catalog)) == catalog
        except (TypeError, ValueError):
            lossless = False
        if lossless:  # plain data only (a YAML date, say, would come back as a string)
            _write_cache(copy, {"stamp": stamp, "catalog": catalog})
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
