# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: scheduled_task_cleanup's whole flow on Linux/macOS in one task.

Scan (scheduled_footprint, state=query), remove exactly what was found (state=absent; in check mode
the module only reports), scan again to verify, and emit one evidence record per item found, per
look-alike kept for the client, and one "nothing of the MSP's left" record per component without items.
The records go out in `results[*].offboard_record`, where the offboard_evidence callback picks them up
(as offboard_agent_engine does). A host with nothing to remove costs one module call.
Where no role before it learnt the OS, it runs `setup` (distribution subset) first and returns the facts; on
Windows it stops there (the role's windows.yml follows). With `fail_on_error`, an item still present after
removal fails the task, with all the records: no separate report task (a worker per host even when skipped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.offboard.msp.plugins.action import offboard_record as _record
from ansible_collections.offboard.msp.plugins.module_utils.offboard_os_facts import os_facts

DOCUMENTATION = r"""
module: offboard_scheduled_cleanup
short_description: Discover, remove, verify and record the MSP's cron jobs, units and startup scripts
description:
  - Runs scheduled_footprint to scan, to remove what the scan found, and to scan again; returns one
    evidence record per item (with its definition as it was), per kept look-alike, and per component
    (scheduled_task, startup_script) in which nothing was found. Check mode scans only and records
    C(would_remove).
  - Linux and macOS only; Windows hosts use the role's windows.yml.
options:
  name_patterns: {description: Regexes matched against names., type: list}
  path_patterns: {description: Regexes matched against what runs., type: list}
  script_dirs: {description: Absolute folders the MSP put its scripts in., type: list}
  keep_patterns: {description: Regexes for the client's own jobs (never touched)., type: list}
  capture_limit: {description: Largest number of bytes of one definition kept in the record., type: int}
  fail_on_error: {description: Fail the task when an item is still present after removal., type: bool}
"""

RETURN = r"""
items: {description: what the first scan found, type: list}
kept: {description: look-alikes kept for the client, type: list}
left: {description: ids still present after removal (empty in check mode), type: list}
results: {description: one entry per record, each with its offboard_record, type: list}
"""

_ARGS = frozenset(
    ("name_patterns", "path_patterns", "script_dirs", "keep_patterns", "capture_limit", "fail_on_error")
)
COMPONENTS = ("scheduled_task", "startup_script")
STARTUP_KINDS = ("profile_script", "rc_line", "script_dir")
VERIFY_METHOD = (
    "re-scan of cron, systemd units, profile.d, rc.local, script folders and launchd with the same patterns"
)
SCAN_METHOD = (
    "scan of cron, systemd units, profile.d, rc.local, script folders and launchd with the inventory's "
    "patterns"
)


def records_for(
    items: list[Mapping[str, Any]], kept: list[Mapping[str, Any]], left: list[str], check_mode: bool
) -> list[dict[str, Any]]:
    """The records' fields (phase to error) for what the scan found, kept and left; pure."""
    out: list[dict[str, Any]] = []
    for item in items:
        still = not check_mode and item["id"] in left
        out.append(
            {
                "component": item["component"],
                "item": item["id"],
                "before": {
                    "found": True,
                    "kind": item["kind"],
                    "path": item["path"],
                    "units": item.get("units") or [],
                    "matched_by": item["matched_by"],
                    "definition": item["definition"],
                    "definition_sha256": item["definition_sha256"],
                    "definition_bytes": item["definition_bytes"],
                    "definition_truncated": item["truncated"],
                },
                "action": "would_remove" if check_mode else "failed" if still else "removed",
                "after": {
                    "found": still if not check_mode else True,
                    "file_deleted": item.get("file_deleted", False),
                },
                "verification": {
                    "method": VERIFY_METHOD,
                    "result": "not_verified"
                    if check_mode
                    else "still_present"
                    if still
                    else "verified_absent",
                },
            }
        )
    for entry in kept:
        out.append(
            {
                "component": "startup_script" if entry["kind"] in STARTUP_KINDS else "scheduled_task",
                "item": f"kept:{entry['id']}",
                "before": {"found": True, "kind": entry["kind"], "path": entry["path"]},
                "action": "none",
                "after": {"found": True, "unchanged": True},
                "verification": {
                    "method": "pattern match",
                    "result": "not_verified",
                    "note": (
                        f"matched {entry['matched_by']} but also {entry['kept_by']}: the client's, left alone"
                    ),
                },
            }
        )
    seen = {item["component"] for item in items}
    for component in COMPONENTS:
        if component not in seen:
            out.append(
                {
                    "component": component,
                    "item": "msp_footprint",
                    "before": {"found": False},
                    "action": "none",
                    "after": {"found": False},
                    "verification": {"method": SCAN_METHOD, "result": "verified_absent"},
                }
            )
    return out


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
                f"offboard_scheduled_cleanup: unknown argument(s) {', '.join(sorted(unknown))}"
            )
        check_mode = bool(self._task.check_mode or task_vars.get("ansible_check_mode"))
        facts, setup_failed = os_facts(self._execute_module, task_vars, result)
        if setup_failed:
            return setup_failed
        if facts.get("os_family") == "Windows":
            result.update(changed=False, items=[], kept=[], left=[], results=[], os="windows")
            return result
        patterns = {
            "name_patterns": list(args.get("name_patterns") or []),
            "path_patterns": list(args.get("path_patterns") or []),
            "script_dirs": [str(d) for d in args.get("script_dirs") or [] if str(d).startswith("/")],
            "keep_patterns": list(args.get("keep_patterns") or []),
        }
        capture = int(args.get("capture_limit") if args.get("capture_limit") is not None else 16384)

        def call(state: str, limit: int, probe: bool) -> dict[str, Any]:
            # Probes run for real in check mode too (read-only); the removal honours check mode.
            if probe:
                saved = self._task.check_mode
                self._task.check_mode = False
            try:
                out = self._execute_module(
                    module_name="scheduled_footprint",
                    module_args=patterns | {"state": state, "capture_limit": limit},
                    task_vars=task_vars,
                )
            finally:
                if probe:
                    self._task.check_mode = saved
            return out

        found = call("query", capture, probe=True)
        if found.get("unreachable") or found.get("failed"):
            return found
        items = list(found.get("items") or [])
        kept = list(found.get("kept") or [])
        left: list[str] = []
        changed = False
        if items:
            removed = call("absent", capture, probe=False)
            if removed.get("unreachable") or removed.get("failed"):
                return removed
            changed = bool(removed.get("changed"))
            if not check_mode:
                verify = call("query", 0, probe=True)
                if verify.get("unreachable") or verify.get("failed"):
                    return verify
                left = [str(i.get("id")) for i in verify.get("items") or []]

        records = []
        for fields in records_for(items, kept, left, check_mode):
            try:
                record = _record.validate({"phase": "agents", **fields})
            except ValueError as exc:
                raise AnsibleActionFail(f"offboard_scheduled_cleanup: {exc}") from None
            record["host"] = task_vars.get("inventory_hostname", "")
            record["client"] = str(task_vars.get("offboard_client_id") or "")
            record["recorded_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            record["check_mode"] = check_mode
            records.append({"offboard_record": record})
        result.update(changed=changed, items=items, kept=kept, left=left, results=records)
        if left and boolean(args.get("fail_on_error", False), strict=False):
            result["failed"] = True
            result["msg"] = (
                f"Still present on {task_vars.get('inventory_hostname', '')} after removal: {', '.join(left)}"
            )
        return result
