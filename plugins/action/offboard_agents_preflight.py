# Copyright: the offboard project contributors
# Apache-2.0
"""The preflight's checks of the agents phase's terms: security, backup and footprint variables.

Called by offboard_preflight (the guard, on the controller, before any host is touched), after it has
checked the MSP's products against the catalogs: an unreadable date, a relative backup path, a broken
pattern or a system folder given as the MSP's script folder is refused with a message saying what to fix.
The guards themselves (confirmed coverage, retention) are not errors: the roles record `refused` for them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.offboard.msp.plugins.module_utils import offboard_paths

DOCUMENTATION = r"""
module: offboard_agents_preflight
short_description: Refuse bad security, backup and footprint variables of a client before any change
description:
  - A library of offboard_preflight, which calls it; as a task it checks the first play host's variables.
options: {}
"""

DISPOSITIONS = ("handover", "transfer", "delete")
WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")


class PreflightError(Exception):
    pass


def _date(value: Any, where: str) -> None:
    if value in (None, ""):
        return
    try:
        dt.date.fromisoformat(str(value))
    except ValueError:
        raise PreflightError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _absolute(path: Any) -> bool:
    return isinstance(path, str) and (path.startswith(("/", "\\\\")) or bool(WINDOWS_ABS.match(path)))


def check(hostvars: Mapping[str, Any]) -> None:
    """Refuse (PreflightError, saying what to fix) bad security, backup and footprint terms."""
    security = hostvars.get("offboard_security") or {}
    if not isinstance(security, Mapping):
        raise PreflightError("offboard_security must be a mapping (see inventories/example)")
    _date(security.get("replacement_confirmed_on"), "offboard_security.replacement_confirmed_on")
    codes = hostvars.get("offboard_security_uninstall_codes") or {}
    if not isinstance(codes, Mapping):
        raise PreflightError("offboard_security_uninstall_codes must map product ids to codes (vault)")
    terms = hostvars.get("offboard_backup_terms") or {}
    if not isinstance(terms, Mapping):
        raise PreflightError("offboard_backup_terms must be a mapping (see inventories/example)")
    if terms.get("data_disposition") not in (None, "", *DISPOSITIONS):
        raise PreflightError(
            f"offboard_backup_terms.data_disposition {terms['data_disposition']!r}: use one of "
            f"{', '.join(DISPOSITIONS)}"
        )
    for field in ("retention_until", "handed_over_on"):
        _date(terms.get(field), f"offboard_backup_terms.{field}")
    policy = offboard_paths
    for index, loc in enumerate(terms.get("msp_data") or []):
        if not isinstance(loc, Mapping) or not _absolute(loc.get("path")):
            raise PreflightError(f"offboard_backup_terms.msp_data[{index}] needs an absolute 'path'")
        reason = policy.protected_reason(loc["path"])
        if reason:
            raise PreflightError(
                f"offboard_backup_terms.msp_data[{index}].path {loc['path']!r} {reason}: give the folder "
                "that holds only the MSP's backup data (it is deleted whole once retention has passed)"
            )
    footprint = hostvars.get("offboard_msp_footprint") or {}
    if not isinstance(footprint, Mapping):
        raise PreflightError("offboard_msp_footprint must be a mapping (see inventories/example)")
    for field in ("name_patterns", "path_patterns", "keep_patterns"):
        for index, pattern in enumerate(footprint.get(field) or []):
            try:
                re.compile(str(pattern))
            except re.error as exc:
                raise PreflightError(
                    f"offboard_msp_footprint.{field}[{index}] {pattern!r} is not a regular expression: {exc}"
                ) from None
            if field == "keep_patterns":
                continue  # keeping more is never destructive
            reason = policy.pattern_reason(pattern, "regex", "path" if field == "path_patterns" else "name")
            if reason:
                raise PreflightError(
                    f"offboard_msp_footprint.{field}[{index}] {pattern!r} {reason} (everything it matches "
                    "is removed)"
                )
    for index, folder in enumerate(footprint.get("script_dirs") or []):
        reason = policy.protected_reason(folder) if _absolute(folder) else "is not an absolute path"
        norm = os.path.normpath(str(folder)) if str(folder).startswith("/") else str(folder)
        if not reason and str(folder).startswith("/") and norm.count("/") < 2:
            reason = "is a top-level folder"
        if reason or any(c in str(folder) for c in "*?["):
            raise PreflightError(
                f"offboard_msp_footprint.script_dirs[{index}] {folder!r} {reason or 'has a wildcard'}: give "
                "the MSP's own folder as an absolute path without wildcards (it is deleted whole)"
            )


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        selected = list(task_vars.get("ansible_play_hosts_all") or [])
        hostvars = task_vars["hostvars"][selected[0]] if selected else {}
        try:
            check(hostvars)
        except PreflightError as exc:
            raise AnsibleActionFail(f"REFUSED before any change: {exc}") from None
        result["changed"] = False
        return result
