"""gpo_cleanup against the lab's real Samba AD DC (lab-dc01): a rehearsal changes nothing; the real run
backs up, unlinks and deletes exactly the MSP's GPOs (two by name, one only by what its settings
reference), keeps each backup in the run's evidence with the sha256 its record names, and leaves the
client's and the default GPOs and links alone; a second run changes nothing."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import evidence_dir, playbook, recap

pytestmark = pytest.mark.lab

MSP_GPOS = {"MSP - RMM Agent Deploy", "MSP - Patch Policy", "Workstation Baseline"}
CLIENT_GPOS = {"Client - Password Policy", "Client - Drive Maps"}
DEFAULT_GPOS = {"Default Domain Policy", "Default Domain Controllers Policy"}

# What the directory says, read on the DC through Samba's own bindings (independent of the role's module).
_DIRECTORY = r"""
import json, os, ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm(); lp.load_default()
db = SamDB(url="/var/lib/samba/private/sam.ldb", session_info=system_session(), lp=lp)
base = str(db.domain_dn())
gpos = {str(m["displayName"][0]): str(m["name"][0]).upper() for m in db.search(
    base="CN=Policies,CN=System," + base, scope=ldb.SCOPE_ONELEVEL,
    expression="(objectClass=groupPolicyContainer)", attrs=["displayName", "name"])}
links = {str(m.dn): str(m["gPLink"][0]) for m in db.search(
    base=base, scope=ldb.SCOPE_SUBTREE, expression="(gPLink=*)", attrs=["gPLink"])}
