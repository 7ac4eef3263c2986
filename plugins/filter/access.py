# Copyright: the offboard project contributors
# Apache-2.0
"""Filters of the access phase: classify Windows/macOS discovery output like the Linux module does,
compare what was found with the documented hand-over list (both directions), and render the report.

The matching rules live once, in plugins/module_utils/offboard_access_rules.py (pure functions), shared with
the local_access module, so that Windows and macOS findings are judged exactly like Linux ones.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.offboard.msp.plugins.module_utils import offboard_access_rules as rules

MFA_NOTE = (
    "MFA registrations of the MSP's technicians are NOT removed by this tool: no directory API is "
    "configured for this client. Checklist step 2.4 (MFA cleanup) keeps their removal open for "
    "attestation. For Entra ID / Microsoft 365 the place to automate it is Microsoft Graph "
    "(GET/DELETE /users/{id}/authentication/methods and its typed sub-resources, e.g. "
    "microsoftAuthenticatorMethods, phoneMethods, fido2Methods)."
)


def documented(access: Mapping[str, Any], kind: str = "local") -> dict[str, list[str]]:
    """Documented accounts of a kind split by action: {'revoke': [...], 'keep': [...]}."""
    out: dict[str, list[str]] = {"revoke": [], "keep": []}
    for entry in access.get("accounts") or []:
        if (entry.get("kind") or "local") == kind:
            out[entry.get("action") or "revoke"].append(str(entry["name"]))
    return out


def access_scope(access: Mapping[str, Any]) -> dict[str, Any]:
    """Module arguments (msp_access and the Windows/macOS classifier) from offboard_msp_access."""
    local = documented(access, "local")
    return {
        "accounts": local["revoke"],
        "keep_accounts": local["keep"],
        "account_patterns": list(access.get("account_patterns") or []),
        "key_fingerprints": [
            rules.normalize_fingerprint(f) for f in access.get("ssh_key_fingerprints") or []
        ],
        "key_comment_patterns": list(access.get("ssh_key_comment_patterns") or []),
        "sudoers_patterns": list(access.get("sudoers_patterns") or []),
        "msp_groups": list(access.get("local_groups") or []),
        "directory": {
            "accounts": documented(access, "directory")["revoke"],
            "keep_accounts": documented(access, "directory")["keep"],
            "msp_ou": str((access.get("directory") or {}).get("msp_ou") or ""),
            "msp_groups": list((access.get("directory") or {}).get("msp_groups") or []),
            "account_patterns": list(access.get("account_patterns") or []),
        },
    }


def classify_raw(raw: Mapping[str, Any], access: Mapping[str, Any], admin_group: str) -> dict[str, Any]:
    """Windows/macOS raw discovery {users: [{name, enabled, ...}], admins: [names], key_files: [{path,
    owner, content}]} -> the Linux module's shape (accounts, keys, sudoers, admin_members)."""
    scope = access_scope(access)
    users = list(raw.get("users") or [])
    passwd = [{"name": u["name"]} for u in users]
    msp = rules.msp_account_names(
        passwd, scope["accounts"], scope["account_patterns"], scope["keep_accounts"]
    )
    admins = [str(a).split("\\")[-1] for a in raw.get("admins") or []]
    accounts = []
    for user in users:
        if user["name"] not in msp:
            continue
        accounts.append(
            {
                "name": user["name"],
                "enabled": bool(user.get("enabled", True)),
                "password_state": "set" if user.get("enabled", True) else "locked",
                "expired": not user.get("enabled", True),
                "login_shell": bool(user.get("enabled", True)),
                "admin_groups": [admin_group] if user["name"] in admins else [],
                "matched_by": msp[user["name"]],
                "documented": user["name"] in scope["accounts"],
            }
        )
    keys = []
    for kf in raw.get("key_files") or []:
        content = kf.get("content") or ""
        if kf.get("content_b64"):
            content = base64.b64decode(kf["content_b64"]).decode("utf-8", errors="replace")
        for key in rules.msp_key_lines(
            content,
            kf.get("owner") in msp,
            scope["key_fingerprints"],
            scope["key_comment_patterns"],
        ):
            key.update(path=kf["path"], owner=kf.get("owner", ""))
            keys.append(key)
    return {
        "accounts": accounts,
        "keys": keys,
        "sudoers": [],
        "admin_members": [{"group": admin_group, "user": a, "msp": a in msp} for a in admins],
    }


