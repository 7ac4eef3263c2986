"""The wrapper end to end through real ansible-runner and ansible-playbook, on a tiny local project.

The project is built per test: three hosts of client `mini` (two with the local connection, one
"offline" docker_api host whose docker daemon does not exist), one phase play whose role records two
items per host with offboard_record, and this repository's callback, action and vars plugins.
The lab tests (tests/integration/test_wrapper_lab.py) prove the same on the lab containers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from offboard import cli

from tests.conftest import evidence_project, offboard_cli, plain_playbook, vaulted_canary_env
from tests.guarded_project import DATES, add_preflight

REPO = Path(__file__).resolve().parents[2]
# The "offline" laptop talks to a docker daemon that cannot exist, so the test reads the same
# whether or not this machine's docker daemon is running.
NO_DAEMON = "unix:///nonexistent/offboard-test-docker.sock"
OFFLINE = (
    "m3: {ansible_connection: community.docker.docker_api, ansible_host: offboard-test-no-such-container,"
    f" docker_host: '{NO_DAEMON}'}}"
)
ONLINE = "m3: {}"
CANARY_ENV = "canary-env-5f1c2a9e77"
CANARY_VAULT = "canary-vault-0b7d31c4aa"

# The task every fake role ends with: one record per fake agent, as the real roles write them.
RECORD_TASK = """\
- name: FAKE | record | evidence per agent
  offboard_record:
    phase: agents
    component: fake_agent
    item: "{{ item }}"
    before: {found: true, paths: ["/opt/{{ item }}"]}
    action: "{{ 'would_remove' if ansible_check_mode else 'removed' }}"
    after: {found: false}
    verification: {method: path probe, result: verified_absent}
  loop: "{{ fake_agents }}"
"""

ROLE = (
    """
- name: FAKE | discover | probe (sleeps when FAKE_SLEEP is set, so a test can kill the run mid-way)
  ansible.builtin.command: "sleep {{ lookup('ansible.builtin.env', 'FAKE_SLEEP', default='0') }}"
  changed_when: false
- name: FAKE | use the vaulted secret the way a role would
  ansible.builtin.set_fact:
    __fake_secret_len: "{{ fake_admin_password | length }}"
  no_log: true
