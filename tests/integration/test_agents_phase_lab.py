"""The agents phase beyond RMM on the lab: managed EDR (guarded), backup agents and data (by the contract
terms), and the MSP's silent jobs and scripts. Runs the three roles by their tags on the two lab machines
that carry these footprints (lab-srv01: SentinelOne, Veeam with DKMS leftovers and MSP-held backup data;
lab-ws01: CrowdStrike Falcon), both with MSP cron/timer/service/profile.d/rc.local/script folder and the
client's look-alikes.

Simulated, and said so: the lab cannot load kernel modules, so veeamsnap is planted as DKMS leftovers only.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT, ansible_env, evidence_dir, playbook, read_records, recap
from tests.integration.conftest import probed_state

pytestmark = pytest.mark.lab

HOSTS = "lab-srv01,lab-ws01"
TAGS = "security_software_transition,backup_agent_removal,scheduled_task_cleanup"

# Ours, not conftest's MSP_PROBES: the RMM tests snapshot every probe there and only remove RMM agents.
MSP = {
    "lab-srv01": {
        "packages": ["sentinelagent", "veeam"],
        "units": [
            "sentinelone.service",
            "veeamservice.service",
            "msp-watchdog.service",
            "msp-inventory.timer",
        ],
        "paths": [
            "/opt/sentinelone",
            "/usr/sbin/veeamservice",
            "/etc/veeam",
            "/usr/src/veeamsnap-6.1.2.1781",
            "/var/lib/dkms/veeamsnap",
            "/var/backups/msp-veeam-repo",
            "/srv/msp-staging",
            "/opt/msp-scripts",
            "/etc/cron.d/msp-patch-check",
            "/etc/profile.d/msp-env.sh",
            "/etc/systemd/system/msp-inventory.timer",
            "/etc/systemd/system/msp-inventory.service",
            "/etc/systemd/system/msp-watchdog.service",
        ],
    },
    "lab-ws01": {
        "packages": ["falcon-sensor"],
        "units": ["falcon-sensor.service", "msp-watchdog.service", "msp-inventory.timer"],
        "paths": [
            "/opt/CrowdStrike",
            "/opt/msp-scripts",
            "/etc/cron.d/msp-patch-check",
            "/etc/profile.d/msp-env.sh",
        ],
    },
}
CLIENT = {
    "packages": ["labclient-inventory"],
    "units": ["labclient-inventory.service", "labclient-sync.timer"],
    "paths": [
        "/etc/cron.d/labclient-backup",
        "/etc/cron.d/labclient-patch-report",
        "/etc/cron.d/msp-invoice-check",  # named like the MSP's, but the client's (keep_patterns)
        "/etc/systemd/system/labclient-sync.timer",
        "/etc/systemd/system/labclient-sync.service",
        "/etc/profile.d/labclient-env.sh",
        "/opt/labclient/patch-report.sh",
        "/var/backups/labclient-db/dump.sql",
    ],
}
MSP_LINES = {
    "/etc/crontab": "*/30 * * * * root /opt/msp-scripts/heartbeat.sh",
    "/var/spool/cron/crontabs/root": "0 * * * * /opt/msp-scripts/cleanup-temp.sh",
    "/etc/rc.local": "/opt/msp-scripts/boot-report.sh",
}
CLIENT_LINES = {
    "/var/spool/cron/crontabs/root": "5 1 * * * /opt/labclient/inventory-agent --report",
    "/etc/rc.local": "/opt/labclient/inventory-agent --boot-check",
}


def _probe(lab, name: str) -> dict:
    host = next(h for h in lab.online if h.name == name)
    probes = {k: MSP[name][k] + CLIENT[k] for k in ("packages", "units", "paths")}
    snap = lab.snapshot(host, probes)
    files = {}
    for path in sorted({*MSP_LINES, *CLIENT_LINES}):
        files[path] = lab.exec(host, "cat", path).stdout.splitlines()
    snap["lines"] = files
    snap["client_files"] = {
        p: lab.exec(host, "sha256sum", p).stdout.split(" ")[0] for p in CLIENT["paths"] if not p.endswith("/")
    }
    return snap


def _msp_left(snap: dict, name: str) -> list[str]:
    left = [p for p in MSP[name]["packages"] if snap["packages"][p]]
    left += [u for u in MSP[name]["units"] if not snap["units"][u].startswith("not-found")]
    left += [p for p in MSP[name]["paths"] if snap["paths"][p]]
    left += [f"{f}: {line}" for f, line in MSP_LINES.items() if line in snap["lines"][f]]
    left += [
        p for p in snap["processes"] if re.search(r"sentinelone-agent|falcond|veeamservice|msp-scripts", p)
    ]
    return left


def _client(snap: dict) -> dict:
    return {
        **probed_state(snap, CLIENT),
        "files": snap["client_files"],
        "lines": {f: line in snap["lines"][f] for f, line in CLIENT_LINES.items()},
        "processes": [p for p in snap["processes"] if "labclient" in p],
    }


def _records(stdout: str) -> tuple[Path, list[dict]]:
    run_dir = evidence_dir(stdout)
    return run_dir, [r for r in read_records(run_dir) if "action" in r]  # item records (not run start/end)


def _by(records: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["host"], r["item"]): r for r in records if r.get("component")}


def _run(*extra: str, hosts: str = HOSTS, tags: str = TAGS) -> subprocess.CompletedProcess[str]:
    return playbook("offboard.yml", "-l", hosts, "--tags", tags, *extra)


CANARY = "CANARY-s1-5b9e0c2a7d"


def _vault_canary(lab, tmp_path: Path) -> list[str]:
    """The SentinelOne passphrase as a real client keeps it: in an ansible-vault file. The lab's sentinelctl
    stand-in is told to take only this passphrase (by its sha256), so a removal proves it arrived there."""
    srv01 = next(h for h in lab.online if h.name == "lab-srv01")
    digest = subprocess.run(
        ["sha256sum"], input=CANARY, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert (
        lab.exec(srv01, "sh", "-c", f"echo {digest} > /opt/sentinelone/.lab_passphrase.sha256").returncode
        == 0
    )
    secret_file, password_file = tmp_path / "vault.yml", tmp_path / "vault-pass"
    password_file.write_text("lab-vault-password\n")
    secret_file.write_text(f"offboard_security_uninstall_codes:\n  sentinelone: {CANARY}\n")
    enc = subprocess.run(
        [
            str(BIN / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password_file),
            str(secret_file),
        ],
        capture_output=True,
        text=True,
        env=ansible_env(),
        check=False,
        cwd=ROOT,
    )
    assert enc.returncode == 0 and CANARY not in secret_file.read_text(), enc.stderr
    return ["-e", f"@{secret_file}", "--vault-password-file", str(password_file)]


def test_rehearsal_removal_and_second_run(lab, tmp_path):
    vault = _vault_canary(lab, tmp_path)
    planted = {h: _probe(lab, h) for h in MSP}
    for host, snap in planted.items():
        assert len(_msp_left(snap, host)) >= len(MSP[host]["paths"]), f"{host}: the lab did not plant it all"
        assert all(_client(snap)["lines"].values()) and _client(snap)["packages"]["labclient-inventory"]

    # 1. Rehearsal: every MSP item reported, nothing changed.
    check = _run("--check", *vault)
    assert check.returncode == 0, check.stdout[-3000:]
    assert {h: _probe(lab, h) for h in MSP} == planted
    _, rehearsal = _records(check.stdout)
    would = {(r["host"], r["item"]) for r in rehearsal if r["action"] == "would_remove"}
    assert {
        ("lab-srv01", "sentinelone"),
        ("lab-ws01", "crowdstrike_falcon"),
        ("lab-srv01", "veeam_agent"),
    } <= would
    assert ("lab-srv01", "backup_data:/var/backups/msp-veeam-repo") in would
    assert ("lab-ws01", "systemd:msp-inventory.timer") in would and (
        "lab-srv01",
        "script_dir:/opt/msp-scripts",
    ) in would
    assert not any(r["action"] == "removed" for r in rehearsal)

    # 2. The real run: the MSP's items gone, the client's byte for byte as planted. The vault's passphrase
    # reached sentinelctl (it accepts no other) and nothing else: not the console at -vv, not the evidence.
    real = _run("-vv", *vault)
    assert real.returncode == 0, real.stdout[-3000:]
    assert CANARY not in real.stdout and CANARY not in real.stderr
    for host in MSP:
        after = _probe(lab, host)
        assert _msp_left(after, host) == [], f"{host}: left {_msp_left(after, host)}"
        assert _client(after) == _client(planted[host]), f"{host}: the client's jobs or files changed"
    run_dir, records = _records(real.stdout)
    by = _by(records)
    for key in would:
        assert by[key]["action"] == "removed" and by[key]["verification"]["result"] == "verified_absent", key
    assert by[("lab-srv01", "sentinelone")]["component"] == "security_agent"
    assert by[("lab-srv01", "sentinelone")]["before"]["replacement"]["confirmed_by"].startswith(
        "Casey Client"
    )
    veeam = by[("lab-srv01", "veeam_agent")]
    assert veeam["component"] == "backup_agent"
    assert veeam["before"]["dkms_sources"] == ["/usr/src/veeamsnap-6.1.2.1781"]
    assert veeam["before"]["kernel_modules_loaded"] == []  # a container cannot load modules: simulated
    decision = next(r for r in records if r["item"] == "backup_data_disposition")
    assert decision["action"] == "handed_over" and decision["after"]["handed_over_on"] == "2026-11-19"
    # The removed definitions are in the evidence, so they could be put back.
    cron = by[("lab-srv01", "cron_file:/etc/cron.d/msp-patch-check")]
    assert cron["component"] == "scheduled_task"
    assert cron["before"]["definition"] == "15 3 * * * root /opt/msp-scripts/patch-check.sh\n"
    timer = by[("lab-srv01", "systemd:msp-inventory.timer")]["before"]
    assert timer["units"] == ["msp-inventory.timer", "msp-inventory.service"]
    assert (
        "OnCalendar=Sun *-*-* 04:00:00" in timer["definition"]
        and "ExecStart=/opt/msp-scripts/" in timer["definition"]
    )
    crontab = [r for r in records if r["host"] == "lab-ws01" and r["item"].startswith("cron_line:/var/spool")]
    assert [r["before"]["definition"] for r in crontab] == [MSP_LINES["/var/spool/cron/crontabs/root"]]
    scripts = by[("lab-srv01", "script_dir:/opt/msp-scripts")]
    assert scripts["component"] == "startup_script" and "patch-check.sh" in scripts["before"]["definition"]
    kept = by[("lab-srv01", "kept:cron_file:/etc/cron.d/msp-invoice-check")]
    assert kept["action"] == "none" and "keep_patterns" in kept["verification"]["note"]
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaked == [] and (run_dir / "records.jsonl").is_file()

    # 3. Second run: nothing to do, nothing changed, absence recorded.
    again = _run(*vault)
    assert again.returncode == 0
    assert all(recap(again.stdout)[h]["changed"] == 0 for h in MSP), again.stdout[-3000:]
    _, second = _records(again.stdout)
    mine = [
        r
        for r in second
        if r["component"] in ("security_agent", "backup_agent", "scheduled_task", "startup_script")
    ]
    assert mine and all(r["action"] in ("none", "handed_over") for r in mine)
    assert {r["component"] for r in mine} == {
        "security_agent",
        "backup_agent",
        "scheduled_task",
        "startup_script",
    }


def test_guards_refuse_edr_without_confirmation_and_backup_data_before_retention(lab, tmp_path):
    planted = {h: _probe(lab, h) for h in MSP}
    overrides = tmp_path / "unconfirmed.json"
    overrides.write_text(
        json.dumps(
            {
                # The products stay the lab's (offboard_msp_products); only the terms change.
                "offboard_security": {"replacement_coverage_confirmed": False},
                "offboard_backup_terms": {
                    "data_disposition": "delete",
                    "retention_until": "2099-12-31",
                    "msp_data": [{"path": "/var/backups/msp-veeam-repo", "hosts": ["lab-srv01"]}],
                },
            }
        )
    )
    run = _run("-e", f"@{overrides}", tags="security_software_transition,backup_agent_removal")
    assert run.returncode == 0, run.stdout[-3000:]  # a refusal is not a failure: the ledger keeps it pending
    after = {h: _probe(lab, h) for h in MSP}
    # The EDR is untouched on both machines: package, unit, files, process.
    for host, package, unit in (
        ("lab-srv01", "sentinelagent", "sentinelone.service"),
        ("lab-ws01", "falcon-sensor", "falcon-sensor.service"),
    ):
        assert after[host]["packages"][package] == planted[host]["packages"][package] != ""
        assert after[host]["units"][unit] == planted[host]["units"][unit]
        assert after[host]["units"][unit].split("\n")[1] == "active"
    assert after["lab-srv01"]["paths"]["/opt/sentinelone"] and after["lab-ws01"]["paths"]["/opt/CrowdStrike"]
    # The backup agent went (not guarded), the MSP-held data stayed: retention runs until 2099-12-31.
    assert not after["lab-srv01"]["packages"]["veeam"]
    assert after["lab-srv01"]["paths"]["/var/backups/msp-veeam-repo"]
    _, records = _records(run.stdout)
    by = _by(records)
    for key in (("lab-srv01", "sentinelone"), ("lab-ws01", "crowdstrike_falcon")):
        assert by[key]["action"] == "refused", by[key]
        assert "replacement_coverage_confirmed is not true" in by[key]["error"]
        assert "set offboard_security.replacement_coverage_confirmed: true" in by[key]["error"]
    data = by[("lab-srv01", "backup_data:/var/backups/msp-veeam-repo")]
    assert (
        data["action"] == "refused"
        and "until 2099-12-31" in data["error"]
        and "from 2100-01-01" in data["error"]
    )
    assert data["before"]["retention_until"] == "2099-12-31" and data["before"]["found"] is True
    assert by[("lab-srv01", "veeam_agent")]["action"] == "removed"
