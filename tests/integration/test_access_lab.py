"""The access phase against the lab: real SSH logins to lab-srv03 (sshd on 127.0.10.3:2222), real LDAP
binds on the Samba AD DC (lab-dc01), hand-over files decrypted with the recipient's private key, canary
passwords searched for in every evidence file and all console output. Uses the `lab` fixture (replants).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest
import yaml

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SSH = ("127.0.10.3", 2222)
MSP_KEY = REPO / "playbooks/lab/files/msp_tech_ed25519"
ALICE_KEY = DATA / "lab_alice_ed25519"
RECIPIENT_KEY = DATA / "lab_handover_recipient.agekey"
SRV = "offboard-lab-srv03"
DC = "offboard-lab-dc01"
DC_USERS = "/root/.offboard-lab-dc/users"

_LAB_VARS = yaml.safe_load((REPO / "inventories/lab/group_vars/lab.yml").read_text())
MSP_PASSWORDS = _LAB_VARS["offboard_msp_login_passwords"]
CLIENT_PASSWORDS = _LAB_VARS["lab_access_client_passwords"]

_STATE = (
    "cat /etc/passwd /etc/shadow /etc/group /etc/gshadow /etc/sudoers /etc/sudoers.d/* "
    "/root/.ssh/authorized_keys /home/*/.ssh/authorized_keys 2>/dev/null | sha256sum"
)
_DIR_STATE = (
    "ldbsearch -H /var/lib/samba/private/sam.ldb '(|(objectClass=user)(objectClass=group))' "
    "userAccountControl memberOf pwdLastSet member | grep -v '^#' | sort | sha256sum"
)


def offboard(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offboard.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def playbook(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "offboard.yml", "-l", "lab", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env},
        timeout=900,
    )


def sh(container: str, script: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", "-i", container, "sh", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ssh_login(user: str, *, key: Path | None = None, password: str | None = None) -> bool:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            SSH[0],
            port=SSH[1],
            username=user,
            key_filename=str(key) if key else None,
            password=password,
            look_for_keys=False,
            allow_agent=False,
            timeout=8,
            auth_timeout=8,
        )
        return True
    except paramiko.AuthenticationException:
        return False
    finally:
        client.close()


def dc_password(user: str) -> str:
    out = sh(DC, f"sed -n 's/^password *= *//p' {DC_USERS}/{user}.auth")
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    return out.stdout.strip()


def ldap_bind(user: str, password: str) -> int:
    """rc of an LDAP simple bind over LDAPS on the DC: 0 bound, 49 invalid credentials."""
    return sh(
        DC,
        f"LDAPTLS_REQCERT=never ldapsearch -LLL -x -H ldaps://127.0.0.1 -D {user}@lab.test "
        "-y /dev/stdin -s base -b '' 1.1 >/dev/null",
        stdin=password,
    ).returncode


def state() -> tuple[str, str]:
    return sh(SRV, _STATE).stdout, sh(DC, _DIR_STATE).stdout


def the_run(evidence: Path) -> Path:
    runs = sorted(p for p in (evidence / "lab").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 1, runs
    return runs[0]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]


def decrypt(path: Path, identity: Path = RECIPIENT_KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["age", "--decrypt", "-i", str(identity), str(path)], capture_output=True, text=True
    )


def assert_nowhere(secrets: list[str], root: Path, *outputs: str) -> None:
    """No secret in any file below root (evidence, artifacts, exports) nor in the console output."""
    secrets = [s for s in secrets if s]
    assert secrets
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"a password leaked into {path}"
    for text in outputs:
        for secret in secrets:
            assert secret not in text, "a password leaked into the console output"


def old_passwords() -> list[str]:
    return [
        *MSP_PASSWORDS.values(),
        *CLIENT_PASSWORDS.values(),
        *(dc_password(u) for u in ("msp-tech1", "msp-tech2", "msp-svc-backup", "client-admin")),
    ]


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    return tmp_path / "evidence"


def test_access_phase_revokes_hands_over_and_proves_it_by_login(lab, evidence, tmp_path):
    before_old = old_passwords()
    # The lab as planted: the MSP's credentials work (so a refusal afterwards means something).
    assert ssh_login("root", key=MSP_KEY) and ssh_login("mspadmin", password=MSP_PASSWORDS["mspadmin"])
    assert ldap_bind("msp-tech1", dc_password("msp-tech1")) == 0

    out = offboard("run", "lab", "--tags", "access", "--evidence-dir", str(evidence))
    # The offline laptop stays pending (75); everything else must have succeeded.
    assert out.returncode == 75, out.stdout[-4000:] + out.stderr[-2000:]

    # The MSP's key and password are refused, for every account that held the key.
    for user in ("root", "alice", "mspadmin", "msp-backup"):
        assert not ssh_login(user, key=MSP_KEY), f"MSP key still logs in as {user}"
    for user, password in MSP_PASSWORDS.items():
        assert not ssh_login(user, password=password), f"MSP password still logs in as {user}"
    # The MSP's directory users are disabled: their bind fails; its group is out of Domain Admins.
    for user in ("msp-tech1", "msp-tech2", "msp-svc-backup"):
        assert ldap_bind(user, dc_password(user)) == 49, user
    admins = sh(DC, "samba-tool group listmembers 'Domain Admins' -H /var/lib/samba/private/sam.ldb").stdout
    assert "MSP Admins" not in admins and "client-admin" in admins

    # The client's own accounts are intact: alice's key, sudo rule and admin group, root's client key.
    assert ssh_login("alice", key=ALICE_KEY)
    assert "alice ALL=(ALL:ALL) ALL" in sh(SRV, "cat /etc/sudoers.d/client-admins").stdout
    assert "msp-tech2" not in sh(SRV, "cat /etc/sudoers.d/client-admins").stdout
    assert sh(SRV, "test -e /etc/sudoers.d/msp-admin").returncode == 1
    assert sh(SRV, "id -nG alice").stdout.split().count("sudo") == 1
    assert "root-admin@client.test" in sh(SRV, "cat /root/.ssh/authorized_keys").stdout
    assert ldap_bind("client-user1", dc_password("client-user1")) == 0

    run = the_run(evidence)
    recs = records(run)
    items = {(r["host"], r["component"], r["item"]): r for r in recs if r["kind"] == "item"}

    # Kept accounts: rotated, handed over by handle; only the recipient's key opens the file, and the
    # password inside is the one that works now (the old one does not).
    new_passwords = []
    other = tmp_path / "other.agekey"
    subprocess.run(["age-keygen", "-o", str(other)], capture_output=True, check=True)
    for host, item in (("lab-srv03", "clientadmin"), ("lab-dc01", "directory:client-admin")):
        rec = items[(host, "msp_account", item)]
        assert rec["action"] == "handed_over" and rec["verification"]["result"] == "verified_changed", rec
        handle = rec["after"]["handover_handle"]
        exported = (
            run / rec["export"]["path"]
            if not rec["export"]["path"].startswith("/")
            else Path(rec["export"]["path"])
        )
        assert exported.name == f"{handle}.age" and exported.is_relative_to(run)
        assert hashlib.sha256(exported.read_bytes()).hexdigest() == rec["export"]["sha256"]
        assert decrypt(exported, other).returncode != 0, "a stranger's key decrypted the hand-over"
        opened = decrypt(exported)
        assert opened.returncode == 0, opened.stderr
        new_passwords.append(opened.stdout)
    assert ssh_login("clientadmin", password=new_passwords[0])
    assert not ssh_login("clientadmin", password=CLIENT_PASSWORDS["clientadmin"])
    assert ldap_bind("client-admin", new_passwords[1]) == 0

    # Verification by login attempt is recorded with method and time; every attempt was refused.
    attempts = [r for r in recs if r["kind"] == "item" and r["component"] == "access_verification"]
    # lab-fw01 holds an MSP account but offers no login address to the controller: that is said, not skipped.
    no_path = [r for r in attempts if r["item"] == "login-attempt"]
    assert [(r["host"], r["action"]) for r in no_path] == [("lab-fw01", "refused")], no_path
    assert "offboard_access_login_address" in no_path[0]["error"]
    attempts = [r for r in attempts if r["item"] != "login-attempt"]
    assert {r["item"].split(":")[0] for r in attempts} == {"ssh_key", "ssh_password", "ldap_bind"}
    for rec in attempts:
        assert rec["verification"]["result"] == "verified_refused", rec
        assert rec["verification"]["method"] and rec["verification"]["attempted_at"], rec

    # The report: both directions, exported with its sha256.
    report_rec = next(r for r in recs if r.get("item") == "credential-inventory-report")
    report_path = run / "exports/access/credential-inventory.json"
    assert hashlib.sha256(report_path.read_bytes()).hexdigest() == report_rec["export"]["sha256"]
    report = json.loads(report_path.read_text())
    undocumented = {(u["kind"], u["name"].split(" ")[0]) for u in report["undocumented_found"]}
    assert ("account", "msp-tech2") in undocumented and ("directory_account", "msp-tech2") in undocumented
    assert ("ssh_key", "SHA256:NZt5QRW8kGB9u5IMAeyb8ZOYujfCMwE+0ta9T1+fz94") in undocumented
    assert {"kind": "account", "name": "msp-legacy"} in report["documented_not_found"]
    assert report["mfa"]["automated"] is False

    # Canaries: no old and no new password in any evidence file or in the console.
    assert_nowhere(before_old + new_passwords, evidence, out.stdout, out.stderr)
    assert offboard("verify", "lab", "--evidence-dir", str(evidence)).returncode == 0


def test_rehearsal_changes_nothing_and_leaks_nothing(lab, evidence):
    before = state()
    out = offboard("run", "lab", "--tags", "access", "--check", "--evidence-dir", str(evidence))
    assert out.returncode in (0, 75), out.stdout[-4000:] + out.stderr[-2000:]
    assert state() == before
    assert ssh_login("root", key=MSP_KEY), "check mode removed the MSP's key"
    recs = [r for r in records(the_run(evidence)) if r["kind"] == "item"]
    assert any(r["action"] == "would_remove" and r["item"] == "mspadmin" for r in recs)
    assert any(r["action"] == "would_change" and r["item"] == "directory:client-admin" for r in recs)
    assert_nowhere(old_passwords(), evidence, out.stdout, out.stderr)


def test_before_the_revocation_date_the_phase_refuses_and_changes_nothing(lab, evidence):
    before = state()
    future = {
        "offboard_dates": {
            "start": "2026-11-02",
            "contract_end": "2099-12-31",
            "access_revocation": "2099-12-01",
        }
    }
    out = playbook("--tags", "access", "-e", json.dumps(future), env={"OFFBOARD_EVIDENCE_DIR": str(evidence)})
    assert out.returncode != 0
    assert "REFUSED before any change" in out.stdout and "2099-12-01" in out.stdout
    assert state() == before
    assert ssh_login("root", key=MSP_KEY)
    recs = [r for r in records(the_run(evidence)) if r["kind"] == "item"]
    assert recs and {(r["item"], r["action"]) for r in recs} == {("revocation-date-guard", "refused")}
    # An override without an approver is refused too; nothing changed either.
    half = {**future, "offboard_access_override": {"reason": "incident"}}
    out = playbook("--tags", "access", "-e", json.dumps(half), env={"OFFBOARD_NO_EVIDENCE": "1"})
    assert out.returncode != 0 and "approved_by" in out.stdout
    assert state() == before


def test_a_login_that_still_works_fails_the_run_loudly_without_leaking(lab, evidence):
    # Only the verification role runs: nothing was revoked, so the MSP's logins must be accepted.
    out = playbook("--tags", "access_verification", env={"OFFBOARD_EVIDENCE_DIR": str(evidence)})
    assert out.returncode != 0
    assert "MSP ACCESS NOT REVOKED on lab-srv03" in out.stdout
    assert "ssh_password as mspadmin" in out.stdout and "ssh_key as root" in out.stdout
    assert "MSP DIRECTORY ACCESS NOT REVOKED on lab-dc01" in out.stdout and "msp-tech1" in out.stdout
    recs = [r for r in records(the_run(evidence)) if r["kind"] == "item"]
    accepted = [r for r in recs if r["verification"].get("result") == "still_present"]
    assert {r["item"] for r in accepted} >= {"ssh_password:mspadmin", "ldap_bind:msp-tech1"}
    assert_nowhere(old_passwords(), evidence, out.stdout, out.stderr)
