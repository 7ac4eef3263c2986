#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Find, back up and delete Group Policy Objects on a Samba Active Directory domain controller."""

from __future__ import annotations

DOCUMENTATION = r"""
module: samba_gpo
short_description: Find, back up, unlink and delete GPOs on a Samba AD domain controller
description:
  - Runs on the domain controller itself, as root.
  - O(state=query) reads the directory (the local sam.ldb, no credentials needed) and the GPOs' sysvol
    folders. It reports whether the host is a Samba AD DC at all, and for every GPO its GUID, display
    name, the containers linking it (every object whose gPLink names it) and which O(setting_patterns)
    its settings files match (file names only; a setting's value is never returned, GPP files can hold
    passwords). Safe in check mode and for verification.
  - O(state=backup) writes C(samba-tool gpo backup) of one GPO plus its directory attributes and links
    into a .tar.gz below O(backup_dir) and returns the archive's path and sha256.
  - O(state=absent) removes every link of one GPO (C(samba-tool gpo dellink)), deletes it
    (C(samba-tool gpo del)) and reads the directory again to verify.
  - backup and absent talk to the DC's LDAP and SMB services with Kerberos, from a keytab (O(keytab),
    O(principal)) turned into a private credential cache for this call, or an existing cache
    (O(ccache)). No password is ever put on a command line.
options:
  state:
    description: What to do.
    type: str
    choices: [query, backup, absent]
    default: query
  setting_patterns:
    description: Case-insensitive regular expressions searched in the text of every settings file.
    type: list
    elements: str
    default: []
  guid:
    description: The GPO, as its GUID in braces (O(state=backup) and O(state=absent)).
    type: str
  backup_dir:
    description: Folder on the DC for the archive (created 0700) (O(state=backup)).
    type: path
    default: /var/lib/offboard/gpo-backups
  url:
    description: The DC's LDAP URL for samba-tool; default V(ldap://<netbios name>.<realm>).
    type: str
  keytab:
    description: Keytab to authenticate with (O(principal) required).
    type: path
  principal:
    description: Kerberos principal in O(keytab), e.g. V(Administrator@LAB.TEST).
    type: str
  ccache:
    description: An existing Kerberos credential cache (e.g. V(FILE:/tmp/krb5cc_0)) instead of a keytab.
    type: str
  timeout:
    description: Seconds one samba-tool call may take.
    type: int
    default: 120
supports_check_mode: true
author: offboard project
"""

EXAMPLES = r"""
- name: GPO | discover
  samba_gpo:
    setting_patterns: ['NinjaRMMAgent', '\\\\msp']
  register: found

- name: GPO | delete one
  samba_gpo:
    state: absent
    guid: "{31B2F340-0000-0000-0000-000000000000}"
    keytab: /root/admin.keytab
    principal: Administrator@LAB.TEST
"""

RETURN = r"""
is_dc: {description: whether this host is a Samba AD domain controller, returned: always, type: bool}
realm: {description: the AD DNS domain, returned: when is_dc, type: str}
gpos:
  description: every GPO of the domain (O(state=query)), or the one GPO after the change.
  returned: when is_dc
  type: list
  elements: dict
  contains:
    guid: {description: GUID in braces, upper case, type: str}
    name: {description: display name, type: str}
    dn: {description: the groupPolicyContainer's DN, type: str}
    links: {description: DNs of the containers whose gPLink names the GPO, type: list}
    setting_hits: {description: "[{pattern, file}] settings files matching a pattern", type: list}
    files: {description: settings files below the GPO's sysvol folder, relative, type: list}
method: {description: how the query looked (for the evidence), returned: query on a DC, type: str}
link_index:
  description: GUID -> containers, from every gPLink (also links to GPOs that no longer exist).
  returned: query on a DC
  type: dict
archive: {description: path of the backup archive on the DC, returned: state=backup, type: str}
sha256: {description: sha256 of the archive, returned: state=backup, type: str}
unlinked: {description: containers the link was removed from, returned: state=absent, type: list}
deleted: {description: whether the GPO was deleted, returned: state=absent, type: bool}
"""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

