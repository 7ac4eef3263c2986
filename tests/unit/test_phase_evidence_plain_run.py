"""Plain ansible-playbook runs with several phase plays: only the selected phase starts (a role's argument
validation, tagged `always`, does not start the others), bad role input still ends the phase as failed, and
a role's export lands in the run's evidence and manifest through offboard_export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, evidence_project, playbook
from tests.guarded_project import DATES, add_preflight

SPEC = """argument_specs:
  main:
    short_description: test role
    options:
      {name}_count: {{type: int, required: false, default: 1}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = evidence_project(
        tmp_path / "project", "action/offboard_export.py", dirs=("inventories/mini/group_vars",)
    )
    plays = []
    for phase, role in (("docs", "role_docs"), ("infra", "role_infra")):
        (project / f"roles/{role}/tasks").mkdir(parents=True)
        (project / f"roles/{role}/meta").mkdir(parents=True)
        (project / f"roles/{role}/meta/argument_specs.yml").write_text(SPEC.format(name=role))
        (project / f"roles/{role}/tasks/main.yml").write_text(
            f"- name: export\n  offboard_export: {{name: {phase}.txt, content: 'from {phase}'}}\n"
            "  register: out\n"
            f"- name: record\n  offboard_record:\n    phase: {phase}\n    component: c\n    item: i\n"
            "    action: exported\n    export: {path: '{{ out.relpath }}', sha256: '{{ out.sha256 }}'}\n"
        )
        plays.append(
            f"- name: {phase}\n  hosts: all\n  gather_facts: false\n  vars: {{offboard_phase: {phase}}}\n"
            f"  tags: [{phase}]\n  roles: [{role}]\n"
        )
    (project / "offboard.yml").write_text("".join(plays))
    (project / "inventories/mini/hosts.yml").write_text(
        f"mini:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: {sys.executable}\n"
        "  hosts:\n    m1: {}\n"
    )
    (project / "inventories/mini/group_vars/mini.yml").write_text("offboard_client_id: mini\n" + DATES)
    add_preflight(project)
    return project


def _run(project: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    env = dict(os.environ)
    env.pop("OFFBOARD_EVIDENCE_RUN_DIR", None)
    env.pop("OFFBOARD_NO_EVIDENCE", None)
    env.update(
        ANSIBLE_CONFIG=str(project / "ansible.cfg"),
        OFFBOARD_EVIDENCE_DIR=str(project / "evidence"),
        OFFBOARD_PROJECT_DIR=str(project),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    proc = playbook("offboard.yml", "-l", "mini", *args, env=env, timeout=120, cwd=project)
    runs = sorted((project / "evidence" / "mini").glob("2*"))
    return proc, runs[-1] if runs else project


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines() if line]


def test_only_the_selected_phase_starts_and_its_export_is_sealed(project):
    proc, run_dir = _run(project, "--tags", "infra")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = _records(run_dir)
    assert {r["phase"] for r in records if r["kind"] in ("phase_start", "phase_end")} == {"infra"}
    item = next(r for r in records if r["kind"] == "item")
    assert item["export"]["path"] == "exports/m1/infra.txt"
    assert (run_dir / "exports/m1/infra.txt").read_text() == "from infra"
    assert "exports/m1/infra.txt" in (run_dir / "MANIFEST.sha256").read_text()
    assert not (run_dir / "exports/m1/docs.txt").exists()


def test_bad_role_input_ends_its_phase_as_failed(project):
    proc, run_dir = _run(project, "--tags", "docs", "-e", "role_infra_count=notanumber")
    assert proc.returncode != 0
    ends = {(r["phase"], r["outcome"]) for r in _records(run_dir) if r["kind"] == "phase_end"}
    assert ends == {("docs", "ok"), ("infra", "failed")}
