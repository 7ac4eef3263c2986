"""Shared test helpers: paths and a runner for ansible-playbook from the repository root."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Plugins import module_utils as ansible_collections.offboard.msp.plugins.module_utils.*: inside a run
# Ansible's collection loader finds the repository through collections/ (ansible.cfg); tests importing a
# plugin file find it the same way.
sys.path.insert(0, str(ROOT / "collections"))


def _project_module_utils() -> None:
    """Unit tests load the project's modules straight from their files; ansible finds their
    module_utils (plugins/module_utils, per ansible.cfg) only inside a run, so register them here."""
    import importlib.util

    import ansible.module_utils

    for path in sorted((ROOT / "plugins" / "module_utils").glob("*.py")):
        name = f"ansible.module_utils.{path.stem}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(ansible.module_utils, path.stem, module)


_project_module_utils()


def as_collection(project: Path) -> None:
    """Make a throw-away project the collection offboard.msp, as the repository is: ansible.cfg enables the
    callbacks by FQCN and finds the collection through collections/ansible_collections/offboard/msp."""
    link = project / "collections" / "ansible_collections" / "offboard" / "msp"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(project, link.parent), target_is_directory=True)


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update(extra)
    return env


def playbook(
    *args: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook exactly as a user would from the repository root."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=ROOT,
        env=env or ansible_env(),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """ansible-playbook's PLAY RECAP as {host: {ok: n, changed: n, ...}}."""
    found = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if m:
            found[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return found


def evidence_dir(stdout: str) -> Path:
    """The evidence folder a plain ansible-playbook run announced (offboard_evidence callback)."""
    m = re.search(r"offboard evidence: (\S+)", stdout)
    assert m, "the run did not report its evidence directory"
    return Path(m.group(1))


def read_records(run_dir: Path) -> list[dict]:
    text = (run_dir / "records.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def root() -> Path:
    return ROOT
