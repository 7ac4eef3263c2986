"""A full disk (a small tmpfs mounted for the test): the run stops, says the disk is full, leaves nothing
unscrubbed and no traceback; the wrapper seals what it has as incomplete, a plain run stops too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import plain_playbook
from tests.unit.test_wrapper_pipeline import CANARY_ENV, CANARY_VAULT, ONLINE, mini  # noqa: F401

LOUD_ROLE = """
- name: FAKE | a task whose output is large (and carries the vaulted value)
  ansible.builtin.debug:
    msg: "{{ fake_admin_password }} {{ 'x' * 200000 }}"
  loop: [1, 2, 3, 4]
- name: FAKE | record | evidence per agent
  offboard_record:
    phase: agents
    component: fake_agent
    item: "{{ item }}"
    before: {found: true}
    action: removed
    verification: {method: path probe, result: verified_absent}
  loop: "{{ fake_agents }}"
"""


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few hundred KiB, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the full-disk tests mount a tmpfs: run them as root (CI and the dev machines are)")
    mount = tmp_path / "small-disk"
    mount.mkdir()

    def mounted(size: str) -> Path:
        options = f"size={size},mode=0700"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
        return mount

    yield mounted
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _no_canary(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert CANARY_VAULT.encode() not in data and CANARY_ENV.encode() not in data, path


def test_wrapper_on_a_full_disk_stops_says_so_and_keeps_nothing_unscrubbed(mini, small_disk):  # noqa: F811
    (mini.root / "roles/fake_agent_removal/tasks/main.yml").write_text(LOUD_ROLE)
    mini.set_m3(ONLINE)
    disk = small_disk("640k")
    out = mini.offboard("run", "mini", "--evidence-dir", str(disk))
    console = out.stdout + out.stderr
    assert out.returncode == 1, console
    assert "the disk is full" in console and "Traceback" not in console
    assert CANARY_VAULT not in console and CANARY_ENV not in console
    client = disk / "mini"
    assert not list(client.glob(".work-*")), "runner's raw output outlived the run"
    _no_canary(disk)
    runs = [p for p in client.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1
    meta = json.loads((runs[0] / "metadata.json").read_text())
    assert meta["status"] == "incomplete" and "the disk is full" in meta["reason"]
    # Sealed as incomplete when there was room for it; either way `verify` is not fooled.
    verify = mini.offboard("verify", "mini", "--evidence-dir", str(disk))
    assert verify.returncode == (0 if (runs[0] / "MANIFEST.sha256").exists() else 1)


def test_plain_run_stops_when_its_evidence_cannot_be_written(mini, small_disk):  # noqa: F811
    (mini.root / "roles/fake_agent_removal/tasks/main.yml").write_text(LOUD_ROLE)
    mini.set_m3(ONLINE)
    disk = small_disk("256k")
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # leave no room
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    env = {"OFFBOARD_EVIDENCE_DIR": str(disk / "evidence")}
    out = plain_playbook(mini.root, "offboard.yml", "-l", "mini", env=env)
    console = out.stdout + out.stderr
    assert out.returncode != 0, console
    assert "evidence cannot be written" in console and "the disk is full" in console
    assert "removed" not in console.split("evidence cannot be written")[-1]  # no task ran after it
    _no_canary(disk)


def test_plain_run_stops_on_a_symlinked_client_folder_and_leaves_its_target_alone(mini, tmp_path):  # noqa: F811
    """Evidence that cannot be written for another reason (a planted symlink) stops a plain run too."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    mini.store.parent.mkdir(parents=True, exist_ok=True)
    mini.store.symlink_to(target)
    out = plain_playbook(mini.root, "offboard.yml", "-l", "mini")
    console = out.stdout + out.stderr
    assert out.returncode != 0, console
    assert "evidence cannot be written" in console and "symlink" in console
    assert "Traceback" not in console
    assert (target.stat().st_mode & 0o777) == 0o755 and not list(target.iterdir())
