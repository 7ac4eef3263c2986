"""Proof of removal does not depend on the launcher: plain ansible-playbook, the offboard wrapper,
ansible-runner on a private data dir (what AWX does) and ansible-navigator without an execution
environment each write the same evidence records for the same rehearsal of the lab client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT

pytestmark = pytest.mark.lab

# One role keeps the four runs short; the records it writes are the same kind every agent role writes.
TAGS = "rmm_agent_removal"


def _launcher_env(evidence: Path) -> dict[str, str]:
    """The environment an AWX job or a shell in the project has: no ANSIBLE_CONFIG, so each launcher
    finds ansible.cfg in the project folder it runs from, as it would on a fresh checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "OFFBOARD_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OFFBOARD_EVIDENCE_DIR"] = str(evidence)
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True, timeout=900, check=False)


def plain(evidence: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "ansible-playbook"), "offboard.yml", "-l", "lab", "--tags", TAGS, "--check"]
    return _run(cmd, ROOT, _launcher_env(evidence))


def wrapper(evidence: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "offboard.cli", "run", "lab", "--tags", TAGS, "--check"]
    return _run(cmd, ROOT, _launcher_env(evidence))


def runner(evidence: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    # AWX's layout: a private data dir whose project/ is the checked-out repository.
    pdd = tmp / "private_data_dir"
    pdd.mkdir()
    (pdd / "project").symlink_to(ROOT, target_is_directory=True)
    cmd = [
        str(BIN / "ansible-runner"),
        "run",
        str(pdd),
        "-p",
        "offboard.yml",
        "--inventory",
        str(ROOT / "inventories"),
        "--cmdline",
        f"-l lab --tags {TAGS} --check",
    ]
    return _run(cmd, tmp, _launcher_env(evidence))


def navigator(evidence: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(BIN / "ansible-navigator"),
        "run",
        "offboard.yml",
        "--ee",
        "false",
        "--mode",
        "stdout",
        "--pae",
        "false",
        "--lf",
        str(tmp / "navigator.log"),
        "-i",
        "inventories",
        "-l",
        "lab",
        "--tags",
        TAGS,
        "--check",
    ]
    return _run(cmd, ROOT, _launcher_env(evidence))


LAUNCHERS = {"ansible-playbook": plain, "offboard": wrapper, "ansible-runner": runner, "navigator": navigator}


def _outcomes(evidence: Path) -> tuple[set[tuple[str, ...]], dict]:
    """The run's records as comparable facts, and its metadata."""
    (run,) = [p for p in (evidence / "lab").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert (run / "MANIFEST.sha256").is_file(), f"{run} was not sealed"
    facts = set()
    for line in (run / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") != "item":
            continue
        verification = rec.get("verification") or {}
        facts.add(
            (
                rec["host"],
                rec["component"],
                str(rec.get("item")),
                str(rec.get("action")),
                str(verification.get("result")),
            )
        )
    return facts, json.loads((run / "metadata.json").read_text())


def test_every_launcher_writes_the_same_sealed_evidence(lab, tmp_path: Path) -> None:
    seen: dict[str, set[tuple[str, ...]]] = {}
    for name, launch in LAUNCHERS.items():
        evidence = tmp_path / name / "evidence"
        work = tmp_path / name / "work"
        work.mkdir(parents=True)
        done = launch(evidence, work)
        # 75: the offline laptop is pending; every launcher exits non-zero for an unreachable host.
        assert done.returncode in (0, 2, 4, 75), (
            f"{name}: rc {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        facts, meta = _outcomes(evidence)
        assert facts, f"{name} wrote no records"
        assert meta.get("client") == "lab", name
        assert any(f[1] == "rmm_agent" and f[3] == "would_remove" for f in facts), (
            f"{name}: {sorted(facts)[:5]}"
        )
        seen[name] = facts
    reference = seen["ansible-playbook"]
    for name, facts in seen.items():
        assert facts == reference, (
            f"{name} differs: +{sorted(facts - reference)} -{sorted(reference - facts)}"
        )
    # The verifier accepts every launcher's run the same way.
    for name in LAUNCHERS:
        verify = subprocess.run(
            [sys.executable, "-m", "offboard.cli", "verify", "lab"],
            env={**_launcher_env(tmp_path / name / "evidence")},
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=False,
        )
        assert verify.returncode == 0, f"{name}: {verify.stdout}\n{verify.stderr}"
