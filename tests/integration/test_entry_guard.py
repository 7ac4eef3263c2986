"""offboard.yml refuses any run that does not target exactly one valid client, before touching a host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, ansible_env, playbook

pytestmark = pytest.mark.lab


def _refused(proc, needle: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert needle in out, out[-2000:]
    # Nothing after the guard ran: no task of any phase role started.
    assert "TASK [rmm_agent_removal" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tags", "agents"], "no --limit given"),
        (["-l", "lab,example", "--tags", "agents"], "more than one client"),
        (["-l", "lab", "--tags", "nosuchphase"], "unknown tag 'nosuchphase'"),
    ],
    # Every phase has automation now; refusing one without it is covered by tests/unit/test_preflight.py.
    ids=["no-limit", "two-clients", "unknown-tag"],
)
def test_refused_runs_leave_the_lab_untouched(lab_session, args, needle):
    before = lab_session.snapshot_all()
    proc = playbook("offboard.yml", *args)
    _refused(proc, needle)
    assert lab_session.snapshot_all() == before


def test_limit_selecting_no_host_is_refused(lab_session):
    before = lab_session.snapshot_all()
    proc = playbook("offboard.yml", "-l", "nosuchclient", "--tags", "agents")
    assert proc.returncode != 0
    assert "no hosts" in (proc.stdout + proc.stderr).lower()
    assert lab_session.snapshot_all() == before


def _bad_inventory(tmp_path: Path, replace: tuple[str, str]) -> Path:
    inv = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", inv)
    gv = inv / "group_vars" / "lab.yml"
    text = gv.read_text()
    assert replace[0] in text
    gv.write_text(text.replace(*replace))
    return inv


@pytest.mark.parametrize(
    ("replace", "needle"),
    [
        (('contract_end: "2026-12-31"', 'contract_end: "2026-10-01"'), "is before offboard_dates.start"),
        (('start: "2026-11-02"', 'start: "2 Nov 2026"'), "write it as an ISO date"),
        (("- product: superops", "- product: superopz"), "unknown product 'superopz'"),
        (("    instances: [5e0b1c2d3a4f6789]\n", ""), "list the departing MSP's instance ids"),
    ],
    ids=["contract-end-before-start", "unparseable-date", "unknown-vendor", "instance-missing"],
)
def test_invalid_client_variables_are_refused_before_any_change(lab_session, tmp_path, replace, needle):
    inv = _bad_inventory(tmp_path, replace)
    before = lab_session.snapshot_all()
    proc = playbook("offboard.yml", "-i", str(inv), "-l", "lab", "--tags", "agents")
    _refused(proc, needle)
    assert lab_session.snapshot_all() == before


AGENTS_PHASE_VARS = {
    "offboard_client_id",
    "offboard_client_name",
    "offboard_dates",
    "offboard_msp_products",
    "offboard_security",
    "offboard_backup_terms",
    "offboard_msp_footprint",
    "offboard_gpo",
}


def test_the_agents_phase_runs_for_a_client_with_only_agents_variables(lab_session, tmp_path):
    """No access section (nor infra, team, hand-over recipient): `--tags agents` still runs its roles."""
    import json

    import yaml

    inv = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", inv)
    gv = inv / "group_vars" / "lab.yml"
    data = yaml.safe_load(gv.read_text())
    assert "offboard_msp_access" in data
    gv.write_text(yaml.safe_dump({k: v for k, v in data.items() if k in AGENTS_PHASE_VARS}))
    evidence = tmp_path / "evidence"
    env = ansible_env(OFFBOARD_EVIDENCE_DIR=str(evidence))
    proc = playbook("offboard.yml", "-i", str(inv), "-l", "lab-ws02", "--tags", "agents", "--check", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Validation of arguments failed" not in out
    (run,) = [p for p in (evidence / "lab").iterdir() if p.is_dir() and not p.name.startswith(".")]
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    ends = {(r["phase"], r["host"], r["outcome"]) for r in records if r["kind"] == "phase_end"}
    assert ends == {("agents", "lab-ws02", "ok")}
    assert any(r["kind"] == "item" and r["phase"] == "agents" for r in records)
