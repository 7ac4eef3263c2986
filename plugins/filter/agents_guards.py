# Copyright: the offboard project contributors
# Apache-2.0
"""Filters for the guarded steps of the agents phase: security software and backup data.

Pure functions of the client's inventory and today's date, so that the guards are unit-tested
(tests/unit/test_agents_guards.py) and the roles only act on their answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

COVERAGE_HOWTO = (
    "set offboard_security.replacement_coverage_confirmed: true, replacement_product: <the client's new "
    "AV/EDR>, replacement_confirmed_by: <who at the client confirmed it> and replacement_confirmed_on: "
    "<YYYY-MM-DD, not in the future> in the client's inventory once the replacement covers every device"
)


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        return None


def _today(today: Any) -> dt.date:
    day = _date(today) if today else dt.datetime.now(dt.UTC).date()
    if day is None:
        raise AnsibleFilterError(f"today must be an ISO date (YYYY-MM-DD), got {today!r}")
    return day


def coverage_problems(security: Mapping[str, Any] | None, today: Any = None) -> list[str]:
    """Why removing the MSP's AV/EDR is not allowed yet (empty list: allowed).

    Allowed only when the client's replacement coverage is recorded as confirmed: the flag, what the
    replacement is, who confirmed it and when (a date that is not in the future).
    """
    sec = security if isinstance(security, Mapping) else {}
    problems = []
    if sec.get("replacement_coverage_confirmed") is not True:
        problems.append("replacement_coverage_confirmed is not true")
    if not str(sec.get("replacement_product") or "").strip():
        problems.append("replacement_product is empty")
    if not str(sec.get("replacement_confirmed_by") or "").strip():
        problems.append("replacement_confirmed_by is empty")
    confirmed_on = _date(sec.get("replacement_confirmed_on")) if sec.get("replacement_confirmed_on") else None
    if confirmed_on is None:
        problems.append("replacement_confirmed_on is not a date (YYYY-MM-DD)")
    elif confirmed_on > _today(today):
        problems.append(f"replacement_confirmed_on {confirmed_on.isoformat()} is in the future")
    return problems


def coverage_refusal(security: Mapping[str, Any] | None, today: Any = None) -> str:
    """The error text a refused record carries ('' when removal is allowed)."""
    problems = coverage_problems(security, today)
    if not problems:
        return ""
    return (
        "refused: the client's replacement AV/EDR coverage is not confirmed ("
        + "; ".join(problems)
        + "): "
        + COVERAGE_HOWTO
    )


def _needs_code(item: Mapping[str, Any], specs: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether removing this found product will use its uninstall code.

    Linux/macOS discovery reports the one uninstaller it will run (with `needs_secret`); on Windows the
    uninstaller is chosen on the host, so any catalog step or protection command taking {secret} counts.
    """
    uninstaller = item.get("uninstaller")
    if isinstance(uninstaller, Mapping) and "needs_secret" in uninstaller:
        return bool(uninstaller["needs_secret"])
    spec = next((s for s in specs or [] if s.get("key") == item.get("key")), None)
    if spec is None or specs is None:
        return False
    return "{secret}" in repr((spec.get("uninstall"), spec.get("protection")))


def security_refusals(
    found: Sequence[Mapping[str, Any]],
    guard_error: str,
    codes: Mapping[str, Any] | None,
    specs: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """Per discovered product key: why it may not be removed now ('' when it may).

    A product that was not found needs no refusal. A product whose uninstaller needs a code
    (tamper protection) and has none in the vault is refused with what to set. Only whether a code
    is present is looked at; the code itself never leaves this function.
    """
    codes = codes if isinstance(codes, Mapping) else {}
    out: dict[str, str] = {}
    for item in found or []:
        key = item.get("key")
        if not item.get("found"):
            out[key] = ""
        elif guard_error:
            out[key] = guard_error
        elif _needs_code(item, specs) and not str(codes.get(item.get("product")) or ""):
            out[key] = (
                f"refused: {item.get('product')} is tamper-protected and its uninstaller needs the "
                f"uninstall code/passphrase: set offboard_security_uninstall_codes.{item.get('product')} "
                "in the client's vault (ansible-vault), taken from the MSP's console for this device"
            )
        else:
            out[key] = ""
    return out


def retention(terms: Mapping[str, Any] | None, today: Any = None) -> dict[str, Any]:
    """Whether the contracted retention of MSP-held backup data has passed.

    Deletion is allowed from the day after `retention_until`. No date, or an unreadable one, never
    allows deletion.
    """
    terms = terms if isinstance(terms, Mapping) else {}
    day = _today(today)
    until = _date(terms.get("retention_until")) if terms.get("retention_until") else None
    if until is None:
        return {
            "passed": False,
            "retention_until": None,
            "deletable_from": None,
            "error": "refused: offboard_backup_terms.retention_until is not set to a date (YYYY-MM-DD): "
            "MSP-held backup data is deleted only after the contracted retention period",
        }
    deletable = until + dt.timedelta(days=1)
    passed = day >= deletable
    return {
        "passed": passed,
        "retention_until": until.isoformat(),
        "deletable_from": deletable.isoformat(),
        "error": ""
        if passed
        else (
            f"refused: the contracted retention runs until {until.isoformat()}; MSP-held backup data may "
            f"be deleted from {deletable.isoformat()} (offboard_backup_terms.retention_until)"
        ),
    }


def backup_locations(terms: Mapping[str, Any] | None, host: str) -> list[dict[str, Any]]:
    """The MSP-held backup data locations on one host (entries without `hosts` apply to every host)."""
    terms = terms if isinstance(terms, Mapping) else {}
    out = []
    for index, loc in enumerate(terms.get("msp_data") or []):
        if not isinstance(loc, Mapping) or (
            not str(loc.get("path") or "").startswith("/")
            and not (len(str(loc.get("path") or "")) > 2 and str(loc.get("path"))[1:3] == ":\\")
        ):
            raise AnsibleFilterError(
                f"offboard_backup_terms.msp_data[{index}] needs an absolute 'path', got {loc!r}"
            )
        hosts = loc.get("hosts")
        if hosts is None or host in hosts:
            out.append(
                {
                    "path": str(loc["path"]),
                    "description": str(loc.get("description") or ""),
                    "kind": str(loc.get("kind") or "local_repository"),
                }
            )
    return out


class FilterModule:
    def filters(self):
        return {
            "offboard_coverage_refusal": coverage_refusal,
            "offboard_security_refusals": security_refusals,
            "offboard_backup_retention": retention,
            "offboard_backup_locations": backup_locations,
        }
