"""Canary secrets never reach the evidence store or the console, whatever way they travel.

The matrix (issue 15): a value from a vault file and from a vault password script, a `-vvvv` run, a
failing no_log task, a wrapper killed with -9 mid-run, a secret passed through a record field under an
innocent key, a URL credential in the environment, a password generated during the run, and the
hand-over package (a tar.gz, searched inside too). Each scenario is a real run of ansible-playbook
(through the wrapper or plain) against the local connection, in the throw-away `mini` project of
test_wrapper_pipeline.py, whose role is replaced here by one that handles secrets carelessly.
"""

from __future__ import annotations

import gzip
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import plain_playbook
from tests.unit.test_wrapper_pipeline import (  # noqa: F401 (mini is a fixture)
    CANARY_ENV,
    CANARY_VAULT,
    ONLINE,
    RECORD_TASK,
    REPO,
    mini,
)

URL_PASSWORD = "canary-urlpw-7d2e41b9"
DATABASE_URL = f"postgres://app:{URL_PASSWORD}@db.example.test:5432/app"
VAULT_PASSWORD = "vault-pass-for-tests"

CARELESS_ROLE = (
    """
- name: FAKE | discover | probe
  ansible.builtin.command: "sleep {{ lookup('ansible.builtin.env', 'FAKE_SLEEP', default='0') }}"
  changed_when: false
- name: CANARY | a careless task prints the vaulted value and the database URL
  ansible.builtin.debug:
    msg: "vault={{ fake_admin_password }} url={{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
- name: CANARY | generate a password on the controller
  ansible.builtin.set_fact:
    __fake_new_password: "{{ lookup('ansible.builtin.password', '/dev/null', length=24,
                             chars=['ascii_letters', 'digits']) }}"
  no_log: true
- name: CANARY | hand the generated password to the test (a file outside the store)
  ansible.builtin.copy:
    content: "{{ __fake_new_password }}"
    dest: "{{ lookup('ansible.builtin.env', 'CANARY_OUT') }}/{{ inventory_hostname }}"
    mode: "0600"
  no_log: true
- name: CANARY | a careless task prints the generated password
  ansible.builtin.debug:
    msg: "new={{ __fake_new_password }}"
- name: CANARY | a failing no_log task holding the vaulted value
  ansible.builtin.command: "false {{ fake_admin_password }}"
  no_log: true
  ignore_errors: true
  changed_when: false
- name: CANARY | record a secret under an innocent key
  offboard_record:
    phase: agents
    component: fake_agent
    item: canary
    before:
      found: true
      note: "{{ fake_admin_password }}"
      url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
      fresh: "{{ __fake_new_password }}"
    action: none
    verification: {method: probe, result: verified_absent}
- name: CANARY | export a configuration holding secrets
  offboard_export:
    name: config.txt
    content: "admin={{ fake_admin_password }}\\nnew={{ __fake_new_password }}\\n
      db={{ lookup('ansible.builtin.env', 'DATABASE_URL') }}\\n"
- name: CANARY | pack the hand-over package
  offboard_docs_package:
    client: mini
    hosts: "{{ ansible_play_hosts_all }}"
    reached: []
    targeted: "{{ ansible_play_hosts_all }}"
  run_once: true
- name: FAKE | wait (a test kills the run here)
  ansible.builtin.command: "sleep {{ lookup('ansible.builtin.env', 'LATE_SLEEP', default='0') }}"
  changed_when: false
"""
    + RECORD_TASK
)


@pytest.fixture
def careless(mini, tmp_path, monkeypatch):  # noqa: F811
    """The mini project with the careless role, the export actions, all hosts online, a database URL."""
    root = mini.root
    (root / "roles/fake_agent_removal/tasks/main.yml").write_text(CARELESS_ROLE)
    for name in ("offboard_export.py", "offboard_docs_package.py"):
        shutil.copy(REPO / "plugins/action" / name, root / "plugins/action" / name)
    mini.set_m3(ONLINE)
    out = tmp_path / "canary-out"
    out.mkdir()
    monkeypatch.setenv("CANARY_OUT", str(out))
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    mini.canary_out = out
    return mini


