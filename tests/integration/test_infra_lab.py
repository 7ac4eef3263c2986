"""The infra phase on the lab: DNS zones exported from a real BIND (round-trip, named-checkzone, the refused
zone recorded as a failure), and the client's nftables firewall losing every piece of MSP access while the
client's own rules, accounts and configuration stay; a rehearsal changes nothing, nor does a second run."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import dns.query
import dns.zone
import pytest

from tests.conftest import evidence_dir, playbook, read_records, recap

pytestmark = pytest.mark.lab

MSP_ADDRESS = re.compile(r"\b(198\.51\.100\.\d+|203\.0\.113\.\d+|2001:db8:113:)")
# Files on lab-fw01 whose content must be exactly as planted after any run (the client's own).
CLIENT_FILES = [
    "/etc/rsyslog.d/50-client.conf",
    "/etc/wireguard/branch.conf",
    "/etc/sudoers.d/clientadmin",
]
MSP_FILES = ["/etc/rsyslog.d/60-msp-forward.conf", "/etc/wireguard/msp0.conf", "/etc/sudoers.d/mspadmin"]


def _fw(lab, *cmd: str) -> str:
    host = next(h for h in lab.online if h.name == "lab-fw01")
    proc = lab.exec(host, *cmd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _fw_state(lab) -> dict:
    """Everything the firewall role may touch, as text."""
    files = {}
    for path in CLIENT_FILES + MSP_FILES + ["/etc/snmp/snmpd.conf"]:
        files[path] = _fw(lab, "sh", "-c", f"cat {path} 2>/dev/null || echo ABSENT")
    return {
        "ruleset": _fw(lab, "nft", "list", "ruleset"),
        "files": files,
        "users": _fw(lab, "sh", "-c", "getent passwd mspadmin clientadmin | cut -d: -f1 || true").split(),
    }


def _client_items(lab, handles: bool = True) -> list[dict]:
    """The client's tables, chains, sets and rules from `nft -j list ruleset`, exactly (handles included:
    deleting other rules must not renumber or touch them). The lab's client rules all carry "client:"."""
    keep = []
    for item in json.loads(_fw(lab, "nft", "-j", "list", "ruleset"))["nftables"]:
        kind, body = next(iter(item.items()))
        if kind == "metainfo":
            continue
        body = dict(body)
        if "msp_mgmt" in (body.get("table"), body.get("name")) or body.get("name") == "msp_mgmt_hosts":
            continue
        if kind == "rule" and not str(body.get("comment", "")).startswith("client:"):
            continue
        if not handles:
            body.pop("handle", None)
        keep.append({kind: body})
    return keep


def _zone_set(zone) -> set[tuple]:
    return {
        (
            str(n.derelativize(zone.origin)).lower(),
            ttl,
            rd.rdtype,
            rd.to_text(origin=zone.origin, relativize=False),
        )
        for n, ttl, rd in zone.iterate_rdatas()
    }


