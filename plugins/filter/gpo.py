# Copyright: the offboard project contributors
# Apache-2.0
"""Filter: decide which of a domain's GPOs are the departing MSP's (gpo_cleanup role).

The same decision for Samba DCs (samba_gpo module) and Windows DCs (GroupPolicy module script): each
reports every GPO with its GUID, name, links and which setting patterns its settings match; this filter
adds the name patterns and the protections, so the rule lives in one tested place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.offboard.msp.plugins.module_utils import offboard_paths

# Created with every AD domain; deleting them breaks the domain. Never removed, whatever they contain
# (Microsoft: "Default Domain Policy" {31B2F340-016D-11D2-945F-00C04FB984F9} and "Default Domain
# Controllers Policy" {6AC1786C-016F-11D2-945F-00C04FB984F9}, fixed GUIDs in every domain; learn.microsoft.com
# /troubleshoot/windows-server/group-policy/create-and-manage-group-policy ... dcgpofix).
DEFAULT_GPOS = {
    "{31B2F340-016D-11D2-945F-00C04FB984F9}": "Default Domain Policy",
    "{6AC1786C-016F-11D2-945F-00C04FB984F9}": "Default Domain Controllers Policy",
}


def _compile(patterns: Any, what: str) -> list[tuple[str, re.Pattern[str]]]:
    if patterns is None:
        return []
    if isinstance(patterns, str) or not isinstance(patterns, Sequence):
        raise AnsibleFilterError(
            f"offboard_gpo: {what} must be a list of regular expressions, not {patterns!r}"
        )
    out = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise AnsibleFilterError(
                f"offboard_gpo: {what} holds {pattern!r}; each must be a non-empty string"
            )
        try:
            out.append((pattern, re.compile(pattern, re.IGNORECASE)))
        except re.error as exc:
            raise AnsibleFilterError(
                f"offboard_gpo: {what} pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
    return out


def offboard_gpo_check(config: Any) -> dict[str, Any]:
    """Validate the inventory's offboard_gpo settings (patterns compile; at least one pattern)."""
    if not isinstance(config, Mapping):
        raise AnsibleFilterError("offboard_gpo must be a mapping with name_patterns / setting_patterns")
    unknown = set(config) - {"name_patterns", "setting_patterns", "keep"}
    if unknown:
        raise AnsibleFilterError(f"offboard_gpo has unknown keys: {', '.join(sorted(unknown))}")
    names = _compile(config.get("name_patterns"), "name_patterns")
    settings = _compile(config.get("setting_patterns"), "setting_patterns")
    keep = config.get("keep") or []
    if isinstance(keep, str) or not all(isinstance(k, str) for k in keep):
        raise AnsibleFilterError("offboard_gpo.keep must be a list of GPO display names or GUIDs")
    if not names and not settings:
        raise AnsibleFilterError(
            "offboard_gpo has neither name_patterns nor setting_patterns: nothing could ever match. "
            "Set e.g. name_patterns: ['^MSP - '] and setting_patterns: ['NinjaRMMAgent']"
        )
    # The same policy as every other deletion input (plugins/module_utils/offboard_paths.py): a pattern
    # that matches the empty string or an ordinary name or path would select the domain's own GPOs.
    policy = offboard_paths
    for what, found, kind in (("name_patterns", names, "name"), ("setting_patterns", settings, "path")):
        for index, (pattern, _) in enumerate(found):
            reason = policy.pattern_reason(pattern, "regex", kind)
            if reason:
                raise AnsibleFilterError(f"offboard_gpo.{what}[{index}] {pattern!r} {reason}")
    return {
        "name_patterns": [p for p, _ in names],
        "setting_patterns": [p for p, _ in settings],
        "keep": list(keep),
    }


def offboard_gpo_select(gpos: Any, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The GPOs that are the MSP's: matched by name or by settings. Each is returned with `reasons`
    and `disposition`: `remove`, `default` (a default GPO matched: never deleted, a person must edit it)
    or `keep` (the client asked to keep it: offboard_gpo.keep). GPOs nobody matched are left out."""
    checked = offboard_gpo_check(config)
    names = _compile(checked["name_patterns"], "name_patterns")
    keep = {k.lower() for k in checked["keep"]}
    out = []
    for gpo in gpos or []:
        if not isinstance(gpo, Mapping) or "guid" not in gpo:
            raise AnsibleFilterError(f"offboard_gpo_select: not a GPO entry: {gpo!r}")
        name = str(gpo.get("name") or "")
        guid = str(gpo["guid"]).upper()
        name_hits = [p for p, rx in names if rx.search(name)]
        setting_hits = [
            dict(h) for h in gpo.get("setting_hits") or [] if h.get("pattern") in checked["setting_patterns"]
        ]
        if not name_hits and not setting_hits:
            continue
        if guid in DEFAULT_GPOS:
            disposition = "default"
        elif name.lower() in keep or guid.lower() in keep:
            disposition = "keep"
        else:
            disposition = "remove"
        out.append(
            {
                **dict(gpo),
                "guid": guid,
                "name": name,
                "reasons": {"name_patterns": name_hits, "settings": setting_hits},
                "disposition": disposition,
            }
        )
    return sorted(out, key=lambda g: (g["name"].lower(), g["guid"]))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"offboard_gpo_check": offboard_gpo_check, "offboard_gpo_select": offboard_gpo_select}
