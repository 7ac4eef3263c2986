#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Module: the departing MSP's accounts and groups in a Samba AD directory, run on a domain controller.

Uses Samba's own Python bindings (python3-samba: SamDB over the local sam.ldb, system session as root),
the same calls samba-tool makes for `user disable`, `group removemembers`, `user delete` and
`user setpassword`, so no password ever appears on a command line.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: samba_directory_access
short_description: Discover, revoke or rotate directory accounts on a Samba AD domain controller
description:
  - I(state=query) lists the MSP's users (in its OU, in its groups, documented, or matching its name
    patterns), its groups and their memberships, and the client's kept directory accounts.
  - I(state=revoked) disables (or deletes) the MSP's users, removes them from every group, and removes the
    MSP's groups from every group they are nested in (e.g. Domain Admins). Check mode reports only.
  - I(state=password) sets a new password on one kept account (the password is a no_log parameter).
  - On a host that is not a Samba AD DC it returns is_dc false and changes nothing.
options:
  state:
    {description: query, revoked or password., type: str, choices: [query, revoked, password], default: query}
  sam_url: {description: The directory database., type: str, default: /var/lib/samba/private/sam.ldb}
  msp_ou:
    {description: MSP OU relative to the domain (OU=MSP Technicians) or full DN., type: str, default: ""}
  msp_groups: {description: The MSP's groups (sAMAccountName)., type: list, elements: str, default: []}
  accounts: {description: Documented MSP directory accounts., type: list, elements: str, default: []}
  account_patterns:
    {description: fnmatch patterns of MSP account names., type: list, elements: str, default: []}
  keep_accounts: {description: Directory accounts the client keeps., type: list, elements: str, default: []}
  account_action: {description: disable or delete., type: str, choices: [disable, delete], default: disable}
  name: {description: Account whose password is set (state=password)., type: str}
  password: {description: The new password (state=password)., type: str, no_log: true}
"""

RETURN = r"""
is_dc: {description: Whether this host holds a Samba AD directory., type: bool, returned: always}
domain_dn: {description: The domain's DN., type: str, returned: when is_dc}
accounts: {description: The MSP users (name, dn, disabled, groups)., type: list, returned: always}
groups: {description: The MSP's groups (name, dn, member_of)., type: list, returned: always}
kept: {description: Kept accounts present (name, disabled, last_change)., type: list, returned: always}
revoked: {description: What was (would be) changed., type: dict, returned: state=revoked}
"""

UF_ACCOUNTDISABLE = 0x2


def _s(values) -> str:
    return str(values[0]) if values else ""


def _name_of(dn: str) -> str:
    return dn.split(",", 1)[0].split("=", 1)[1]


def filetime_date(value: str) -> str:
    """AD FILETIME (100 ns since 1601-01-01) -> ISO date; '' for never/unset."""
    try:
        ticks = int(value)
    except (TypeError, ValueError):
        return ""
    if ticks <= 0:
        return ""
    return (dt.datetime(1601, 1, 1) + dt.timedelta(microseconds=ticks // 10)).date().isoformat()


class Directory:
    def __init__(self, module: AnsibleModule) -> None:
        import ldb
        from samba.auth import system_session
        from samba.param import LoadParm
        from samba.samdb import SamDB

        self.ldb = ldb
        lp = LoadParm()
        lp.load_default()
        self.db = SamDB(url=module.params["sam_url"], session_info=system_session(), lp=lp)
        self.base = str(self.db.domain_dn())
        self.p = module.params

    def ou_dn(self) -> str:
        ou = self.p["msp_ou"]
        if not ou:
            return ""
        return ou if ou.lower().endswith(self.base.lower()) else f"{ou},{self.base}"

    def _search(self, expression: str, base: str | None = None) -> list:
        return list(
            self.db.search(
                base=base or self.base,
                scope=self.ldb.SCOPE_SUBTREE,
                expression=expression,
                attrs=["sAMAccountName", "userAccountControl", "memberOf", "pwdLastSet", "member"],
            )
        )

    def users(self) -> list:
        return self._search("(&(objectClass=user)(!(objectClass=computer)))")

    def report(self) -> dict:
        ou = self.ou_dn().lower()
        groups = {g.lower() for g in self.p["msp_groups"]}
        documented = set(self.p["accounts"])
        keep = set(self.p["keep_accounts"])
        accounts, kept = [], []
        for msg in self.users():
            name = _s(msg.get("sAMAccountName"))
            dn = str(msg.dn)
            member_of = [str(g) for g in msg.get("memberOf") or []]
            uac = int(_s(msg.get("userAccountControl")) or 0)
            if name in keep:
                kept.append(
                    {
                        "name": name,
                        "disabled": bool(uac & UF_ACCOUNTDISABLE),
                        "password_state": "set",
                        "last_change": filetime_date(_s(msg.get("pwdLastSet"))),
                    }
                )
                continue
            why = (
                "documented"
                if name in documented
                else "msp_ou"
                if ou and dn.lower().endswith("," + ou)
                else "msp_group"
                if any(_name_of(g).lower() in groups for g in member_of)
                else "pattern"
                if any(fnmatch.fnmatchcase(name, p) for p in self.p["account_patterns"])
                else ""
            )
            if not why:
                continue
            accounts.append(
                {
                    "name": name,
                    "dn": dn,
                    "disabled": bool(uac & UF_ACCOUNTDISABLE),
                    "groups": sorted(_name_of(g) for g in member_of),
                    "matched_by": why,
                    "documented": name in documented,
                }
            )
        msp_groups = []
        for name in self.p["msp_groups"]:
            found = self._search(f"(&(objectClass=group)(sAMAccountName={self.ldb.binary_encode(name)}))")
            for msg in found:
                msp_groups.append(
                    {
                        "name": _s(msg.get("sAMAccountName")),
                        "dn": str(msg.dn),
                        "member_of": sorted(_name_of(str(g)) for g in msg.get("memberOf") or []),
                    }
                )
        return {
            "is_dc": True,
            "domain_dn": self.base,
            "accounts": accounts,
            "groups": msp_groups,
            "kept": kept,
            "kept_present": [k["name"] for k in kept],
        }

    def revoke(self, module: AnsibleModule, found: dict) -> dict:
        done: dict[str, list] = {"accounts": [], "memberships": []}
        check = module.check_mode
        for account in found["accounts"]:
            name = account["name"]
            flt = f"(sAMAccountName={self.ldb.binary_encode(name)})"
            if self.p["account_action"] == "delete":
                done["accounts"].append({"name": name, "action": "deleted"})
                if not check:
                    self.db.delete(account["dn"])
                continue
            for group in account["groups"]:
                done["memberships"].append({"group": group, "member": name})
                if not check:
                    self.db.add_remove_group_members(group, [name], add_members_operation=False)
            if not account["disabled"]:
                done["accounts"].append({"name": name, "action": "disabled"})
                if not check:
                    self.db.disable_account(flt)
        for group in found["groups"]:
            for parent in group["member_of"]:
                done["memberships"].append({"group": parent, "member": group["name"]})
                if not check:
                    self.db.add_remove_group_members(parent, [group["name"]], add_members_operation=False)
        return done


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["query", "revoked", "password"], "default": "query"},
            "sam_url": {"type": "str", "default": "/var/lib/samba/private/sam.ldb"},
            "msp_ou": {"type": "str", "default": ""},
            "msp_groups": {"type": "list", "elements": "str", "default": []},
            "accounts": {"type": "list", "elements": "str", "default": []},
            "account_patterns": {"type": "list", "elements": "str", "default": []},
            "keep_accounts": {"type": "list", "elements": "str", "default": []},
            "account_action": {"type": "str", "choices": ["disable", "delete"], "default": "disable"},
            "name": {"type": "str"},
            "password": {"type": "str", "no_log": True},
        },
        required_if=[("state", "password", ("name", "password"))],
        supports_check_mode=True,
    )
    empty = {"is_dc": False, "accounts": [], "groups": [], "kept": [], "kept_present": [], "changed": False}
    if not os.path.exists(module.params["sam_url"]):
        module.exit_json(**empty)
    try:
        directory = Directory(module)
    except ImportError:
        module.exit_json(**empty, msg="sam.ldb exists but python3-samba is not installed")
    found = directory.report()
    if module.params["state"] == "query":
        module.exit_json(changed=False, **found)
    if module.params["state"] == "password":
        if len(module.params["password"]) < 12:
            module.fail_json(msg="refusing to set a password shorter than 12 characters")
        if module.params["name"] not in found["kept_present"]:
            module.fail_json(msg=f"{module.params['name']} is not a kept account present in the directory")
        if not module.check_mode:
            flt = f"(sAMAccountName={directory.ldb.binary_encode(module.params['name'])})"
            directory.db.setpassword(flt, module.params["password"], force_change_at_next_login=False)
        module.exit_json(changed=True, **directory.report())
    done = directory.revoke(module, found)
    module.exit_json(changed=any(done.values()), revoked=done, **found)


if __name__ == "__main__":
    main()