def test_infra_phase_rehearsal_then_real_then_idempotent(lab):
    planted = _fw_state(lab)
    assert "msp-mgmt" in planted["ruleset"] and "mspadmin" in planted["users"]
    assert "msp-canary-c0mmunity" in planted["files"]["/etc/snmp/snmpd.conf"]
    client_items = _client_items(lab)
    assert sum(1 for i in client_items if "rule" in i) == 7

    # 1. Rehearsal: reports what would go, changes nothing on the firewall.
    check = playbook("offboard.yml", "-l", "lab", "--tags", "infra", "--check")
    assert check.returncode == 2, check.stdout[-3000:]  # the refused zone fails lab-dns01
    assert _fw_state(lab) == planted
    rehearsal = read_records(evidence_dir(check.stdout))
    would = {
        r["item"] for r in rehearsal if r.get("host") == "lab-fw01" and r.get("action") == "would_remove"
    }
    assert {"nftables", "snmp", "syslog", "vpn_wireguard", "account:mspadmin"} <= would

    # 2. The real run.
    real = playbook("offboard.yml", "-l", "lab", "--tags", "infra")
    assert real.returncode == 2, real.stdout[-3000:]
    totals = recap(real.stdout)
    assert totals["lab-dns01"]["failed"] == 1 and totals["lab-fw01"]["failed"] == 0
    assert "client-legacy.test from 127.0.0.1:5300: transfer refused" in real.stdout
    run_dir = evidence_dir(real.stdout)
    records = read_records(run_dir)

    # DNS: every zone recorded; the two transferable ones exported, equal to the server, valid zone files.
    zones = {r["item"]: r for r in records if r.get("component") == "dns_zone"}
    assert set(zones) == {"lab.test", "client-shop.test", "client-legacy.test"}
    legacy = zones["client-legacy.test"]
    assert legacy["action"] == "failed" and legacy["verification"]["result"] == "not_verified"
    assert "client-legacy.test" in legacy["error"] and "127.0.0.1:5300" in legacy["error"]
    assert "rcode refused" in legacy["error"]
    for name in ("lab.test", "client-shop.test"):
        rec = zones[name]
        assert rec["action"] == "exported" and rec["verification"]["result"] == "verified_equal", rec
        zone_file = run_dir / rec["export"]["path"]
        json_file = run_dir / rec["export"]["json_path"]
        assert hashlib.sha256(zone_file.read_bytes()).hexdigest() == rec["export"]["sha256"]
        assert hashlib.sha256(json_file.read_bytes()).hexdigest() == rec["export"]["json_sha256"]
        checked = subprocess.run(
            ["named-checkzone", name, str(zone_file)], capture_output=True, text=True, timeout=30, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # Independent of the module: the file re-read equals what the server serves right now.
        served = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", name, port=5300, timeout=5, lifetime=10))
        exported = dns.zone.from_file(str(zone_file), origin=name, relativize=True)
        assert _zone_set(exported) == _zone_set(served)
        assert len(json.loads(json_file.read_text())["records"]) == len(_zone_set(served))
    manifest = (run_dir / "MANIFEST.sha256").read_text()
    assert "exports/lab-dns01/dns/lab.test.zone" in manifest
    assert "exports/lab-fw01/firewall/nftables.rules" in manifest

    # Firewall: every piece of MSP access gone, the client's configuration as planted.
    after = _fw_state(lab)
    assert not MSP_ADDRESS.search(after["ruleset"]) and "msp-mgmt" not in after["ruleset"]
    assert "msp_mgmt" not in after["ruleset"]
    assert _client_items(lab) == client_items
    assert after["users"] == ["clientadmin"]
    for path in MSP_FILES:
        assert after["files"][path].strip() == "ABSENT", path
    for path in CLIENT_FILES:
        assert after["files"][path] == planted["files"][path], path
    snmpd = after["files"]["/etc/snmp/snmpd.conf"]
    assert "msp-canary" not in snmpd and not MSP_ADDRESS.search(snmpd)
    assert "rocommunity client-mon-ro 192.0.2.0/28" in snmpd
    fw_records = {r["item"]: r for r in records if r.get("host") == "lab-fw01" and r.get("kind") == "item"}
    for item in ("nftables", "snmp", "syslog", "vpn_wireguard", "account:mspadmin"):
        assert fw_records[item]["action"] == "removed", fw_records[item]
        assert fw_records[item]["verification"]["result"] == "verified_absent"
    assert fw_records["config_backup"]["verification"]["result"] == "verified_equal"
    backup = run_dir / "exports/lab-fw01/firewall"
    assert "msp-mgmt" in (backup / "nftables.rules").read_text()  # the backup is of the state before
    # A reboot loads /etc/nftables.conf: the MSP's rules must not come back, the client's must.
    _fw(lab, "systemctl", "restart", "nftables.service")
    reloaded = _fw(lab, "nft", "list", "ruleset")
    assert not MSP_ADDRESS.search(reloaded) and "msp" not in reloaded
    assert _client_items(lab, handles=False) == [
        {k: {f: x for f, x in v.items() if f != "handle"} for k, v in i.items()} for i in client_items
    ]

    # No secret of the firewall reached the evidence or the console.
    for path in run_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "msp-canary" not in text and "cHJpdmF0ZS1rZXktY2FuYXJ5" not in text, path
    assert "msp-canary" not in real.stdout + check.stdout

    # 3. A second run changes nothing; the firewall records absence.
    again = playbook("offboard.yml", "-l", "lab", "--tags", "infra")
    assert again.returncode == 2
    totals = recap(again.stdout)
    assert all(c["changed"] == 0 for c in totals.values()), again.stdout[-3000:]
    second = [r for r in read_records(evidence_dir(again.stdout)) if r.get("host") == "lab-fw01"]
    assert {r["action"] for r in second if r.get("kind") == "item" and r["item"] != "config_backup"} == {
        "none"
    }
    assert _fw_state(lab) == after | {"ruleset": reloaded}


def test_unreachable_dns_server_is_a_recorded_failure(lab_session, tmp_path: Path):
    """A server that does not answer at all (nothing listens): recorded with zone, server and reason.
    Read-only on the lab, so no replant is needed."""
    extra = tmp_path / "zones.json"
    extra.write_text(
        json.dumps(
            {
                "dns_zone_export_zones": [
                    {"name": "lab.test", "source": "axfr", "server": "127.0.0.1", "port": 9}
                ]
            }
        )
    )
    run = playbook("offboard.yml", "-l", "lab", "--tags", "dns_zone_export", "-e", f"@{extra}")
    assert run.returncode == 2, run.stdout[-3000:]
    records = [r for r in read_records(evidence_dir(run.stdout)) if r.get("component") == "dns_zone"]
    by_host = {r["host"]: r for r in records}
    # -e applies to every host: each records its own failure, none is skipped silently.
    assert set(by_host) == {h.name for h in lab_session.hosts}
    rec = by_host["lab-dns01"]
    assert (
        rec["action"] == "failed" and "127.0.0.1:9" in rec["error"] and "connection refused" in rec["error"]
    )
