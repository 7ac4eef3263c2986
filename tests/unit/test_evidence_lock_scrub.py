"""One run per client; secrets never kept in the runner artifacts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from offboard import scrub
from offboard.lock import Holder, LockHeld, RunLock, is_locked


def holder(run_id="r1"):
    return Holder(
        run_id=run_id, operator="tess@msp", pid=1234, hostname="ctl", since="t", command="offboard run"
    )


def test_a_second_run_on_the_same_client_is_refused_naming_the_holder(tmp_path):
    (tmp_path / "acme").mkdir()
    (tmp_path / "other").mkdir()
    with RunLock(tmp_path / "acme", "acme").acquire(holder()):
        with pytest.raises(LockHeld) as caught:
            RunLock(tmp_path / "acme", "acme").acquire(holder("r2"))
        assert "run r1" in str(caught.value) and "tess@msp" in str(caught.value)
        # A different client is not blocked.
        RunLock(tmp_path / "other", "other").acquire(holder("r3")).release()
        assert is_locked(tmp_path / "acme")
    assert not is_locked(tmp_path / "acme")


def test_a_lock_of_a_killed_process_is_free(tmp_path):
    code = (
        "import sys, os; sys.path[:0] = sys.argv[2:]; from offboard.lock import RunLock, Holder;"
        "from pathlib import Path; RunLock(Path(sys.argv[1]), 'acme').acquire("
        "Holder('r9','x',os.getpid(),'h','t','c')); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path), *sys.path], check=False)
    RunLock(tmp_path, "acme").acquire(holder()).release()


def test_command_artifact_keeps_no_environment_secret(tmp_path):
    env = {
        "PATH": "/usr/bin",
        "MSP_API_TOKEN": "canary-token-123456",
        "ANSIBLE_FORKS": "5",
        "HOME": "/root",
        "ANSIBLE_VAULT_PASSWORD_FILE": "/secure/vault.txt",
        "MY_PASSWD": "hunter2hunter2",
    }
    redact = scrub.Redactor(scrub.secrets_from_env(env))
    command = tmp_path / "command"
    command.write_text(
        json.dumps({"command": ["ansible-playbook", "-e", "x=canary-token-123456"], "cwd": "/p", "env": env})
    )
    scrub.scrub_command_in_place(command, redact)
    text = command.read_text()
    assert "canary-token-123456" not in text and "hunter2hunter2" not in text
    assert "MSP_API_TOKEN" not in text and "HOME" not in text
    assert json.loads(text)["env"] == {"ANSIBLE_FORKS": "5"}


def test_artifacts_are_copied_redacted_and_events_packed(tmp_path):
    src = tmp_path / "artifacts"
    (src / "job_events").mkdir(parents=True)
    (src / "stdout").write_text("token is canary-token-123456\n")
    (src / "command").write_text(
        json.dumps({"command": ["x"], "cwd": "/", "env": {"A_SECRET": "canary-token-123456"}})
    )
    for n in (2, 1, 10):
        (src / "job_events" / f"{n}-uuid.json").write_text(
            json.dumps({"counter": n, "stdout": "canary-token-123456"})
        )
    dest = tmp_path / "out"
    scrub.copy_artifacts(src, dest, scrub.Redactor(["canary-token-123456"]))
    for path in dest.rglob("*"):
        if path.is_file():
            assert "canary-token-123456" not in path.read_text(), path
    counters = [json.loads(line)["counter"] for line in (dest / "job_events.jsonl").read_text().splitlines()]
    assert counters == [1, 2, 10]


def test_streamed_events_are_scrubbed_kept_in_order_and_never_replaced_by_packing(tmp_path):
    redact = scrub.Redactor(["canary-token-123456"])
    dest = tmp_path / "out"
    log = scrub.EventLog(dest, redact)
    for n in (1, 2, 3):
        log.write({"counter": n, "stdout": f"event {n} canary-token-123456"})
    # Flushed per event: a run killed here keeps what it had.
    assert len((dest / scrub.EVENTS_FILE).read_text().splitlines()) == 3
    log.close()
    assert oct((dest / scrub.EVENTS_FILE).stat().st_mode & 0o777) == "0o600"
    # The recovery of a killed run copies its artifacts afterwards: runner's leftover event files (here
    # a stray one) must not overwrite the streamed log.
    src = tmp_path / "artifacts"
    (src / "job_events").mkdir(parents=True)
    (src / "job_events" / "9-uuid.json").write_text(json.dumps({"counter": 9}))
    (src / "stdout").write_text("x\n")
    scrub.copy_artifacts(src, dest, redact)
    lines = (dest / scrub.EVENTS_FILE).read_text().splitlines()
    assert [json.loads(line)["counter"] for line in lines] == [1, 2, 3]
    assert not any("canary-token-123456" in line for line in lines)


def test_vaulted_inventory_values_are_collected_for_redaction(tmp_path):
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(b"pw-for-tests"))])
    inv = tmp_path / "inv" / "group_vars" / "acme"
    inv.mkdir(parents=True)
    (inv / "vault.yml").write_bytes(vault.encrypt("vault_admin_password: canary-vault-98765\n"))
    pwfile = tmp_path / "pw"
    pwfile.write_text("pw-for-tests\n")
    found = scrub.secrets_from_vault({"ANSIBLE_VAULT_PASSWORD_FILE": str(pwfile)}, tmp_path / "inv")
    assert "canary-vault-98765" in found and "pw-for-tests" in found
