"""offboard_preload: filter and connection plugins are imported once, in the controller, not in each worker.

A real ansible-playbook run on a throw-away project: two hosts on a connection plugin in a collection
(local, renamed), three tasks that use a filter of the project; both plugins' modules write the
importing process's pid to a file. Without the callback every worker (one per task and host) imports
them; with it, exactly one process does, the same one for both.

The same for a filter that the collection holding the callback ships and the tasks call by FQCN (as the
roles call offboard.msp.*): the callback is copied into a throw-away collection beside such a filter.
And the garbage collector: frozen before each task's workers fork, unfrozen at the end.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_module

REPO = Path(__file__).resolve().parents[2]

FILTER = """
import os
with open(os.environ["PRELOAD_TEST_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")


class FilterModule:
    def filters(self):
        return {"preload_echo": lambda value: value}
"""

CONNECTION = """
import os
with open(os.environ["PRELOAD_TEST_LOG"] + ".connection", "a") as log:
    log.write(f"{os.getpid()}\\n")

from ansible.plugins.connection.local import DOCUMENTATION as _LOCAL_DOC
from ansible.plugins.connection.local import Connection as _Local

DOCUMENTATION = _LOCAL_DOC.replace("name: local", "name: preload_local", 1)


class Connection(_Local):
    transport = "preload_local"
"""

PLAYBOOK = """
- name: Use a project filter in three tasks on two hosts
  hosts: all
  gather_facts: false
  tasks:
    - name: One
      ansible.builtin.debug: {msg: "{{ 'one' | preload_echo }}"}
    - name: Two
      ansible.builtin.debug: {msg: "{{ 'two' | preload_echo }}"}
    - name: Three
      ansible.builtin.debug: {msg: "{{ 'three' | preload_echo }}"}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "filter_plugins").mkdir()
    (tmp_path / "filter_plugins" / "preload_marker.py").write_text(FILTER)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    # In a collection, as the lab's community.docker.docker_api is: Ansible's controller already loads a
    # connection plugin from a plain connection_plugins directory itself, but not one in a collection.
    plugins = tmp_path / "collections/ansible_collections/preloadtest/conn/plugins/connection"
    plugins.mkdir(parents=True)
    (plugins / "preload_local.py").write_text(CONNECTION)
    (tmp_path / "hosts").write_text(
        "[all:vars]\nansible_connection=preloadtest.conn.preload_local\n"
        f"ansible_python_interpreter={sys.executable}\n"
        "[nodes]\nh1\nh2\n"
    )
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\n"
        f"callback_plugins = {REPO / 'plugins' / 'callback'}\n"
        f"filter_plugins = {tmp_path / 'filter_plugins'}\n"
        f"collections_path = {tmp_path / 'collections'}\n"
        "forks = 2\n"
    )
    return tmp_path


def _importing_pids(project: Path, callbacks: str) -> tuple[list[str], list[str]]:
    """The pids that imported the filter plugin, and those that imported the connection plugin."""
    log = project / f"imports-{callbacks or 'none'}.log"
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CALLBACKS_ENABLED"}
    env |= {
        "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
        "PRELOAD_TEST_LOG": str(log),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    if callbacks:
        env["ANSIBLE_CALLBACKS_ENABLED"] = callbacks
    proc = subprocess.run(
        ["ansible-playbook", "-i", "hosts", "play.yml"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok: [h") == 6, proc.stdout
    return log.read_text().split(), Path(f"{log}.connection").read_text().split()


def test_without_preload_every_worker_imports_the_plugins(project):
    filters, connections = _importing_pids(project, "")
    assert len(filters) == 6 and len(connections) == 6


def test_with_preload_one_process_imports_them_and_workers_inherit(project):
    filters, connections = _importing_pids(project, "offboard_preload")
    assert len(filters) == 1 and connections == filters


def test_with_preload_the_collections_own_filters_are_imported_once(project):
    """A filter of the collection the callback belongs to, called by FQCN: `all()` does not load it."""
    own = project / "collections/ansible_collections/preloadtest/conn/plugins"
    (own / "filter").mkdir()
    (own / "filter" / "marker.py").write_text(FILTER.replace("preload_echo", "own_echo"))
    (own / "callback").mkdir()
    shutil.copy(REPO / "plugins/callback/offboard_preload.py", own / "callback" / "offboard_preload.py")
    play = project / "play.yml"
    play.write_text(PLAYBOOK.replace("| preload_echo", "| preloadtest.conn.own_echo"))
    (project / "filter_plugins" / "preload_marker.py").unlink()

    filters, _connections = _importing_pids(project, "")
    assert len(filters) == 6  # without it: each worker imports the collection's filter file again
    filters, connections = _importing_pids(project, "preloadtest.conn.offboard_preload")
    assert len(filters) == 1 and connections == filters


def test_the_collector_is_frozen_before_each_task_and_thawed_at_the_end():
    preload = load_module("offboard_preload_gc", "plugins/callback/offboard_preload.py")
    callback = preload.CallbackModule()
    try:
        gc.unfreeze()
        assert gc.get_freeze_count() == 0
        callback.v2_playbook_on_task_start(task=None, is_conditional=False)
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        callback.v2_playbook_on_handler_task_start(task=None)
        assert gc.get_freeze_count() > 0
        callback.v2_playbook_on_stats(stats=None)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
