# Plants the lab's directory content on the Samba AD DC (lab-dc01): what a departing MSP leaves in a
# client's Active Directory, and the client's own objects, which must survive. Piped to the DC's python3
# by wrapper/offboard/lab_dc.py on every `offboard lab up`; idempotent: it only creates or repairs what
# an offboarding run (or anything else) changed, and prints CHANGED or UNCHANGED as its last line.
#
# Directory objects are written through Samba's own Python bindings on the local sam.ldb (fast, no
# network, no password). GPOs are created with `samba-tool gpo create` (it also creates the GPO's sysvol
# folder with the right ACLs), authenticated by the root-only file written at provisioning.
import json
import os
import socket
import struct
import subprocess
import sys
import time

import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

STATE = "/root/.offboard-lab-dc"
AUTH = f"{STATE}/admin.auth"
KEYTAB = f"{STATE}/admin.keytab"
CCACHE = f"FILE:{STATE}/krb5cc"
REALM = "lab.test"
SYSVOL = f"/var/lib/samba/sysvol/{REALM}/Policies"
READY_TIMEOUT = float(os.environ.get("LAB_DC_READY_TIMEOUT", "150"))

OUS = ["OU=Workstations", "OU=Servers", "OU=MSP Technicians", "OU=Client Staff"]
# (name, ou, groups) - the MSP's technicians and service account, and the client's own staff.
USERS = [
    ("msp-tech1", "OU=MSP Technicians", ["MSP Admins"]),
    ("msp-tech2", "OU=MSP Technicians", ["MSP Admins"]),
    ("msp-svc-backup", "OU=MSP Technicians", ["Backup Operators"]),
    ("client-admin", "OU=Client Staff", ["Domain Admins"]),
    ("client-user1", "OU=Client Staff", []),
]
GROUPS = [("MSP Admins", "OU=MSP Technicians", ["Domain Admins"])]


def read(path, mode="r"):
    with open(path, mode) as handle:
        return handle.read()


def utf16(text):
    return b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le")


def registry_pol(entries):
    """A Registry.pol (PReg v1): [key;value;type;size;data] with UTF-16LE strings, as Windows writes it."""
    out = b"PReg" + struct.pack("<I", 1)
    for key, value, kind, data in entries:
        # REG_SZ (1): NUL-terminated UTF-16LE; REG_DWORD (4): little-endian 32 bits.
        raw = (data + "\0").encode("utf-16-le") if kind == 1 else struct.pack("<I", data)
        out += "[".encode("utf-16-le") + (key + "\0").encode("utf-16-le") + ";".encode("utf-16-le")
        out += (value + "\0").encode("utf-16-le") + ";".encode("utf-16-le")
        out += struct.pack("<I", kind) + ";".encode("utf-16-le") + struct.pack("<I", len(raw))
        out += ";".encode("utf-16-le") + raw + "]".encode("utf-16-le")
    return out


WU = r"Software\Policies\Microsoft\Windows\WindowsUpdate"
# name -> (containers it is linked to, {relative sysvol path: content})
GPOS = {
    # The MSP's, found by name.
    "MSP - RMM Agent Deploy": (
        [""],
        {
            "Machine/Scripts/scripts.ini": utf16(
                "[Startup]\n0CmdLine=\\\\lab.test\\NETLOGON\\msp\\deploy-ninja.cmd\n0Parameters=\n"
            )
        },
    ),
    "MSP - Patch Policy": (
        ["OU=Workstations", "OU=Servers"],
        {
            "Machine/Registry.pol": registry_pol(
                [
                    (WU, "WUServer", 1, "http://wsus.msp.test:8530"),
                    (WU, "WUStatusServer", 1, "http://wsus.msp.test:8530"),
                    (WU + r"\AU", "UseWUServer", 4, 1),
                ]
            )
        },
    ),
    # The MSP's, with an innocent name: found only by what its settings reference.
    "Workstation Baseline": (
        ["OU=Workstations"],
        {
            "Machine/Scripts/scripts.ini": utf16(
                "[Startup]\n0CmdLine=C:\\Program Files\\NinjaRMMAgent\\ninjarmmagent.exe\n"
                "0Parameters=/repair\n"
            )
        },
    ),
    # The client's own: must survive any offboarding.
    "Client - Password Policy": (
        [""],
        {
            "Machine/Microsoft/Windows NT/SecEdit/GptTmpl.inf": utf16(
                "[Unicode]\nUnicode=yes\n[System Access]\nMinimumPasswordLength = 12\n"
                'PasswordComplexity = 1\n[Version]\nsignature="$CHICAGO$"\nRevision=1\n'
            )
        },
    ),
    "Client - Drive Maps": (
        ["OU=Client Staff"],
        {
            "User/Scripts/scripts.ini": utf16(
                "[Logon]\n0CmdLine=\\\\lab.test\\NETLOGON\\client\\map-drives.cmd\n0Parameters=\n"
            )
        },
    ),
}