def access_report(
    hosts: Sequence[Mapping[str, Any]], access: Mapping[str, Any], client: str = ""
) -> dict[str, Any]:
    """Compare every host's findings with the documented list, in both directions.

    hosts: [{host, os, found (module shape) | None, reason}] ; a host with found None was not inventoried.
    """
    scope = access_scope(access)
    documented_fps = set(scope["key_fingerprints"])
    seen_accounts: set[str] = set()
    seen_keep: set[str] = set()
    seen_fps: set[str] = set()
    undocumented: list[dict[str, Any]] = []
    seen_dir: set[str] = set()
    seen_dir_keep: set[str] = set()
    any_dc = False
    per_host = []
    for entry in hosts:
        found = entry.get("found")
        if found is None:
            per_host.append({"host": entry["host"], "inventoried": False, "reason": entry.get("reason", "")})
            continue
        for account in found.get("accounts") or []:
            seen_accounts.add(account["name"])
            if not account.get("documented"):
                undocumented.append(
                    {"host": entry["host"], "kind": "account", "name": account["name"], "why": "name pattern"}
                )
        for name in found.get("kept_present") or []:
            seen_keep.add(name)
        for key in found.get("keys") or []:
            if not key.get("msp"):
                continue
            seen_fps.add(key["fingerprint"])
            if not key.get("documented"):
                undocumented.append(
                    {
                        "host": entry["host"],
                        "kind": "ssh_key",
                        "name": f"{key['fingerprint']} ({key.get('comment') or 'no comment'})",
                        "where": f"{key['path']} (owner {key['owner']})",
                        "why": key.get("reason", ""),
                    }
                )
        for rule in found.get("sudoers") or []:
            for line in rule.get("mixed_lines") or []:
                undocumented.append(
                    {
                        "host": entry["host"],
                        "kind": "sudoers_mixed",
                        "name": line,
                        "where": rule["path"],
                        "why": "rule names the MSP together with others: needs a person",
                    }
                )
        directory = found.get("directory") or {}
        if directory.get("is_dc"):
            any_dc = True
            for account in directory.get("accounts") or []:
                seen_dir.add(account["name"])
                if not account.get("documented"):
                    undocumented.append(
                        {
                            "host": entry["host"],
                            "kind": "directory_account",
                            "name": account["name"],
                            "why": f"found by {account['matched_by']}",
                        }
                    )
            seen_dir_keep.update(directory.get("kept_present") or [])
        per_host.append(
            {
                "host": entry["host"],
                "os": entry.get("os", ""),
                "directory_accounts": [a["name"] for a in directory.get("accounts") or []],
                "directory_groups": [
                    {"name": g["name"], "member_of": g["member_of"]} for g in directory.get("groups") or []
                ],
                "inventoried": True,
                "msp_accounts": [a["name"] for a in found.get("accounts") or []],
                "msp_keys": [
                    {"fingerprint": k["fingerprint"], "path": k["path"], "documented": k["documented"]}
                    for k in found.get("keys") or []
                    if k.get("msp")
                ],
                "client_keys_left_alone": sum(1 for k in found.get("keys") or [] if not k.get("msp")),
                "sudoers": [
                    {"path": r["path"], "whole_file": r["whole_file"], "msp_lines": r["msp_lines"]}
                    for r in found.get("sudoers") or []
                ],
                "admin_members": [f"{m['group']}:{m['user']}" for m in found.get("admin_members") or []],
                "kept_accounts_present": sorted(found.get("kept_present") or []),
            }
        )
    any_inventoried = any(h.get("inventoried") for h in per_host)
    not_found = []
    if any_inventoried:
        not_found += [{"kind": "account", "name": n} for n in scope["accounts"] if n not in seen_accounts]
        not_found += [
            {"kind": "kept_account", "name": n} for n in scope["keep_accounts"] if n not in seen_keep
        ]
        not_found += [{"kind": "ssh_key", "name": f} for f in sorted(documented_fps - seen_fps)]
    if any_dc:
        dscope = scope["directory"]
        not_found += [
            {"kind": "directory_account", "name": n} for n in dscope["accounts"] if n not in seen_dir
        ]
        not_found += [
            {"kind": "directory_kept_account", "name": n}
            for n in dscope["keep_accounts"]
            if n not in seen_dir_keep
        ]
    directory = access.get("directory") or {}
    return {
        "client": client,
        "documented": {
            "revoke": scope["accounts"],
            "keep": scope["keep_accounts"],
            "ssh_key_fingerprints": sorted(documented_fps),
            "directory": {
                "msp_ou": directory.get("msp_ou", ""),
                "msp_groups": directory.get("msp_groups", []),
            },
        },
        "undocumented_found": undocumented,
        "documented_not_found": not_found,
        "hosts": per_host,
        "mfa": {"automated": False, "note": MFA_NOTE},
    }


