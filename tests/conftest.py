"""Shared test helpers: paths and a runner for ansible-playbook from the repository root."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# What a throw-away project needs to record evidence as the repository does (paths under plugins/).
EVIDENCE_PLUGINS = (
    "action/offboard_record.py",
    "callback/offboard_evidence.py",
    "callback/offboard_preload.py",
    "vars/client_dirs.py",
    "module_utils/offboard_guard.py",
    "module_utils/offboard_vocabulary.py",
)


def evidence_project(project: Path, *plugins: str, dirs: tuple[str, ...] = ()) -> Path:
    """Make `project` a throw-away offboard project: the repository's ansible.cfg, the collection link, the
    evidence plugins (EVIDENCE_PLUGINS) plus `plugins`, and the folders `dirs`."""
    for sub in dirs:
        (project / sub).mkdir(parents=True, exist_ok=True)
    for plugin in (*EVIDENCE_PLUGINS, *plugins):
        (project / "plugins" / plugin).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "plugins" / plugin, project / "plugins" / plugin)
    shutil.copy(ROOT / "ansible.cfg", project / "ansible.cfg")
    as_collection(project)
    return project


def load_module(name: str, rel: str) -> types.ModuleType:
    """Load a file of the repository (rel to its root, e.g. a plugin) as a module named name."""
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def walk(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Yield (location, value) for node and everything below it; locations read `a.b[0].c`."""
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{where}[{index}]")


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update(extra)
    return env


def run_tool(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: int
) -> subprocess.CompletedProcess[str]:
    """Run a tool (ansible-playbook, offboard, ...) in cwd with exactly env, its output captured as text."""
    return subprocess.run(
        argv, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout, check=False
    )


def playbook(
    *args: str, env: dict[str, str] | None = None, timeout: int = 900, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook exactly as a user would from the repository root (or from cwd)."""
    argv = [str(BIN / "ansible-playbook"), *args]
    return run_tool(argv, cwd=cwd, env=env or ansible_env(), timeout=timeout)


def plain_playbook(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook inside a throw-away project (its own ansible.cfg), with this venv first on PATH
    and env added to the caller's environment."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    return run_tool(["ansible-playbook", *args], cwd=project, env=env, timeout=timeout)


def offboard_cli(
    *argv: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run the wrapper (`python -m offboard.cli`) as a user would, env added to the caller's environment."""
    return subprocess.run(
        [sys.executable, "-m", "offboard.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def vaulted_canary_env(
    project: Path, secrets: Path, text: str, password: str, token: str, evidence: Path
) -> dict[str, str]:
    """Write text vault-encrypted with password to secrets (a vars file of project) and the password beside
    project (vault-pass); return the environment a wrapper run of project needs to read it, with token as
    the environment canary MSP_API_TOKEN."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password.encode()))])
    secrets.write_bytes(vault.encrypt(text))
    password_file = project.parent / "vault-pass"
    password_file.write_text(f"{password}\n")
    return {
        "OFFBOARD_PROJECT_DIR": str(project),
        "OFFBOARD_EVIDENCE_DIR": str(evidence),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(password_file),
        "MSP_API_TOKEN": token,
    }


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