DC_ROLE = "active directory domain controller"
GUID_RE = re.compile(r"^\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}$")
# One gPLink entry: [LDAP://cn={GUID},cn=policies,...;options]
GPLINK_RE = re.compile(r"\[LDAP://([^;\]]+);(\d+)\]", re.IGNORECASE)
MAX_FILE_BYTES = 4 * 1024 * 1024


def decode_settings(data: bytes) -> str:
    """Text of a settings file as Windows writes them: UTF-16LE (with BOM: scripts.ini, GptTmpl.inf;
    Registry.pol's strings), UTF-8 (GPP XML), or ANSI. Unknown bytes are dropped, never guessed."""
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="ignore")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="ignore")
    if data.startswith(b"PReg"):
        # Registry.pol: a binary frame around UTF-16LE key, value and string data.
        return data[8:].decode("utf-16-le", errors="ignore").replace("\x00", " ")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="ignore")
    if len(data) >= 4 and data[1:4:2] == b"\x00\x00" and data[0] != 0:
        return data.decode("utf-16-le", errors="ignore")  # UTF-16LE without BOM
    return data.decode("utf-8", errors="ignore") if _utf8(data) else data.decode("latin-1")


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def compile_patterns(patterns: list[str]) -> list[tuple[str, re.Pattern[str]]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append((pattern, re.compile(pattern, re.IGNORECASE)))
        except re.error as exc:
            raise ValueError(f"setting pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    return compiled


def setting_hits(folder: str, patterns: list[tuple[str, re.Pattern[str]]]) -> tuple[list[dict], list[str]]:
    """Which patterns each settings file below a GPO folder matches: [{pattern, file}], files."""
    hits: list[dict] = []
    files: list[str] = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            files.append(rel)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                text = decode_settings(handle.read(MAX_FILE_BYTES))
            hits.extend({"pattern": p, "file": rel} for p, rx in patterns if rx.search(text))
    return hits, files


def parse_gplink(value: str) -> list[tuple[str, int]]:
    """gPLink -> [(gpo dn, options)] in the order stored."""
    return [(m.group(1), int(m.group(2))) for m in GPLINK_RE.finditer(value or "")]


def guid_of(dn: str) -> str:
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1].upper() if "=" in first else first.upper()


class Samba:
    """The local directory, read through Samba's Python bindings as root (no credentials)."""

    def __init__(self) -> None:
        import ldb
        from samba.auth import system_session
        from samba.param import LoadParm
        from samba.samdb import SamDB

        self.ldb = ldb
        self.lp = LoadParm()
        self.lp.load_default()
        self.role = (self.lp.get("server role") or "").lower()
        self.realm = (self.lp.get("realm") or "").lower()
        self.samdb = None
        if self.role == DC_ROLE:
            self.samdb = SamDB(
                url=self.lp.samdb_url(), session_info=system_session(), lp=self.lp, auto_connect=True
            )

    @property
    def is_dc(self) -> bool:
        return self.samdb is not None

    def policies_dir(self) -> str:
        sysvol = self.lp.get("path", "sysvol") or "/var/lib/samba/sysvol"
        return os.path.join(sysvol, self.realm, "Policies")

    def gpo_folder(self, guid: str) -> str | None:
        base = self.policies_dir()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(base):
                if name.upper() == guid.upper():
                    return os.path.join(base, name)
        return None

    def links(self) -> dict[str, list[str]]:
        """GUID -> containers linking it: every object with a gPLink, domain and configuration (sites)."""
        out: dict[str, list[str]] = {}
        bases = [str(self.samdb.domain_dn()), str(self.samdb.get_config_basedn())]
        for base in bases:
            res = self.samdb.search(
                base=base, scope=self.ldb.SCOPE_SUBTREE, expression="(gPLink=*)", attrs=["gPLink"]
            )
            for msg in res:
                for gpo_dn, _opts in parse_gplink(str(msg["gPLink"][0])):
                    out.setdefault(guid_of(gpo_dn), []).append(str(msg.dn))
        return out

    def gpos(self, patterns: list[tuple[str, re.Pattern[str]]], only: str | None = None) -> list[dict]:
        res = self.samdb.search(
            base=f"CN=Policies,CN=System,{self.samdb.domain_dn()}",
            scope=self.ldb.SCOPE_ONELEVEL,
            expression="(objectClass=groupPolicyContainer)",
            attrs=[
                "name",
                "displayName",
                "flags",
                "versionNumber",
                "gPCMachineExtensionNames",
                "gPCUserExtensionNames",
                "whenCreated",
                "whenChanged",
            ],
        )
        links = self.links()
        out = []
        for msg in res:
            guid = str(msg["name"][0]).upper()
            if only and guid != only.upper():
                continue
            folder = self.gpo_folder(guid)
            hits, files = setting_hits(folder, patterns) if folder else ([], [])
            attrs = {
                k: str(msg[k][0])
                for k in (
                    "flags",
                    "versionNumber",
                    "gPCMachineExtensionNames",
                    "gPCUserExtensionNames",
                    "whenCreated",
                    "whenChanged",
                )
                if k in msg
            }
            out.append(
                {
                    "guid": guid,
                    "name": str(msg["displayName"][0]) if "displayName" in msg else "",
                    "dn": str(msg.dn),
                    "links": sorted(links.get(guid, [])),
                    "setting_hits": hits,
                    "files": files,
                    "attributes": attrs,
                    "sysvol_folder": folder is not None,
                }
            )
        return sorted(out, key=lambda g: (g["name"].lower(), g["guid"]))


class Kerberos:
    """A private credential cache for the samba-tool calls of one module run."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.tmp = None
        self.env = dict(os.environ)
        keytab, principal, ccache = (module.params[k] for k in ("keytab", "principal", "ccache"))
        if keytab:
            if not principal:
                module.fail_json(msg="samba_gpo: 'keytab' needs 'principal'")
            self.tmp = tempfile.mkdtemp(prefix="offboard-gpo-krb-")
            cache = f"FILE:{self.tmp}/cc"
            proc = subprocess.run(
                ["kinit", "-k", "-t", keytab, "-c", cache, principal],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if proc.returncode != 0:
                self.close()
                module.fail_json(
                    msg=f"kinit with {keytab} for {principal} failed: {proc.stderr.strip()[-400:]}"
                )
            self.env["KRB5CCNAME"] = cache
        elif ccache:
            self.env["KRB5CCNAME"] = ccache
        else:
            module.fail_json(
                msg="samba_gpo: changing GPOs needs Kerberos credentials of a domain admin on the DC: set "
                "'keytab' and 'principal' (gpo_cleanup_samba_keytab / gpo_cleanup_samba_principal) "
                "or 'ccache'"
            )

    def close(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def samba_tool(module: AnsibleModule, krb: Kerberos, url: str, *args: str) -> str:
    cmd = ["samba-tool", *args, "-H", url, "--use-kerberos=required"]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=module.params["timeout"],
            check=False,
            env=krb.env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        krb.close()
        module.fail_json(
            msg=f"samba-tool {' '.join(args[:2])} did not finish within {module.params['timeout']}s"
        )
    if proc.returncode != 0:
        krb.close()
        module.fail_json(
            msg=f"samba-tool {' '.join(args[:2])} failed (rc {proc.returncode}): {proc.stderr.strip()[-600:]}"
        )
    return proc.stdout


def archive_backup(backup_root: str, gpo: dict, dest: str) -> str:
    """tar.gz of samba-tool's backup folder plus gpo.json (attributes, links, matches); returns sha256."""
    meta = json.dumps(
        {k: gpo[k] for k in ("guid", "name", "dn", "links", "setting_hits", "attributes")},
        indent=2,
        sort_keys=True,
    ).encode()
    tmp = dest + ".part"
    with tarfile.open(tmp, "w:gz") as tar:
        info = tarfile.TarInfo(f"{gpo['guid']}/gpo.json")
        info.size = len(meta)
        info.mode = 0o600
        tar.addfile(info, io.BytesIO(meta))
        tar.add(backup_root, arcname=f"{gpo['guid']}/samba-tool-backup")
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)
    digest = hashlib.sha256()
    with open(dest, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["query", "backup", "absent"], "default": "query"},
            "setting_patterns": {"type": "list", "elements": "str", "default": []},
            "guid": {"type": "str"},
            "backup_dir": {"type": "path", "default": "/var/lib/offboard/gpo-backups"},
            "url": {"type": "str"},
            "keytab": {"type": "path", "no_log": False},
            "principal": {"type": "str"},
            "ccache": {"type": "str"},
            "timeout": {"type": "int", "default": 120},
        },
        required_if=[("state", "backup", ["guid"]), ("state", "absent", ["guid"])],
        supports_check_mode=True,
    )
    state = module.params["state"]
    try:
        patterns = compile_patterns(module.params["setting_patterns"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        samba = Samba()
    except ImportError:
        module.exit_json(
            changed=False, is_dc=False, gpos=[], reason="Samba's Python bindings are not installed"
        )
    if not samba.is_dc:
        module.exit_json(changed=False, is_dc=False, gpos=[], reason=f"server role is {samba.role or 'none'}")
    if state == "query":
        module.exit_json(
            changed=False,
            is_dc=True,
            realm=samba.realm,
            gpos=samba.gpos(patterns),
            link_index=samba.links(),
            method="samba_gpo: CN=Policies objects, every gPLink (domain, sites), settings files in sysvol",
        )

    guid = module.params["guid"].upper()
    if not GUID_RE.match(guid):
        module.fail_json(msg=f"samba_gpo: guid {guid!r} is not a GUID in braces")
    found = samba.gpos(patterns, only=guid)
    url = module.params["url"] or f"ldap://{(samba.lp.get('netbios name') or '').lower()}.{samba.realm}"
    if state == "backup":
        if not found:
            module.fail_json(msg=f"GPO {guid} does not exist: nothing to back up")
        if module.check_mode:
            module.exit_json(
                changed=False, is_dc=True, realm=samba.realm, gpos=found, archive=None, sha256=None
            )
        os.makedirs(module.params["backup_dir"], mode=0o700, exist_ok=True)
        os.chmod(module.params["backup_dir"], 0o700)
        krb = Kerberos(module)
        work = tempfile.mkdtemp(prefix="offboard-gpo-", dir=module.params["backup_dir"])
        try:
            samba_tool(module, krb, url, "gpo", "backup", guid, "--tmpdir", work)
            backup_root = os.path.join(work, "policy", guid)
            if not os.path.isdir(backup_root):
                module.fail_json(msg=f"samba-tool gpo backup wrote no folder for {guid} below {work}")
            dest = os.path.join(module.params["backup_dir"], f"{guid}.tar.gz")
            sha = archive_backup(backup_root, found[0], dest)
        finally:
            krb.close()
            shutil.rmtree(work, ignore_errors=True)
        # The backup is written on the DC only (a copy, not a change of the directory).
        module.exit_json(changed=False, is_dc=True, realm=samba.realm, gpos=found, archive=dest, sha256=sha)

    # state == absent
    if not found:
        module.exit_json(changed=False, is_dc=True, realm=samba.realm, gpos=[], unlinked=[], deleted=False)
    links = found[0]["links"]
    if module.check_mode:
        module.exit_json(
            changed=True, is_dc=True, realm=samba.realm, gpos=found, unlinked=links, deleted=True
        )
    krb = Kerberos(module)
    try:
        for container in links:
            samba_tool(module, krb, url, "gpo", "dellink", container, guid)
        samba_tool(module, krb, url, "gpo", "del", guid)
    finally:
        krb.close()
    after = Samba().gpos(patterns, only=guid)
    still_linked = [c for g in after for c in g["links"]]
    folder_left = Samba().gpo_folder(guid) is not None
    module.exit_json(
        changed=True,
        is_dc=True,
        realm=samba.realm,
        gpos=after,
        unlinked=links,
        deleted=not after,
        still_linked=still_linked,
        sysvol_folder_left=folder_left,
    )


if __name__ == "__main__":
    main()
