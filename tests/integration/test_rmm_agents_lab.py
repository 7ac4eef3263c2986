"""The agents phase on the lab: rehearsal changes nothing, the real run removes every MSP agent on the
reachable machines and nothing of the client's, and a second run changes nothing and records absence."""

from __future__ import annotations

import re

import pytest

from tests.conftest import evidence_dir, playbook, read_records, recap
from tests.integration.conftest import CLIENT_PROBES, MSP_PROBES, probed_state

pytestmark = pytest.mark.lab


def _msp_left(snapshot: dict) -> list[str]:
    left = [p for p in MSP_PROBES["packages"] if snapshot["packages"][p]]
    left += [u for u in MSP_PROBES["units"] if not snapshot["units"][u].startswith("not-found")]
    left += [p for p in MSP_PROBES["paths"] if snapshot["paths"][p]]
    left += [
        p
        for p in snapshot["processes"]
        if re.search(
            r"tacticalagent|meshagent|ninjarmm|ltechagent|CagService|AEMAgent|superops|teamviewerd|5e0b1c2d3a4f6789",
            p,
        )
    ]
    return left


def _client_state(snapshot: dict) -> dict:
    return {
        **probed_state(snapshot, CLIENT_PROBES),
        "processes": [p for p in snapshot["processes"] if "labclient" in p or "c0ffee00c11e0001" in p],
    }


def test_agents_phase_rehearsal_then_removal_then_idempotent(lab):
    planted = lab.snapshot_all()
    for host, snap in planted.items():
        assert _msp_left(snap), f"{host}: the lab planted no MSP agent"
        assert _client_state(snap)["packages"]["labclient-inventory"], f"{host}: client software not planted"
    assert _client_state(planted["lab-ws01"])["packages"]["connectwisecontrol-c0ffee00c11e0001"]

    # 1. Rehearsal: reports what would be removed, changes nothing.
    check = playbook("offboard.yml", "-l", "lab", "--tags", "agents", "--check")
    assert check.returncode == 4, check.stdout[-3000:]  # 4: the offline laptop is unreachable, nothing failed
    totals = recap(check.stdout)
    assert totals["lab-laptop01"]["unreachable"] == 1
    assert all(totals[h.name]["failed"] == 0 for h in lab.online)
    assert lab.snapshot_all() == planted
    rehearsal = read_records(evidence_dir(check.stdout))
    would = {(r["host"], r["item"]) for r in rehearsal if r.get("action") == "would_remove"}
    assert ("lab-ws01", "screenconnect:5e0b1c2d3a4f6789") in would
    assert ("lab-srv02", "tactical_rmm") in would
    assert not any(r.get("action") == "removed" for r in rehearsal)

    # 2. The real run: every MSP agent gone from every reachable machine; the client's software intact.
    real = playbook("offboard.yml", "-l", "lab", "--tags", "agents")
    assert real.returncode == 4, real.stdout[-3000:]
    after = lab.snapshot_all()
    for host, snap in after.items():
        assert _msp_left(snap) == [], f"{host}: MSP footprint left: {_msp_left(snap)}"
        assert _client_state(snap) == _client_state(planted[host]), f"{host}: client software changed"
    records = read_records(evidence_dir(real.stdout))
    removed = {(r["host"], r["item"]) for r in records if r.get("action") == "removed"}
    assert removed >= would
    assert all(
        r["verification"]["result"] == "verified_absent"
        for r in records
        if r.get("component") == "rmm_agent" and r.get("action") in ("removed", "none")
    )

    # 3. A second run changes nothing and records every agent as absent.
    again = playbook("offboard.yml", "-l", "lab", "--tags", "agents")
    assert again.returncode == 4
    totals = recap(again.stdout)
    assert all(totals[h.name]["changed"] == 0 for h in lab.online), again.stdout[-3000:]
    second = [r for r in read_records(evidence_dir(again.stdout)) if r.get("component") == "rmm_agent"]
    assert second and all(r["action"] == "none" for r in second)
    assert all(r["verification"]["result"] in ("verified_absent", "not_verified") for r in second)
