#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Module: what the departing MSP holds on one Linux host (accounts, SSH keys, sudoers, admin groups),
and its revocation. The matching rules live in module_utils/offboard_access_rules.py."""

from __future__ import annotations

import datetime as dt
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.offboard.msp.plugins.module_utils.offboard_access_rules import (  # noqa: F401 (tests)
    KEY_TYPES,
    _split_options,
    classify_sudoers,
    fingerprint,
    matches_any,
    msp_account_names,
    msp_key_lines,
    normalize_fingerprint,
    parse_group,
    parse_key_line,
    parse_passwd,
    parse_shadow,
    remove_lines,
    sudoers_principals,
    without_keys,
)

DOCUMENTATION = r"""
module: local_access
short_description: Discover and revoke a departing MSP's local access on a Linux host
description:
  - Reads /etc/passwd, /etc/shadow (state only, never the hash), /etc/group, every account's
    authorized_keys, /etc/sudoers and /etc/sudoers.d, and reports what belongs to the MSP.
  - With I(state=revoked) disables (or deletes) the MSP's accounts, removes them from local admin groups,
    removes the MSP's SSH keys by fingerprint (other keys in the same file stay byte-identical) and the
    MSP's sudoers rules (whole drop-ins, or single lines checked with visudo before the file is replaced).
  - Rules that name the MSP together with others (mixed) are reported and never rewritten.
  - Supports check mode (reports what would change, changes nothing) and diff-free idempotence.
