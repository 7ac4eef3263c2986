"""The wrapper against the lab: offline laptop pending then retried, tamper evidence, kill -9,
canary secrets, one run per client. Needs the lead's `lab` fixture (tests/integration/conftest.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from offboard import lab as labmod

from tests.conftest import offboard_cli as offboard
from tests.conftest import vaulted_canary_env

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
LAPTOP = "lab-laptop01"
CANARY_ENV = "canary-env-lab-7d2f90b1"
CANARY_VAULT = "canary-vault-lab-3e8a51c6"


@pytest.fixture
def evidence(tmp_path, monkeypatch):
    root = tmp_path / "evidence"
    monkeypatch.setenv("OFFBOARD_EVIDENCE_DIR", str(root))
    return root


def status(*extra: str) -> dict:
    return json.loads(offboard("status", "lab", "--json", *extra).stdout)


def runs(root: Path) -> list[Path]:
    client = root / "lab"
    return sorted(p for p in client.iterdir() if p.is_dir() and not p.name.startswith("."))


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]


def test_preflight_classifies_the_offline_laptop_in_seconds(lab):
    labmod.stop_host(LAPTOP)
    start = time.monotonic()
    out = offboard("preflight", "lab", "--json")
    assert time.monotonic() - start < 10
    assert out.returncode == 75, out.stdout + out.stderr
    states = {h["host"]: h["state"] for h in json.loads(out.stdout)["hosts"]}
    assert states[LAPTOP] == "unreachable"
    assert {s for h, s in states.items() if h != LAPTOP} == {"reachable"}


def test_offline_laptop_is_pending_then_retry_touches_only_it(lab, evidence):
    labmod.stop_host(LAPTOP)
    try:
        first = offboard("run", "lab", "--tags", "agents")
        assert first.returncode == 75, first.stdout + first.stderr
        state = status()
        pending = state["pending"]
        assert [(p["host"], p["phase"], p["state"]) for p in pending] == [(LAPTOP, "agents", "unreachable")]
        assert pending[0]["since"].endswith("Z") and "exited" in pending[0]["reason"]
        others = [r for r in state["rows"] if r["host"] != LAPTOP]
        assert others and {r["state"] for r in others} <= {"removed", "absent"}
        assert any(r["state"] == "removed" for r in others)

        down = offboard("retry", "lab")
        assert down.returncode == 75, down.stdout + down.stderr

        labmod.start_host(LAPTOP)
        retry = offboard("retry", "lab")
        assert retry.returncode == 0, retry.stdout + retry.stderr
        last = runs(evidence)[-1]
        meta = json.loads((last / "metadata.json").read_text())
        assert meta["command"] == "retry" and meta["limit"] == LAPTOP and meta["tags"] == ["agents"]
        assert {r["host"] for r in records(last) if r["kind"] in ("item", "phase_end")} == {LAPTOP}
        after = status()
        assert after["pending"] == [] and after["exit_code"] == 0
        assert any(r["host"] == LAPTOP and r["state"] == "removed" for r in after["rows"])
        assert offboard("verify", "lab").returncode == 0
    finally:
        labmod.stop_host(LAPTOP)


def test_one_flipped_byte_or_a_deleted_run_fails_verify_naming_it(lab, evidence):
    labmod.stop_host(LAPTOP)
    # Three chained runs; what they did does not matter here, so one machine each keeps the test short.
    for _ in range(3):
        offboard("run", "lab", "--tags", "agents", "--check", "--limit", "lab-ws01")
    assert offboard("verify", "lab").returncode == 0
    pristine = evidence.parent / "pristine"
    shutil.copytree(evidence, pristine)
    first = runs(evidence)[0]
    for path in sorted(p for p in first.rglob("*") if p.is_file()):
        shutil.rmtree(evidence)
        shutil.copytree(pristine, evidence)
        target = evidence / path.relative_to(evidence.parent / "evidence")
        data = bytearray(target.read_bytes())
        if data:
            data[len(data) // 2] ^= 0x01
        else:
            data = bytearray(b"\n")  # an empty file cannot have a byte flipped: give it one
        target.write_bytes(bytes(data))
        out = offboard("verify", "lab")
        assert out.returncode == 1, target
        assert str(target.relative_to(evidence)) in out.stdout, out.stdout
    shutil.rmtree(evidence)
    shutil.copytree(pristine, evidence)
    middle = runs(evidence)[1]
    shutil.rmtree(middle)
    out = offboard("verify", "lab")
    assert out.returncode == 1 and "chain broken" in out.stdout and middle.name in out.stdout


def test_kill_9_mid_run_marks_it_incomplete_and_a_rerun_completes(lab, evidence):
    labmod.stop_host(LAPTOP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "offboard.cli", "run", "lab", "--tags", "agents"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        found = runs(evidence) if (evidence / "lab").is_dir() else []
        if found and (found[-1] / "records.jsonl").exists() and len(records(found[-1])) > 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = runs(evidence)[-1]
    time.sleep(1.5)
    assert "offboard.yml" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout

    state = status()
    assert killed.name in state["incomplete_runs"]
    rerun = offboard("run", "lab", "--tags", "agents")
    # 75: only the offline laptop remains. (1 would mean the role could not finish an agent that the
    # kill interrupted half-way: the ledger then names it as failed, with the reason.)
    assert rerun.returncode in (75, 1), rerun.stdout + rerun.stderr
    meta = json.loads((killed / "metadata.json").read_text())
    assert meta["status"] == "incomplete" and not meta["complete"]
    last = json.loads((runs(evidence)[-1] / "metadata.json").read_text())
    assert last["status"] == "complete" and last["complete"]
    after = status()
    assert killed.name in after["incomplete_runs"]
    # Consistent ledger: no host is left "pending" by the killed run; the laptop is unreachable.
    assert {(p["host"], p["state"]) for p in after["pending"] if p["state"] != "failed"} == {
        (LAPTOP, "unreachable")
    }
    assert all(p["items"] for p in after["pending"] if p["state"] == "failed")
    assert offboard("verify", "lab").returncode == 0


def test_canary_secrets_reach_no_evidence_file_and_not_the_console(lab, tmp_path):
    """A copy of the project whose lab inventory holds a vaulted canary; another canary in the environment."""
    project = tmp_path / "project"
    shutil.copytree(
        REPO,
        project,
        # collections/ansible_collections/offboard/msp links back to the root: copied as the link it is.
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "evidence", ".cache", "__pycache__", "*.egg-info", "molecule"
        ),
    )
    host_vars = project / "inventories/lab/host_vars"
    host_vars.mkdir(exist_ok=True)
    root = tmp_path / "evidence"
    env = vaulted_canary_env(
        project,
        host_vars / "lab-srv01.yml",
        f"msp_admin_password: {CANARY_VAULT}\n",
        "lab-vault-pass",
        CANARY_ENV,
        root,
    )
    labmod.stop_host(LAPTOP)
    console = ""
    for argv in (
        ("run", "lab", "--tags", "agents", "--check"),
        ("run", "lab"),
        ("status", "lab"),
        ("retry", "lab"),
        ("verify", "lab"),
    ):
        out = offboard(*argv, env=env)
        console += out.stdout + out.stderr
    assert "REFUSED" not in console, console
    assert CANARY_ENV not in console and CANARY_VAULT not in console
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in files) and any(p.name == "job_events.jsonl" for p in files)
    for path in files:
        blob = path.read_bytes()
        assert CANARY_ENV.encode() not in blob, path
        assert CANARY_VAULT.encode() not in blob, path
        assert b"lab-vault-pass" not in blob, path


def test_a_second_concurrent_run_on_the_same_client_is_refused(lab, evidence):
    labmod.stop_host(LAPTOP)
    first = subprocess.Popen(
        [sys.executable, "-m", "offboard.cli", "run", "lab", "--check"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not ((evidence / "lab").is_dir() and runs(evidence)):
            time.sleep(0.1)
        second = offboard("run", "lab", "--check")
        assert second.returncode == 1
        assert "already being worked on by run" in second.stderr and f"pid {first.pid}" in second.stderr
    finally:
        first.wait(timeout=600)
    assert len(runs(evidence)) == 1
