"""Static checks of the agents-phase Windows paths, which cannot run here (no Windows host, no PowerShell):
the scheduled-task scan script's parameters agree with the task file that calls it, it returns what the
tasks read, uses no aliases, and no uninstall code is ever a task argument of the agent roles."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT

PS1 = ROOT / "roles/scheduled_task_cleanup/files/windows_footprint.ps1"
WIN_TASKS = ROOT / "roles/scheduled_task_cleanup/tasks/windows.yml"


def _params() -> set[str]:
    text = PS1.read_text()
    block = text[text.index("param (") : text.index(")\n$ErrorActionPreference")]
    return set(re.findall(r"\$([A-Za-z]+)", block))


def test_parameters_agree_with_the_task_file():
    tasks = yaml.safe_load(WIN_TASKS.read_text())
    used = set()
    for task in tasks:
        params = (task.get("ansible.windows.win_powershell") or {}).get("parameters") or {}
        used |= set(params) - {"<<"}
        assert "lookup('ansible.builtin.file', 'windows_footprint.ps1')" in str(
            task.get("ansible.windows.win_powershell", {}).get(
                "script", "lookup('ansible.builtin.file', 'windows_footprint.ps1')"
            )
        )
    assert used, "the task file calls the script with parameters"
    assert used <= _params(), f"unknown parameters {used - _params()}"
    assert "Remove" in used


def test_result_shape_is_what_the_tasks_read():
    text = PS1.read_text()
    assert "$Ansible.Result = @{ items = @($items); kept = @($kept) }" in text
    for field in (
        "id",
        "kind",
        "component",
        "path",
        "definition",
        "definition_sha256",
        "definition_bytes",
        "truncated",
        "matched_by",
    ):
        assert re.search(rf"\b{field} = ", text), field
    tasks = WIN_TASKS.read_text()
    for field in (
        "definition",
        "definition_sha256",
        "definition_bytes",
        "truncated",
        "matched_by",
        "component",
    ):
        assert f"__scheduled_task_cleanup_item.{field}" in tasks


def test_components_are_the_checklists():
    text = PS1.read_text()
    assert set(re.findall(r"-Component '([a-z_]+)'", text)) == {"scheduled_task", "startup_script"}


def test_no_aliases_and_no_shadowed_cmdlets():
    text = PS1.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for alias in (" % ", " ? ", "gci ", " ls ", " cat ", " rm ", " del ", " sc "):
        assert alias not in code, alias
    assert "Function New-Item" not in text  # would shadow the cmdlet


def test_no_uninstall_code_is_ever_a_task_argument():
    """The agent roles name the variables that hold codes; the engine reads them itself. So no task
    argument, event or record carries a code, and the engine task needs no no_log (which would censor
    its evidence records)."""
    roles = ("rmm_agent_removal", "backup_agent_removal", "security_software_transition")
    for role in roles:
        for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
            for task in yaml.safe_load(path.read_text()) or []:
                text = yaml.safe_dump(task)
                for template in re.findall(r"\{\{(.*?)\}\}", text, re.S):
                    assert "uninstall_code" not in template, f"{path.name}: {task['name']}"
                engine = task.get("offboard_agent_engine")
                if engine:
                    assert not task.get("no_log"), f"{path.name}: no_log would censor the records"
                    assert "secrets" not in engine, "codes go by variable name (secrets_var / secret_vars)"