def _store_bytes(store: Path) -> list[tuple[Path, bytes]]:
    """Every file of the store (symlinks too), and every member of every gzip'd tar inside it."""
    import io
    import tarfile

    found = []
    for path in sorted(store.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        found.append((path, data))
        if path.name.endswith(".gz"):
            found.append((path, gzip.decompress(data)))
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        found.append((path / member.name, tar.extractfile(member).read()))
    return found


def _canaries(project) -> list[str]:
    out = project.canary_out
    generated = [p.read_text() for p in sorted(out.iterdir())] if out.exists() else []
    return [CANARY_VAULT, CANARY_ENV, URL_PASSWORD, VAULT_PASSWORD, *generated]


def _assert_nowhere(project, console: str, expect_generated: bool = True) -> None:
    canaries = _canaries(project)
    if expect_generated:
        assert len(canaries) > 4, "the role did not generate its passwords: the test proves nothing"
    files = _store_bytes(project.store)
    assert files, "no evidence at all"
    for canary in canaries:
        assert canary not in console, f"canary {canary[:12]}... on the console"
        for path, data in files:
            assert canary.encode() not in data, f"canary {canary[:12]}... in {path}"


def _assert_masked_in_evidence(project) -> None:
    """The secrets were there to leak (masks present), not absent because nothing ran."""
    joined = b"".join(data for _, data in _store_bytes(project.store))
    assert b"********" in joined
    assert b"postgres://app:********@db.example.test" in joined  # the URL survives, its password does not


def test_wrapper_run_keeps_every_canary_out_of_store_and_console(careless):
    run = careless.offboard("run", "mini")
    assert run.returncode == 0, run.stdout + run.stderr
    _assert_nowhere(careless, run.stdout + run.stderr)
    _assert_masked_in_evidence(careless)
    runs = careless.runs()
    exports = list(runs[-1].glob("exports/*/config.txt"))
    assert exports and "admin=********" in exports[0].read_text()
    assert list(runs[-1].glob("exports/_client/mini-handover.tar.gz"))
    assert careless.offboard("verify", "mini").returncode == 0


def test_plain_vvvv_run_keeps_every_canary_out_of_store_and_console(careless):
    out = plain_playbook(careless.root, "offboard.yml", "-l", "mini", "-vvvv")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "********" in out.stdout  # the careless debug tasks ran, masked
    _assert_nowhere(careless, out.stdout + out.stderr)
    _assert_masked_in_evidence(careless)


@pytest.mark.parametrize("kind", ["script", "client-script"])
def test_vault_password_scripts_are_loaded_the_way_ansible_does(careless, tmp_path, kind):
    """An executable vault password source (script, or -client script with vault ids) is run to collect
    the vault's values for redaction: the wrapper and the callback both know them."""
    if kind == "script":
        script = tmp_path / "vault-pass.sh"
        script.write_text(f"#!/bin/sh\necho {VAULT_PASSWORD}\n")
        env = {"ANSIBLE_VAULT_PASSWORD_FILE": str(script)}
    else:
        script = tmp_path / "vault-pass-client.sh"
        script.write_text(f'#!/bin/sh\n[ "$1" = --vault-id ] && [ "$2" = mini ] && echo {VAULT_PASSWORD}\n')
        env = {"ANSIBLE_VAULT_PASSWORD_FILE": "", "ANSIBLE_VAULT_IDENTITY_LIST": f"mini@{script}"}
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    run = careless.offboard("run", "mini", **env)
    assert run.returncode == 0, run.stdout + run.stderr
    _assert_nowhere(careless, run.stdout + run.stderr)


def test_a_failing_vault_script_refuses_the_run(careless, tmp_path):
    script = tmp_path / "broken-vault.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o700)
    run = careless.offboard("run", "mini", ANSIBLE_VAULT_PASSWORD_FILE=str(script))
    assert run.returncode == 2, run.stdout + run.stderr
    assert "cannot load the vault secrets" in run.stderr and "Traceback" not in run.stderr
    assert not careless.store.exists() or not careless.runs()


def test_kill_9_mid_run_leaves_no_canary_and_recovery_uses_no_other_runs_secrets(careless):
    proc = careless.start_run(subprocess.PIPE, subprocess.STDOUT, LATE_SLEEP="30")
    deadline = time.time() + 90
    while time.time() < deadline:
        runs = careless.runs() if careless.store.exists() else []
        records = runs[-1] / "records.jsonl" if runs else None
        if records and records.exists() and b'"item":"canary"' in records.read_bytes():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the run never reached the canary tasks")
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    killed_console = proc.communicate()[0].decode("utf-8", "replace")
    time.sleep(1.5)  # the callback's watchdog ends the orphaned ansible-playbook
    # The next run has a different environment: recovery must not scrub the dead run's leftovers with it.
    rerun = careless.offboard(
        "run", "mini", DATABASE_URL="postgres://app:other@db", MSP_API_TOKEN="other-token-1"
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    _assert_nowhere(careless, killed_console + rerun.stdout + rerun.stderr)
    assert careless.offboard("verify", "mini").returncode == 0


def test_short_secret_policy():
    """Shorter than 6 characters: a short secret known as one (an environment variable named like a token)
    is masked as a whole value in structured data (records, events), never as a substring of free text;
    under a secret-looking key, any value is masked whatever its length. (A short *vaulted* secret refuses
    the run: test below.)"""
    from offboard import scrub

    redact = scrub.Redactor(["long-secret-value", "ab1c2"])  # short values of unknown origin: ignored
    assert redact.data({"msg": "ab1c2"}) == {"msg": "ab1c2"}
    redact.add(["abc12"], short=True)  # e.g. MSP_API_TOKEN=abc12
    assert redact.data({"msg": "abc12", "other": "xabc12y"}) == {"msg": "********", "other": "xabc12y"}
    assert redact("see abc12 and long-secret-value") == "see abc12 and ********"
    assert redact.data({"api_token": "x1", "nested": [{"password": "p"}]}) == {
        "api_token": "********",
        "nested": [{"password": "********"}],
    }
    assert redact("jdbc:postgresql://u:pw@h and https://user:hunter2@host/x") == (
        "jdbc:postgresql://u:********@h and https://user:********@host/x"
    )


def test_a_short_vaulted_password_refuses_the_run(mini, tmp_path):  # noqa: F811
    """A vault value under a secret-looking key shorter than 6 characters cannot be masked reliably in
    free text: the run is refused before anything starts, naming the variable, not its value."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(VAULT_PASSWORD.encode()))])
    (mini.root / "inventories/mini/group_vars/mini/vault.yml").write_bytes(
        vault.encrypt("fake_admin_password: Xy7#q\n")
    )
    run = mini.offboard("run", "mini")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "fake_admin_password" in run.stderr and "shorter than 6" in run.stderr
    assert "Xy7#q" not in run.stdout + run.stderr