changed = []


def connect():
    lp = LoadParm()
    lp.load_default()
    return lp, SamDB(url="/var/lib/samba/private/sam.ldb", session_info=system_session(), lp=lp)


def samba_tool(*args, timeout=120):
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    cmd = ["samba-tool", *args, "-H", f"ldap://{host}.{REALM}", "--use-kerberos=required"]
    env = dict(os.environ, KRB5CCNAME=CCACHE)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip()[-600:]
        sys.exit(f"samba-tool {' '.join(args[:2])} failed (rc {proc.returncode}): {detail}")
    return proc.stdout


def listening(port):
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_ready():
    """Samba answers LDAP and SMB with the admin's credentials (the GPO commands need both)."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        active = subprocess.run(["systemctl", "is-active", "samba-ad-dc"], capture_output=True, text=True)
        if active.stdout.strip() == "active" and all(listening(port) for port in (88, 389, 445)):
            proc = subprocess.run(
                ["smbclient", "-A", AUTH, "//127.0.0.1/sysvol", "-c", "ls"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if proc.returncode == 0:
                # A fresh ticket, and no negative name lookups cached from before Samba's DNS answered.
                kinit = subprocess.run(
                    ["kinit", "-k", "-t", KEYTAB, "-c", CCACHE, "Administrator@LAB.TEST"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                if kinit.returncode != 0:
                    sys.exit(f"kinit with the lab admin keytab failed: {kinit.stderr.strip()[-300:]}")
                subprocess.run(["net", "cache", "flush"], capture_output=True, timeout=30, check=False)
                return
            last = (proc.stderr or proc.stdout).strip()[-300:]
        time.sleep(1)
    sys.exit(f"the Samba DC did not become ready within {READY_TIMEOUT:.0f}s: {last}")


def ensure_ous(samdb, base):
    for ou in OUS:
        dn = f"{ou},{base}"
        if not samdb.search(base=base, scope=ldb.SCOPE_SUBTREE, expression=f"(distinguishedName={dn})"):
            samdb.create_ou(dn)
            changed.append(f"ou {ou}")


def ensure_groups(samdb, base):
    for name, ou, member_of in GROUPS:
        if not samdb.search(base=base, expression=f"(&(objectClass=group)(sAMAccountName={name}))"):
            samdb.newgroup(name, groupou=ou)
            changed.append(f"group {name}")
        ensure_member_of(samdb, base, name, member_of)


def ensure_member_of(samdb, base, account, groups):
    for group in groups:
        res = samdb.search(base=base, expression=f"(sAMAccountName={group})", attrs=["member"])
        members = {str(m).lower() for m in res[0].get("member", [])} if res else set()
        acct = samdb.search(base=base, expression=f"(sAMAccountName={account})", attrs=["dn"])
        if str(acct[0].dn).lower() not in members:
            samdb.add_remove_group_members(group, [account], add_members_operation=True)
            changed.append(f"{account} in {group}")


def ensure_users(samdb, base):
    os.makedirs(f"{STATE}/users", mode=0o700, exist_ok=True)
    for name, ou, groups in USERS:
        pw_file = f"{STATE}/users/{name}.pw"
        if not os.path.exists(pw_file):
            import secrets

            with open(pw_file, "w") as handle:
                handle.write("Lab-" + secrets.token_urlsafe(15) + "\n")
            with open(f"{STATE}/users/{name}.auth", "w") as handle:
                handle.write(f"username={name}\npassword={read(pw_file).strip()}\ndomain=LAB\n")
        password = read(pw_file).strip()
        stamp_file = f"{STATE}/users/{name}.pwdlastset"
        res = samdb.search(
            base=base,
            expression=f"(&(objectClass=user)(sAMAccountName={name}))",
            attrs=["pwdLastSet", "userAccountControl"],
        )
        if not res:
            samdb.newuser(name, password, userou=ou, givenname=name, surname="Lab")
            changed.append(f"user {name}")
        else:
            if int(res[0]["userAccountControl"][0]) & 0x2:
                samdb.enable_account(f"(sAMAccountName={name})")
                changed.append(f"enabled {name}")
            stamp = read(stamp_file).strip() if os.path.exists(stamp_file) else ""
            if str(res[0]["pwdLastSet"][0]) != stamp:
                samdb.setpassword(f"(sAMAccountName={name})", password, force_change_at_next_login=False)
                changed.append(f"password of {name}")
        res = samdb.search(base=base, expression=f"(sAMAccountName={name})", attrs=["pwdLastSet"])
        with open(stamp_file, "w") as handle:
            handle.write(str(res[0]["pwdLastSet"][0]) + "\n")
        ensure_member_of(samdb, base, name, groups)


def gpo_dns(samdb, base):
    res = samdb.search(
        base=f"CN=Policies,CN=System,{base}",
        scope=ldb.SCOPE_ONELEVEL,
        expression="(objectClass=groupPolicyContainer)",
        attrs=["displayName", "name"],
    )
    return {str(r["displayName"][0]): (str(r["name"][0]), str(r.dn)) for r in res}


def ensure_gpos(samdb, base):
    existing = gpo_dns(samdb, base)
    for name in GPOS:
        if name not in existing:
            samba_tool("gpo", "create", name)
            changed.append(f"gpo {name}")
    existing = gpo_dns(samdb, base)
    for name, (links, files) in GPOS.items():
        guid, gpo_dn = existing[name]
        folder = f"{SYSVOL}/{guid}"
        for rel, content in files.items():
            path = f"{folder}/{rel}"
            if os.path.exists(path) and read(path, "rb") == content:
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
            changed.append(f"gpo {name}: {rel}")
        for ou in links:
            container = f"{ou},{base}" if ou else base
            res = samdb.search(base=container, scope=ldb.SCOPE_BASE, attrs=["gPLink"])
            current = str(res[0]["gPLink"][0]) if "gPLink" in res[0] else ""
            if gpo_dn.lower() in current.lower():
                continue
            msg = ldb.Message(ldb.Dn(samdb, container))
            msg["gPLink"] = ldb.MessageElement(
                current + f"[LDAP://{gpo_dn};0]", ldb.FLAG_MOD_REPLACE, "gPLink"
            )
            samdb.modify(msg)
            changed.append(f"link {name} -> {container}")


def main():
    wait_ready()
    _lp, samdb = connect()
    base = str(samdb.domain_dn())
    ensure_ous(samdb, base)
    ensure_groups(samdb, base)
    ensure_users(samdb, base)
    ensure_gpos(samdb, base)
    if changed:
        # Files written straight into sysvol get the ACLs Samba expects (readable by the GPO commands).
        subprocess.run(["samba-tool", "ntacl", "sysvolreset"], check=True, capture_output=True, timeout=120)
    print(json.dumps(changed))
    print("CHANGED" if changed else "UNCHANGED")


main()
