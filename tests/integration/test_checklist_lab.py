"""The checklist against the lab: a rehearsal changes nothing and lists the missing inputs; the RMM
step closes only after the offline laptop is retried clean, and no attestation can close it before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from offboard import lab as lab_mod

pytestmark = pytest.mark.lab

LAPTOP = "lab-laptop01"


def offboard(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # The console script, as a user runs it (`python -m offboard.cli` would load cli twice).
        [str(Path(sys.executable).with_name("offboard")), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=900,
        check=False,
    )


def _footprints(lab) -> dict:
    """Packages, units and paths of every online host (process lists vary with timing)."""
    return {h: {k: v for k, v in snap.items() if k != "processes"} for h, snap in lab.snapshot_all().items()}


def _step(env: dict[str, str], step: str) -> dict:
    proc = offboard(env, "plan", "lab", "--json")
    return next(s for s in json.loads(proc.stdout)["steps"] if s["id"] == step)


def test_rehearsal_changes_nothing_and_rmm_step_closes_only_after_the_laptop_is_retried(lab, tmp_path):
    env = {"OFFBOARD_EVIDENCE_DIR": str(tmp_path / "evidence"), "OFFBOARD_NOW": "2026-11-12T08:00:00Z"}
    for var in ("OFFBOARD_SMTP_HOST", "OFFBOARD_WEBHOOK_URL"):
        env[var] = ""
    before = _footprints(lab)

    rehearsal = offboard(env, "rehearse", "lab")
    out = rehearsal.stdout + rehearsal.stderr
    assert rehearsal.returncode == 1, out[-3000:]
    # The lab has a recipient key (the access phase hands rotated passwords over, encrypted to it).
    assert "age_public_key is not set" not in out
    assert "MISSING offboard_security.replacement_coverage_confirmed is not true" in out
    assert "MISSING no notification channel" in out
    assert "would send reminder for 3.1 to Tess Tech <tess@msp.test>" in out
    assert "would send escalation for 1.3 to Lee Lead <lee@msp.test>" in out
    assert _footprints(lab) == before  # nothing changed on any machine
    assert offboard(env, "plan", "lab").returncode == 2  # and no plan was recorded

    assert offboard(env, "start", "lab").returncode == 75
    run = offboard(env, "run", "lab", "--tags", "agents")
    assert run.returncode == 75, run.stdout[-3000:]
    rmm = _step(env, "3.1")
    assert not rmm["done"] and rmm["status"] == "overdue 1d"
    assert "7/8 devices clean" in rmm["evidence"] and LAPTOP in rmm["evidence"]
    refused = offboard(env, "attest", "lab", "3.1", "--by", "Tess Tech", "--note", "all done, trust me")
    assert refused.returncode == 1 and LAPTOP in refused.stderr, refused.stderr

    lab_mod.start_host(LAPTOP)
    retry = offboard(env, "retry", "lab")
    assert retry.returncode == 0, retry.stdout[-3000:]
    rmm = _step(env, "3.1")
    assert rmm["done"] and rmm["evidence"] == "8/8 devices clean", rmm
    assert offboard(env, "verify", "lab").returncode == 0