folders = sorted(n.upper() for n in os.listdir("/var/lib/samba/sysvol/lab.test/Policies"))
print(json.dumps({"gpos": gpos, "links": links, "folders": folders}))
"""


def _dc(lab):
    return next(h for h in lab.hosts if h.dc)


def _directory(lab) -> dict:
    proc = lab.exec(_dc(lab), "python3", "-c", _DIRECTORY)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _linked(state: dict, guid: str) -> list[str]:
    return sorted(dn for dn, value in state["links"].items() if guid.lower() in value.lower())


def _gpo_records(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return {r["item"]: r for r in records if r.get("kind") == "item" and r.get("component") == "gpo"}


def _by_name(records: dict[str, dict]) -> dict[str, dict]:
    return {r["before"].get("name", r["item"]): r for r in records.values()}


def test_gpo_cleanup_on_the_samba_dc(lab):
    planted = _directory(lab)
    assert set(planted["gpos"]) >= MSP_GPOS | CLIENT_GPOS | DEFAULT_GPOS, planted["gpos"]
    msp = {name: planted["gpos"][name] for name in MSP_GPOS}
    assert _linked(planted, msp["MSP - Patch Policy"]) == [
        "OU=Servers,DC=lab,DC=test",
        "OU=Workstations,DC=lab,DC=test",
    ]
    assert _linked(planted, msp["MSP - RMM Agent Deploy"]) == ["DC=lab,DC=test"]
    client = {name: planted["gpos"][name] for name in CLIENT_GPOS | DEFAULT_GPOS}
    client_links = {name: _linked(planted, guid) for name, guid in client.items()}
    admin_pw = lab.exec(_dc(lab), "cat", "/root/.offboard-lab-dc/admin.pw").stdout.strip()
    assert len(admin_pw) > 10

    # 1. Rehearsal, with the client keeping "Workstation Baseline": nothing changes on the DC.
    keep = json.dumps(
        {
            "offboard_gpo": {
                "name_patterns": ["^MSP - "],
                "setting_patterns": ["NinjaRMMAgent", r"msp\.test", r"\\NETLOGON\\msp\\"],
                "keep": ["Workstation Baseline"],
            }
        }
    )
    check = playbook("offboard.yml", "-l", "lab", "--tags", "gpo_cleanup", "--check", "-e", keep)
    assert check.returncode == 4, check.stdout[-3000:]  # 4: only the offline laptop is unreachable
    assert recap(check.stdout)["lab-dc01"]["failed"] == 0
    assert _directory(lab) == planted
    rehearsal = _by_name(_gpo_records(evidence_dir(check.stdout)))
    would = {n for n, r in rehearsal.items() if r["action"] == "would_remove"}
    assert would == MSP_GPOS - {"Workstation Baseline"}
    assert rehearsal["Workstation Baseline"]["action"] == "none"
    assert "keep" in rehearsal["Workstation Baseline"]["verification"]["note"]
    assert not any(r.get("export") for r in rehearsal.values())
    assert not (evidence_dir(check.stdout) / "exports").exists()

    # 2. The real run: the MSP's GPOs are gone, with their links and sysvol folders; backups kept.
    real = playbook("offboard.yml", "-l", "lab", "--tags", "gpo_cleanup")
    assert real.returncode == 4, real.stdout[-3000:]
    after = _directory(lab)
    for name, guid in msp.items():
        assert name not in after["gpos"], f"{name} still exists"
        assert _linked(after, guid) == [], f"{name} still linked"
        assert guid not in after["folders"], f"{name}: sysvol folder left"
    assert {name: after["gpos"][name] for name in client} == client, "a client or default GPO changed"
    assert {name: _linked(after, guid) for name, guid in client.items()} == client_links

    run_dir = evidence_dir(real.stdout)
    records = _by_name(_gpo_records(run_dir))
    assert set(records) == MSP_GPOS, records.keys()
    manifest = (run_dir / "MANIFEST.sha256").read_text()
    for name, record in records.items():
        assert record["action"] == "removed", record
        assert record["verification"]["result"] == "verified_absent", record
        assert record["before"]["guid"] == msp[name]
        assert record["before"]["links"] == _linked(planted, msp[name])
        assert sorted(record["after"]["unlinked"]) == _linked(planted, msp[name])
        backup = run_dir / record["export"]["path"]
        assert backup.is_file(), record["export"]
        assert hashlib.sha256(backup.read_bytes()).hexdigest() == record["export"]["sha256"]
        assert f"{record['export']['sha256']}  {record['export']['path']}" in manifest
        with tarfile.open(backup) as tar:
            names = tar.getnames()
            meta = json.load(tar.extractfile(f"{msp[name]}/gpo.json"))
            assert meta["name"] == name and meta["links"] == record["before"]["links"]
            assert any(n.endswith("GPT.INI.SAMBABACKUP") for n in names), names
    assert records["MSP - RMM Agent Deploy"]["before"]["matched_by"]["name_patterns"] == ["^MSP - "]
    # Found only by its settings: the startup script of the MSP's agent, kept in the backup.
    baseline = records["Workstation Baseline"]
    assert baseline["before"]["matched_by"] == {
        "name_patterns": [],
        "settings": [{"pattern": "NinjaRMMAgent", "file": "Machine/Scripts/scripts.ini"}],
    }
    with tarfile.open(run_dir / baseline["export"]["path"]) as tar:
        member = next(n for n in tar.getnames() if n.endswith("Machine/Scripts/scripts.ini.SAMBABACKUP"))
        assert "NinjaRMMAgent" in tar.extractfile(member).read().decode("utf-16")
    # The DC's temporary copies are gone; the domain admin's password is nowhere in the evidence.
    assert lab.exec(_dc(lab), "sh", "-c", "ls -A /var/lib/offboard/gpo-backups").stdout.strip() == ""
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert admin_pw.encode() not in path.read_bytes(), path
    assert admin_pw not in real.stdout

    # 3. A second run changes nothing and records that no MSP GPO is left.
    again = playbook("offboard.yml", "-l", "lab", "--tags", "gpo_cleanup")
    assert again.returncode == 4, again.stdout[-3000:]
    assert recap(again.stdout)["lab-dc01"]["changed"] == 0, again.stdout[-3000:]
    assert _directory(lab) == after
    second = _gpo_records(evidence_dir(again.stdout))
    assert list(second) == ["msp-gpos"]
    assert second["msp-gpos"]["action"] == "none"
    assert second["msp-gpos"]["verification"]["result"] == "verified_absent"
