"""The agents phase on field variants (tests/integration/field.py): machines planted from the reference
facts with the variations real installs have, not from the catalog. Rehearsal changes nothing; the real
run removes every file, unit, package, process and startup entry of the MSP's, keeps the client's own
ScreenConnect instance running, records the method and the derived items, and fails (naming what is left)
the host where a path cannot be deleted."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ansible_env, playbook, read_records, recap
from tests.integration import field

pytestmark = pytest.mark.lab

HOSTS = ["field-srv01", "field-ws01", "field-srv02"]


@pytest.fixture
def field_hosts(tmp_path: Path) -> Iterator[Path]:
    """Planted field containers (the session fixture holds the lab lock) and their inventory."""
    field.check_reference()
    field.up(HOSTS)
    try:
        yield field.write_inventory(tmp_path / "inventories", HOSTS)
    finally:
        field.down(HOSTS)


def _left(host: str, snap: dict) -> list[str]:
    """What of the MSP's is still on the host (empty: all gone)."""
    want = field.MSP_LEFT[host]
    left = [p for p in want["paths"] if snap["paths"][p]]
    left += [u for u in want["units"] if snap["units"][u] not in ("not-found", "")]
    left += [
        p for p in want["packages"] if "installed" in snap["packages"][p] or "config" in snap["packages"][p]
    ]
    left += [p for p in snap["processes"] if any(pat in p for pat in want["process_patterns"])]
    left += [f"{f}: {pat}" for f, pat in want["lines"].items() if pat in (snap["files"][f] or "")]
    left += [x for x in snap["rcd"] if any(x.endswith(name) for name in want["rcd"])]
    return left


def _client(snap: dict) -> dict:
    kept = field.CLIENT_KEPT["field-ws01"]
    return {
        "paths": {p: snap["paths"][p] for p in kept["paths"]},
        "processes": [p for p in snap["processes"] if any(pat in p for pat in kept["process_patterns"])],
        "rcd": [x for x in snap["rcd"] if any(x.endswith(n) for n in kept["rcd"])],
    }


def _agents_phase(inventory: str, evidence: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The agents phase against the field hosts, its evidence in a folder of its own."""
    return playbook(
        "offboard.yml",
        "-i",
        inventory,
        "-l",
        "field",
        "--tags",
        "agents",
        *extra,
        env=ansible_env(**field.evidence_env(evidence)),
    )


def test_field_variants_rehearsal_then_removal_by_evidence(field_hosts: Path):
    inventory = str(field_hosts)
    planted = {h: field.snapshot(h) for h in HOSTS}
    for host in field.MSP_LEFT:
        assert _left(host, planted[host]), f"{host}: nothing of the MSP's was planted"
    client = _client(planted["field-ws01"])
    assert client["processes"] and all(client["paths"].values()), client

    # 1. Rehearsal: nothing changes, every product found is `would_remove`.
    check_dir = field_hosts.parent / "run-check"
    check = _agents_phase(inventory, check_dir, "--check")
    assert check.returncode == 0, check.stdout[-4000:]
    assert {h: field.snapshot(h) for h in HOSTS} == planted
    rehearsal = read_records(field.the_run(check_dir))
    would = {(r["host"], r["item"]) for r in rehearsal if r.get("action") == "would_remove"}
    assert {
        ("field-srv01", "connectwise_automate"),
        ("field-srv01", "tactical_rmm"),
        ("field-srv01", "datto_rmm"),
        ("field-ws01", "ninjaone"),
        ("field-ws01", "datto_rmm"),
        ("field-ws01", f"screenconnect:{field.MSP_SC}"),
        ("field-srv02", "ninjaone"),
    } <= would

    # 2. The real run (uninstallers bounded to 5 s: one of them hangs).
    real_dir = field_hosts.parent / "run-real"
    real = _agents_phase(inventory, real_dir, "-e", "rmm_agent_removal_timeout=5")
    totals = recap(real.stdout)
    assert totals["field-srv01"]["failed"] == 0 and totals["field-ws01"]["failed"] == 0, real.stdout[-4000:]
    assert totals["field-srv02"]["failed"] == 1, real.stdout[-4000:]
    after = {h: field.snapshot(h) for h in HOSTS}
    for host in field.MSP_LEFT:
        assert _left(host, after[host]) == [], f"{host}: MSP footprint left: {_left(host, after[host])}"
    assert _client(after["field-ws01"]) == client, "the client's own ScreenConnect instance was touched"

    records = {(r["host"], r["item"]): r for r in read_records(field.the_run(real_dir)) if r.get("item")}
    automate = records[("field-srv01", "connectwise_automate")]
    assert automate["action"] == "removed" and automate["verification"]["result"] == "verified_absent"
    assert automate["after"]["uninstaller_rc"] == 3  # the broken uninstaller's exit code, then the fallback
    assert automate["after"]["method"] == "forced"
    assert any(d["kind"] == "startup" and "ltechagent" in d["name"] for d in automate["before"]["derived"])
    tactical = records[("field-srv01", "tactical_rmm")]
    assert tactical["action"] == "removed"
    assert tactical["after"]["attempts"][0]["method"] == "vendor_uninstaller"
    assert tactical["after"]["attempts"][0]["timed_out"] is True
    datto = records[("field-srv01", "datto_rmm")]
    assert datto["action"] == "removed"
    assert any(d["kind"] == "startup" and d["name"] == "/etc/rc.local" for d in datto["before"]["derived"])
    ninja = records[("field-ws01", "ninjaone")]
    assert ninja["action"] == "removed" and ninja["after"]["method"] == "forced"
    # The reference's package name (the catalog agrees since issue 13), a unit under another name.
    assert ninja["before"]["packages"] == ["ninjarmmagent"]
    derived = {(d["kind"], d["name"]): d["derived_from"] for d in ninja["before"]["derived"]}
    assert derived[("services", "ninjaone-agent.service")].startswith("ExecStart=/opt/NinjaRMMAgent/")
    assert [a["method"] for a in ninja["after"]["attempts"]] == ["package_manager", "forced"]
    # A package the catalog does not name, found because it owns the vendor's folder: purged.
    datto_ws = records[("field-ws01", "datto_rmm")]
    assert datto_ws["action"] == "removed" and datto_ws["after"]["method"] == "package_manager"
    derived = {(d["kind"], d["name"]): d["derived_from"] for d in datto_ws["before"]["derived"]}
    assert derived[("packages", "datto-rmm-agent")] == f"owns {field.fact('datto_service')}"
    sc = records[("field-ws01", f"screenconnect:{field.MSP_SC}")]
    assert sc["action"] == "removed"
    assert any(d["kind"] == "startup" and "init.d" in d["name"] for d in sc["before"]["derived"])
    assert field.CLIENT_SC not in str(sc)

    # 3. The host where something cannot be removed: failed, naming what remains.
    stuck = records[("field-srv02", "ninjaone")]
    assert stuck["action"] == "failed" and stuck["verification"]["result"] == "still_present"
    assert field.fact("ninja_dir") in stuck["error"]
    assert stuck["after"]["remaining"]["paths"] == [field.fact("ninja_dir")]
    assert "Could not remove ninjaone on field-srv02" in real.stdout
    assert not re.search(r"verified_absent", str(stuck["verification"]))
