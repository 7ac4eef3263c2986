"""The docs phase on the lab: the hand-over package lists every lab machine (the offline laptop as
unreachable, not missing), carries the firewall backup and the DNS exports from the evidence, and checks
against its own SHA256SUMS; before the infra phase ran, the missing exports are pending, not invented."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import evidence_dir, playbook, read_records

pytestmark = pytest.mark.lab


def _package(run_dir: Path, dest: Path) -> Path:
    archive = run_dir / "exports" / "_client" / "lab-handover.tar.gz"
    assert archive.is_file(), sorted(p.name for p in run_dir.rglob("*"))
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest / "lab-handover"


def test_docs_package_before_and_after_the_infra_phase(lab, tmp_path: Path):
    names = {h.name for h in lab.hosts}
    assert {"lab-fw01", "lab-dns01", "lab-laptop01"} <= names

    # 1. Before any export exists: every machine listed, the zones and the firewall backup pending.
    first = playbook("offboard.yml", "-l", "lab", "--tags", "docs")
    assert first.returncode == 4, first.stdout[-3000:]  # 4: the laptop is unreachable, nothing failed
    run1 = evidence_dir(first.stdout)
    records = read_records(run1)
    dns = {r["item"]: r for r in records if r.get("component") == "dns_export"}
    assert set(dns) == {"lab.test", "client-shop.test", "client-legacy.test"}
    # The lab's evidence may hold exports from earlier runs; client-legacy.test can never have one.
    assert dns["client-legacy.test"]["action"] == "refused"
    assert "run the infra phase" in dns["client-legacy.test"]["error"]

    # 2. The infra phase exports zones and backs the firewall up; the docs phase then packs them.
    infra = playbook("offboard.yml", "-l", "lab", "--tags", "infra")
    assert infra.returncode == 2, infra.stdout[-3000:]  # the refused zone
    infra_dir = evidence_dir(infra.stdout)
    docs = playbook("offboard.yml", "-l", "lab", "--tags", "docs")
    assert docs.returncode == 4, docs.stdout[-3000:]
    run_dir = evidence_dir(docs.stdout)
    records = read_records(run_dir)
    top = _package(run_dir, tmp_path)

    # Checksums: every file listed and matching (as `sha256sum -c SHA256SUMS` does).
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=top, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split("  ", 1)[1] for line in (top / "SHA256SUMS").read_text().splitlines()}
    on_disk = {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert listed == on_disk

    inventory = json.loads((top / "inventory.json").read_text())
    devices = {d["host"]: d for d in inventory["devices"]}
    assert set(devices) == names
    assert devices["lab-laptop01"]["status"] == "unreachable"
    for host in names - {"lab-laptop01"}:
        assert devices[host]["status"] == "reached", host
        assert devices[host]["os"].startswith("Debian"), devices[host]
        assert devices[host]["hostname"], host
    index = (top / "INDEX.md").read_text()
    assert all(f"| {host} |" in index for host in names)
    assert "lab-laptop01: unreachable" in index

    # The newest exports from the evidence, byte for byte.
    for zone in ("lab.test", "client-shop.test"):
        packed = (top / "dns" / f"{zone}.zone").read_bytes()
        assert packed == (infra_dir / "exports" / "lab-dns01" / "dns" / f"{zone}.zone").read_bytes()
    assert not (top / "dns" / "client-legacy.test.zone").exists()
    rules = (top / "configs" / "lab-fw01" / "firewall" / "nftables.rules").read_text()
    assert "msp-mgmt" in rules  # the backup taken before the MSP's rules were removed
    assert "msp-canary" not in (top / "configs" / "lab-fw01" / "firewall" / "etc_snmp_snmpd.conf").read_text()

    # Records: one per reached device, the laptop pending as unreachable, exports recorded as packed.
    inv = {r["host"]: r for r in records if r.get("component") == "device_inventory"}
    assert set(inv) == names - {"lab-laptop01"}
    archive = run_dir / "exports" / "_client" / "lab-handover.tar.gz"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    for rec in inv.values():
        assert rec["action"] == "exported" and rec["verification"]["result"] == "verified_equal"
        assert rec["export"] == {"path": "exports/_client/lab-handover.tar.gz", "sha256": digest}
    assert any(
        r["kind"] == "unreachable" and r["host"] == "lab-laptop01" and r["phase"] == "docs" for r in records
    )
    dns = {r["item"]: r for r in records if r.get("component") == "dns_export"}
    assert dns["lab.test"]["action"] == "exported" and dns["client-shop.test"]["action"] == "exported"
    assert dns["client-legacy.test"]["action"] == "refused"
    backup = [r for r in records if r.get("component") == "config_backup"]
    assert [(r["host"], r["action"]) for r in backup] == [("lab-fw01", "exported")]
    assert "exports/_client/lab-handover.tar.gz" in (run_dir / "MANIFEST.sha256").read_text()
