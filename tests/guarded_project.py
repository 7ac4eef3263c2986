"""Give a throw-away test project the real guard: the preflight play and what it needs.

Phase plays refuse to run unless this run's preflight passed (docs/threat-model.md), so a small project
built by a test to exercise the callback or the wrapper needs the same preflight as offboard.yml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT

FILES = (
    "plugins/action/offboard_preflight.py",
    "plugins/action/offboard_agents_preflight.py",
    "plugins/filter/gpo.py",
    "plugins/lookup/offboard_preflight_hosts.py",
    "plugins/module_utils/offboard_paths.py",
    "plugins/module_utils/offboard_guard.py",
    "plugins/module_utils/offboard_vocabulary.py",
    "plugins/module_utils/offboard_products.py",
    "playbooks/preflight.yml",
)
# Dates that pass the preflight whenever the test runs (a contract end in the past is refused).
DATES = "offboard_dates: {start: '2026-11-02', contract_end: '2099-12-31', access_revocation: '2026-11-16'}\n"


def add_preflight(project: Path) -> None:
    """Copy the guard into `project` and put the preflight play in front of its offboard.yml."""
    for rel in FILES:
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, project / rel)
    playbook = project / "offboard.yml"
    head = "- name: Preflight\n  ansible.builtin.import_playbook: playbooks/preflight.yml\n"
    playbook.write_text(head + playbook.read_text())