options:
  state: {description: query or revoked., type: str, choices: [query, revoked], default: query}
  accounts: {description: Documented MSP account names., type: list, elements: str, default: []}
  account_patterns:
    {description: fnmatch patterns of MSP account names., type: list, elements: str, default: []}
  keep_accounts:
    {description: Accounts the client keeps; never the MSP's., type: list, elements: str, default: []}
  key_fingerprints:
    {description: Documented MSP key fingerprints (SHA256:...)., type: list, elements: str, default: []}
  key_comment_patterns:
    {description: fnmatch patterns of MSP key comments., type: list, elements: str, default: []}
  sudoers_patterns:
    {description: fnmatch patterns of MSP sudoers drop-in names., type: list, elements: str, default: []}
  msp_groups:
    {description: Local groups of the MSP (sudoers %group rules)., type: list, elements: str, default: []}
  admin_groups:
    {description: Local admin groups., type: list, elements: str, default: [sudo, wheel, admin]}
  account_action:
    {description: disable or delete MSP accounts., type: str, choices: [disable, delete], default: disable}
"""

RETURN = r"""
accounts:
  description: MSP accounts found (name, uid, shell, password_state, expired, admin_groups, matched_by).
  type: list
  returned: always
keys:
  description: Keys of every authorized_keys file (path, owner, fingerprint, comment, msp, documented).
  type: list
  returned: always
sudoers: {description: sudoers files granting the MSP., type: list, returned: always}
admin_members:
  {description: 'Members of local admin groups (group, user, msp).', type: list, returned: always}
kept:
  {description: 'Kept accounts present (name, password_state, last_change).', type: list, returned: always}
revoked: {description: What was (would be) changed., type: dict, returned: state=revoked}
"""

NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return ""


def _today_days() -> int:
    return (dt.datetime.now(dt.UTC).date() - dt.date(1970, 1, 1)).days


class Host:
    """Everything the module reads on the host, read once per probe."""

    def __init__(self, params: dict, root: str = "/") -> None:
        self.p = params
        self.root = root
        self.passwd = parse_passwd(_read(self._path("etc/passwd")))
        self.shadow = parse_shadow(_read(self._path("etc/shadow")))
        self.groups = parse_group(_read(self._path("etc/group")))
        self.msp = msp_account_names(
            self.passwd, params["accounts"], params["account_patterns"], params["keep_accounts"]
        )

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, rel.lstrip("/"))

    def accounts(self) -> list[dict]:
        out = []
        today = _today_days()
        for entry in self.passwd:
            if entry["name"] not in self.msp:
                continue
            shadow = self.shadow.get(entry["name"], {})
            expire = shadow.get("expire")
            out.append(
                {
                    "name": entry["name"],
                    "uid": entry["uid"],
                    "home": entry["home"],
                    "shell": entry["shell"],
                    "password_state": shadow.get("password_state", "unknown"),
                    "expired": expire is not None and expire <= today,
                    "login_shell": entry["shell"] not in NOLOGIN_SHELLS,
                    "admin_groups": sorted(
                        g for g in self.p["admin_groups"] if entry["name"] in self.groups.get(g, [])
                    ),
                    "matched_by": self.msp[entry["name"]],
                    "documented": entry["name"] in self.p["accounts"],
                }
            )
        return out

    def key_files(self) -> list[tuple[str, str]]:
        seen = set()
        files = []
        for entry in self.passwd:
            home = entry["home"]
            if not home or home in ("/", "/nonexistent"):
                continue
            for name in ("authorized_keys", "authorized_keys2"):
                path = self._path(os.path.join(home, ".ssh", name))
                real = os.path.realpath(path)
                if real in seen or not os.path.isfile(path):
                    continue
                seen.add(real)
                files.append((path, entry["name"]))
        return files

    def keys(self) -> list[dict]:
        out = []
        for path, owner in self.key_files():
            for key in msp_key_lines(
                _read(path), owner in self.msp, self.p["key_fingerprints"], self.p["key_comment_patterns"]
            ):
                key.update(path=path, owner=owner)
                out.append(key)
        return out

    def sudoers_files(self) -> list[str]:
        files = [self._path("etc/sudoers")]
        folder = self._path("etc/sudoers.d")
        if os.path.isdir(folder):
            # sudo skips drop-ins whose names end in ~ or contain a dot (sudoers(5) #includedir).
            files += [
                os.path.join(folder, n)
                for n in sorted(os.listdir(folder))
                if not n.endswith("~") and "." not in n and os.path.isfile(os.path.join(folder, n))
            ]
        return files

    def sudoers(self) -> list[dict]:
        out = []
        for path in self.sudoers_files():
            text = _read(path)
            found = classify_sudoers(text, self.msp, self.p["msp_groups"])
            by_name = path != self._path("etc/sudoers") and matches_any(
                os.path.basename(path), self.p["sudoers_patterns"]
            )
            only_msp = found["msp_lines"] and not found["mixed_lines"] and found["other_rules"] == 0
            if not (by_name or found["msp_lines"] or found["mixed_lines"]):
                continue
            out.append(
                {
                    "path": path,
                    "whole_file": bool(path != self._path("etc/sudoers") and (by_name or only_msp)),
                    "matched_by": "file name pattern" if by_name else "rule names the MSP",
                    **found,
                }
            )
        return out

    def admin_members(self) -> list[dict]:
        return [
            {"group": g, "user": u, "msp": u in self.msp}
            for g in self.p["admin_groups"]
            for u in self.groups.get(g, [])
        ]

    def kept(self) -> list[dict]:
        """The client's kept accounts present here, with the day their password was last set."""
        out = []
        for entry in self.passwd:
            if entry["name"] not in self.p["keep_accounts"]:
                continue
            shadow = self.shadow.get(entry["name"], {})
            days = shadow.get("last_change")
            out.append(
                {
                    "name": entry["name"],
                    "password_state": shadow.get("password_state", "unknown"),
                    "last_change": (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()
                    if days is not None
                    else "",
                }
            )
        return out

    def report(self) -> dict:
        kept = self.kept()
        return {
            "kept": kept,
            "kept_present": [k["name"] for k in kept],
            "accounts": self.accounts(),
            "keys": self.keys(),
            "sudoers": self.sudoers(),
            "admin_members": self.admin_members(),
        }


def _replace_file(module: AnsibleModule, path: str, text: str, validate: list[str] | None = None) -> None:
    """Atomically replace path with text, keeping owner and mode; optional validator gets the temp path."""
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".offboard-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
        if validate:
            rc, out, err = module.run_command([*validate, tmp])
            if rc != 0:
                module.fail_json(msg=f"refusing to write {path}: validation failed: {(err or out).strip()}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def revoke(module: AnsibleModule, host: Host, found: dict) -> dict:
    """Change only what discovery found; returns what was (or, in check mode, would be) changed."""
    check = module.check_mode
    done: dict[str, list] = {"accounts": [], "groups": [], "keys": [], "sudoers": []}

    def run(argv: list[str]) -> None:
        if check:
            return
        rc, out, err = module.run_command(argv)
        if rc != 0:
            module.fail_json(msg=f"{argv[0]} failed (rc {rc}): {(err or out).strip()}", revoked=done)

    # Keys and sudoers first: they grant access independently of the account state.
    drop: dict[str, list[str]] = {}
    for key in found["keys"]:
        if key["msp"]:
            drop.setdefault(key["path"], []).append(key["fingerprint"])
    for path, fps in drop.items():
        done["keys"] += [{"path": path, "fingerprint": fp} for fp in fps]
        if not check:
            _replace_file(module, path, without_keys(_read(path), fps))
    for entry in found["sudoers"]:
        if entry["whole_file"]:
            done["sudoers"].append({"path": entry["path"], "removed": "file"})
            if not check:
                os.unlink(entry["path"])
        elif entry["msp_lines"]:
            done["sudoers"].append({"path": entry["path"], "removed": entry["msp_lines"]})
            if not check:
                new = remove_lines(_read(entry["path"]), entry["msp_lines"])
                _replace_file(module, entry["path"], new, validate=["visudo", "-c", "-q", "-f"])
    for account in found["accounts"]:
        name = account["name"]
        if module.params["account_action"] == "delete":
            done["accounts"].append({"name": name, "action": "deleted"})
            # userdel without -r: the home folder may hold the client's data; the report names it.
            run(["userdel", name])
            continue
        for group in account["admin_groups"]:
            done["groups"].append({"group": group, "user": name})
            run(["gpasswd", "-d", name, group])
        steps = []
        if account["password_state"] == "set":
            steps += ["-L"]
        if not account["expired"]:
            steps += ["-e", "1"]
        if account["login_shell"]:
            steps += ["-s", "/usr/sbin/nologin"]
        if steps:
            done["accounts"].append({"name": name, "action": "disabled", "steps": steps})
            run(["usermod", *steps, name])
    return done


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["query", "revoked"], "default": "query"},
            "accounts": {"type": "list", "elements": "str", "default": []},
            "account_patterns": {"type": "list", "elements": "str", "default": []},
            "keep_accounts": {"type": "list", "elements": "str", "default": []},
            "key_fingerprints": {"type": "list", "elements": "str", "default": []},
            "key_comment_patterns": {"type": "list", "elements": "str", "default": []},
            "sudoers_patterns": {"type": "list", "elements": "str", "default": []},
            "msp_groups": {"type": "list", "elements": "str", "default": []},
            "admin_groups": {"type": "list", "elements": "str", "default": ["sudo", "wheel", "admin"]},
            "account_action": {"type": "str", "choices": ["disable", "delete"], "default": "disable"},
        },
        supports_check_mode=True,
    )
    host = Host(module.params)
    found = host.report()
    result = dict(found, changed=False)
    if module.params["state"] == "revoked":
        done = revoke(module, host, found)
        result["revoked"] = done
        result["changed"] = any(done.values())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