def access_markdown(report: Mapping[str, Any]) -> str:
    """The report for people: both directions first, then per host."""
    lines = [f"# Access inventory: {report.get('client', '')}", ""]
    lines += ["## Undocumented MSP credentials found", ""]
    for item in report["undocumented_found"] or [{"kind": "-", "name": "none", "host": "-"}]:
        where = f" in {item['where']}" if item.get("where") else ""
        lines.append(
            f"- {item['host']}: {item['kind']} `{item['name']}`{where} {item.get('why', '')}".rstrip()
        )
    lines += ["", "## Documented credentials not found on any inventoried host", ""]
    for item in report["documented_not_found"] or [{"kind": "-", "name": "none"}]:
        lines.append(f"- {item['kind']} `{item['name']}`")
    lines += ["", "## Per host", ""]
    for host in report["hosts"]:
        if not host.get("inventoried"):
            lines.append(f"- {host['host']}: not inventoried ({host.get('reason', '')})")
            continue
        lines.append(
            f"- {host['host']} ({host['os']}): MSP accounts {', '.join(host['msp_accounts']) or 'none'}; "
            f"MSP keys {len(host['msp_keys'])} (client keys left alone: {host['client_keys_left_alone']}); "
            f"sudoers {', '.join(r['path'] for r in host['sudoers']) or 'none'}; "
            f"kept accounts {', '.join(host['kept_accounts_present']) or 'none'}"
            + (
                f"; directory accounts {', '.join(host['directory_accounts'])}"
                if host.get("directory_accounts")
                else ""
            )
        )
    lines += ["", "## MFA", "", report["mfa"]["note"], ""]
    return "\n".join(lines)


def collect(hostvars: Mapping[str, Any], hosts: Sequence[str], done: Sequence[str]) -> list[dict[str, Any]]:
    """Per host {host, os, found, reason} for access_report; hosts not in `done` failed or went away."""
    out = []
    for host in hosts:
        hv = hostvars[host]
        found = hv.get("credential_inventory_found") if host in done else None
        if found is not None and hv.get("credential_inventory_directory"):
            found = dict(found, directory=hv["credential_inventory_directory"])
        out.append(
            {
                "host": host,
                "os": hv.get("__credential_inventory_os", ""),
                "found": found,
                "reason": "" if found is not None else "unreachable or failed before discovery",
            }
        )
    return out


def login_attempts(
    key_files: Sequence[str],
    key_users: Sequence[str],
    accounts: Sequence[str],
    password_users: Sequence[str],
    windows: bool = False,
) -> list[dict[str, str]]:
    """The logins the MSP could try: every key as every key user (SSH), every known password (SSH or
    WinRM). Holds names only: the password is looked up by account inside the no_log probe task."""
    attempts: list[dict[str, str]] = []
    if not windows:
        for key_file in key_files:
            for user in dict.fromkeys(key_users):
                attempts.append({"method": "ssh_key", "user": user, "key_file": str(key_file)})
    for user in dict.fromkeys(accounts):
        if user in password_users:
            attempts.append({"method": "winrm" if windows else "ssh_password", "user": user, "key_file": ""})
    return attempts


def bind_results(results: Sequence[Mapping[str, Any]], loop_var: str) -> list[dict[str, Any]]:
    """Only user, rc and start time of registered command results (their arguments may hold a password)."""
    return [
        {"user": str(r.get(loop_var, "")), "rc": int(r.get("rc", -1)), "start": str(r.get("start", ""))}
        for r in results
    ]


def probe_results(results: Sequence[Mapping[str, Any]], loop_var: str) -> list[dict[str, Any]]:
    """Only the safe fields of registered offboard_login_probe results (never the task's arguments)."""
    out = []
    for r in results:
        if r.get("skipped"):
            continue
        attempt = r.get(loop_var) or {}
        out.append(
            {
                "method": str(attempt.get("method", "")),
                "user": str(attempt.get("user", "")),
                "key_file": str(attempt.get("key_file", "")),
                "outcome": str(r.get("outcome", "error")),
                "detail": str(r.get("detail", r.get("msg", "")))[:300],
                "attempted_at": str(r.get("attempted_at", "")),
                "address": str(r.get("address", "")),
            }
        )
    return out


def key_fingerprint(line: str) -> str:
    """SHA256 fingerprint of one public key line ('' when it is not a key)."""
    key = rules.parse_key_line(str(line))
    return key["fingerprint"] if key else ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "offboard_access_scope": access_scope,
            "offboard_access_classify": classify_raw,
            "offboard_access_report": access_report,
            "offboard_access_markdown": access_markdown,
            "offboard_access_documented": documented,
            "offboard_key_fingerprint": key_fingerprint,
            "offboard_access_collect": collect,
            "offboard_login_attempts": login_attempts,
            "offboard_bind_results": bind_results,
            "offboard_probe_results": probe_results,
            "offboard_without_keys": lambda text, fps: rules.without_keys(str(text), list(fps)),
        }