"""
    + RECORD_TASK
)


@pytest.fixture
def mini(tmp_path, monkeypatch):
    """A throw-away project + evidence store; returns a helper namespace."""
    project = evidence_project(
        tmp_path / "project",
        dirs=("playbooks", "roles/fake_agent_removal/tasks", "inventories/mini/group_vars/mini"),
    )
    (project / "offboard.yml").write_text(
        "- name: Phase 3 | agents\n  ansible.builtin.import_playbook: playbooks/agents.yml\n"
    )
    (project / "playbooks/agents.yml").write_text(
        "- name: Phase 3 | agents\n  hosts: all\n  gather_facts: false\n  vars: {offboard_phase: agents}\n"
        "  tags: [agents]\n  roles:\n    - role: fake_agent_removal\n      tags: [fake_agent_removal]\n"
    )
    (project / "roles/fake_agent_removal/tasks/main.yml").write_text(ROLE)
    (project / "inventories/mini/hosts.yml").write_text(
        f"mini:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: {sys.executable}\n"
        f"  hosts:\n    m1: {{}}\n    m2: {{}}\n    {OFFLINE}\n"
    )
    (project / "inventories/mini/group_vars/mini/main.yml").write_text(
        "offboard_client_id: mini\nfake_agents: [alpha, beta]\noffboard_msp_products: []\n" + DATES
    )
    add_preflight(project)
    evidence = tmp_path / "evidence"
    env = vaulted_canary_env(
        project,
        project / "inventories/mini/group_vars/mini/vault.yml",
        f"fake_admin_password: {CANARY_VAULT}\n",
        "vault-pass-for-tests",
        CANARY_ENV,
        evidence,
    )
    env["ANSIBLE_CONFIG"] = str(project / "ansible.cfg")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project)

    class Mini:
        root = project
        store = evidence / "mini"

        @staticmethod
        def offboard(*argv: str, **kw) -> subprocess.CompletedProcess:
            return offboard_cli(*argv, env=kw, timeout=300)

        @staticmethod
        def start_run(stdout: int, stderr: int, **kw: str) -> subprocess.Popen:
            """`offboard run mini` in the background, so a test can kill it mid-way."""
            return subprocess.Popen(
                [sys.executable, "-m", "offboard.cli", "run", "mini"],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **kw},
            )

        @staticmethod
        def set_m3(line: str) -> None:
            hosts = project / "inventories/mini/hosts.yml"
            hosts.write_text(hosts.read_text().replace(OFFLINE, line).replace(ONLINE, line))

        @staticmethod
        def runs() -> list[Path]:
            return sorted(
                p for p in (evidence / "mini").iterdir() if p.is_dir() and not p.name.startswith(".")
            )

        @staticmethod
        def records(run: Path) -> list[dict]:
            return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]

    return Mini


def _status(mini) -> dict:
    out = mini.offboard("status", "mini", "--json")
    return json.loads(out.stdout)


def test_offline_host_is_pending_then_retry_finishes_only_it(mini):
    first = mini.offboard("run", "mini", "--tags", "agents")
    assert first.returncode == 75, first.stdout + first.stderr
    status = _status(mini)
    assert [(p["host"], p["state"]) for p in status["pending"]] == [("m3", "unreachable")]
    assert status["pending"][0]["since"]
    assert f"docker daemon at {NO_DAEMON} not reachable" in status["pending"][0]["reason"]
    removed = {(r["host"], r["item"]) for r in status["rows"] if r["state"] == "removed"}
    assert removed == {("m1", "alpha"), ("m1", "beta"), ("m2", "alpha"), ("m2", "beta")}

    still_down = mini.offboard("retry", "mini")
    assert still_down.returncode == 75, still_down.stdout + still_down.stderr

    mini.set_m3(ONLINE)  # the laptop comes back
    retry = mini.offboard("retry", "mini")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    last = mini.runs()[-1]
    meta = json.loads((last / "metadata.json").read_text())
    assert meta["command"] == "retry" and meta["limit"] == "m3" and meta["tags"] == ["agents"]
    touched = {r["host"] for r in mini.records(last) if r["kind"] == "item"}
    assert touched == {"m3"}
    assert _status(mini)["pending"] == []
    assert mini.offboard("retry", "mini").returncode == 0  # nothing outstanding: no new run
    assert len(mini.runs()) == 3
    assert mini.offboard("verify", "mini").returncode == 0


def test_canary_secrets_never_reach_evidence_or_console(mini):
    out = mini.offboard("run", "mini", "--tags", "agents", "--check")
    run = mini.offboard("run", "mini")
    console = out.stdout + out.stderr + run.stdout + run.stderr
    assert CANARY_ENV not in console and CANARY_VAULT not in console
    files = [p for p in mini.store.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in files)
    for path in files:
        text = path.read_bytes()
        assert CANARY_ENV.encode() not in text, path
        assert CANARY_VAULT.encode() not in text, path
        assert b"vault-pass-for-tests" not in text, path
    assert not any("env" in p.relative_to(mini.store).parts for p in files)


def test_evidence_store_is_owner_only(mini):
    mini.offboard("run", "mini")
    for path in [mini.store.parent, *mini.store.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_run_metadata_says_who_when_what(mini):
    mini.offboard("run", "mini", "--tags", "agents", "--check", OFFBOARD_OPERATOR="tess@msp")
    meta = json.loads((mini.runs()[-1] / "metadata.json").read_text())
    assert meta["operator"] == "tess@msp" and meta["check_mode"] is True and meta["tags"] == ["agents"]
    assert meta["status"] == "complete" and meta["complete"] is True
    assert meta["started_at"].endswith("Z") and meta["ended_at"].endswith("Z")
    assert (
        meta["versions"]["ansible_core"]
        and meta["versions"]["ansible_runner"]
        and meta["versions"]["offboard"]
    )
    assert "commit" in meta["repository"] and meta["runner_rc"] is not None


def test_kill_9_marks_the_run_incomplete_and_a_rerun_completes(mini):
    mini.set_m3(ONLINE)
    proc = mini.start_run(subprocess.DEVNULL, subprocess.DEVNULL, FAKE_SLEEP="30")
    deadline = time.time() + 60
    while time.time() < deadline:
        runs = mini.runs() if mini.store.exists() else []
        if runs and (runs[-1] / "records.jsonl").exists():
            break
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = mini.runs()[-1]
    time.sleep(1.5)  # the callback's watchdog ends the orphaned ansible-playbook
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(mini.root / "offboard.yml") not in ps, "ansible-playbook outlived the killed wrapper"

    status = _status(mini)
    assert killed.name in status["incomplete_runs"] and killed.name in status["unsealed_runs"]
    assert status["pending"] == []  # an unsealed run is not evidence: the ledger does not count it
    assert mini.offboard("verify", "mini").returncode == 1  # the dead run is not sealed yet

    rerun = mini.offboard("run", "mini")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    meta = json.loads((killed / "metadata.json").read_text())
    assert meta["status"] == "incomplete" and meta["complete"] is False
    # Recovery never scrubs the dead run's raw output with this run's secrets: it drops it.
    assert "raw ansible output was dropped" in meta["reason"]
    assert not (killed / "artifacts" / "stdout").exists()
    assert (killed / "artifacts" / "job_events.jsonl").exists()  # scrubbed as they arrived
    assert not list(mini.store.glob(".work-*"))
    assert _status(mini)["pending"] == []
    assert mini.offboard("verify", "mini").returncode == 0


def test_a_second_concurrent_run_on_the_same_client_is_refused(mini):
    mini.set_m3(ONLINE)
    proc = mini.start_run(subprocess.DEVNULL, subprocess.DEVNULL, FAKE_SLEEP="8")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (mini.store.exists() and mini.runs()):
            time.sleep(0.2)
        second = mini.offboard("run", "mini")
        assert second.returncode == 1
        assert "already being worked on by run" in second.stderr and f"pid {proc.pid}" in second.stderr
    finally:
        proc.wait(timeout=120)
    assert len(mini.runs()) == 1


def test_plain_ansible_playbook_runs_leave_the_same_evidence(mini):
    out = plain_playbook(mini.root, "offboard.yml", "-l", "mini")
    assert out.returncode == 4, out.stdout + out.stderr  # m3 unreachable
    runs = mini.runs()
    assert len(runs) == 1
    meta = json.loads((runs[0] / "metadata.json").read_text())
    assert meta["source"] == "ansible-playbook" and meta["complete"] is True and meta["limit"] == "mini"
    status = _status(mini)
    assert [(p["host"], p["state"]) for p in status["pending"]] == [("m3", "unreachable")]
    assert mini.offboard("verify", "mini").returncode == 0
    # The wrapper chains its runs onto the plain run's manifest.
    mini.set_m3(ONLINE)
    assert mini.offboard("retry", "mini").returncode == 0
    assert (mini.runs()[-1] / "PREVIOUS.sha256").read_text().endswith(f"../{runs[0].name}/MANIFEST.sha256\n")
    assert mini.offboard("verify", "mini").returncode == 0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["run", "nosuchclient"], 2, "unknown client 'nosuchclient'"),
        (["run", "mini", "--tags", "agnets"], 2, "unknown tag 'agnets'"),
        (["run", "mini", "--tags", "infra"], 2, "phase 'infra' has no automation yet"),
        (["run", "mini", "--limit", "zz*"], 2, "selects no host"),
        (["status", "nosuchclient"], 2, "unknown client"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(mini, argv, code, message, capsys):
    assert cli.main(argv) == code
    assert message in capsys.readouterr().err
    assert not mini.store.exists() or not mini.runs()


def test_empty_inventory_and_unwritable_store_are_refused(mini, capsys, tmp_path):
    (mini.root / "inventories/empty/group_vars").mkdir(parents=True)
    (mini.root / "inventories/empty/hosts.yml").write_text("empty:\n  hosts: {}\n")
    assert cli.main(["run", "empty"]) == 2
    assert "no hosts" in capsys.readouterr().err
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:
        # root ignores permission bits: make the store path a file instead
        locked = tmp_path / "ro-file"
        locked.write_text("")
    assert cli.main(["run", "mini", "--evidence-dir", str(locked / "evidence")]) == 1
    assert "not writable" in capsys.readouterr().err


def test_runner_reads_the_playbook_output_in_batches_and_is_restored_after(tmp_path):
    """The pty read tuning (runner.batched_reads) reaches the spawn ansible-runner really makes.

    If a new ansible-runner stops spawning through pexpect.spawn, this fails instead of the tuning
    silently doing nothing."""
    import ansible_runner
    import ansible_runner.runner as runner_module
    import pexpect
    from offboard import runner

    spawned = []
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: batched}\n"
    )
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts").write_text("localhost ansible_connection=local\n")
    events = []
    with runner.batched_reads():
        batched = runner_module.pexpect.spawn

        class Spy(batched):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                spawned.append(self)

        runner_module.pexpect.spawn = Spy
        result = ansible_runner.run(
            private_data_dir=str(tmp_path),
            playbook="play.yml",
            quiet=True,
            suppress_env_files=True,
            envvars={"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])},
            event_handler=lambda e: events.append(e) or False,
        )
    assert runner_module.pexpect is pexpect and pexpect.spawn is not batched
    assert result.rc == 0
    assert len(spawned) == 1
    assert spawned[0].delayafterread == runner.READ_PAUSE
    assert spawned[0].maxread == runner.READ_SIZE
    assert any((e.get("event_data") or {}).get("res", {}).get("msg") == "batched" for e in events)
