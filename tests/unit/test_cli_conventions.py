"""Issue 18's CLI conventions: --json on every command (one envelope), shell completion from the parser,
and `status` as one row per host plus the items not done, plain text when not on a terminal.

No Ansible run here: a store is built with the evidence API, then read through the real CLI in-process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess

import pytest
from offboard import cli, completion, jsonout
from offboard.evidence import EvidenceStore

from tests.unit.test_evidence_store_trust import CLIENT, REPO, item, make_run, rec

RUN = "20261201T000000.000Z-aaaaaa"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand parser, nested ones (e.g. `lab up`) by their full name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = subcommands(sub)
                found.update({f"{name} {n}": p for n, p in nested.items()} if nested else {name: sub})
    return found


def test_every_command_takes_json():
    """Every command the parser knows, including the ones other modules register (the list is read from
    the parser, so a new command without --json fails here)."""
    commands = subcommands(cli.build_parser())
    assert {"run", "status", "retry", "verify", "preflight", "completion"} <= set(commands)
    missing = sorted(name for name, p in commands.items() if "--json" not in p._option_string_actions)
    assert not missing, f"commands without --json: {missing}"


@pytest.fixture
def store(tmp_path, monkeypatch) -> EvidenceStore:
    root = tmp_path / "evidence"
    monkeypatch.setenv("OFFBOARD_PROJECT_DIR", str(REPO))
    monkeypatch.setenv("OFFBOARD_EVIDENCE_DIR", str(root))
    return EvidenceStore(root)


def ledger_run(store: EvidenceStore) -> None:
    """lab-ws01 done (one agent removed); lab-ws02 started the phase and never finished it: pending."""
    lines = [rec("phase_start", RUN, hosts=["lab-ws01", "lab-ws02"]), item(RUN, "lab-ws01", "ninjaone")]
    make_run(store, RUN, [*lines, rec("phase_end", RUN, host="lab-ws01", outcome="ok")])


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_json_is_the_envelope_with_a_row_per_host(store, capsys):
    ledger_run(store)
    code, out, _ = run_cli(capsys, "status", CLIENT, "--json")
    doc = json.loads(out)
    assert code == 75
    assert (doc["command"], doc["schema"], doc["exit_code"], doc["ok"]) == ("status", 1, 75, False)
    assert doc["scope"] == "client" and doc["client"] == CLIENT
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert (hosts["lab-ws01"]["done"], hosts["lab-ws01"]["pending"]) == (1, 0)
    assert (hosts["lab-ws02"]["done"], hosts["lab-ws02"]["pending"]) == (0, 1)
    assert {p["host"] for p in doc["pending"]} == {"lab-ws02"}
    assert {r["item"] for r in doc["rows"]} == {"ninjaone", "*"}


def test_status_shows_hosts_and_only_items_not_done_in_plain_text(store, capsys):
    ledger_run(store)
    code, out, _ = run_cli(capsys, "status", CLIENT)
    assert code == 75
    summary = [line.split() for line in out.splitlines() if line.startswith("lab-ws0")]
    assert ["lab-ws01", "1", "0", "0", "2026-12-01T00:00:00Z"] in summary
    assert "ninjaone" not in out, "a done item is listed without --items"
    assert "ITEMS NOT DONE" in out and "PENDING (1 host-phase(s)" in out
    assert "\x1b" not in out and not set(out) & set("─━│┃┌┐└┘╇╈"), "colour or box drawing off a terminal"
    code, out, _ = run_cli(capsys, "status", CLIENT, "--items")
    assert "ninjaone" in out and "removed" in out


def test_status_all_and_verify_and_usage_errors_use_the_envelope(store, capsys):
    ledger_run(store)
    code, out, _ = run_cli(capsys, "status", "--all", "--json")
    doc = json.loads(out)
    assert (doc["command"], doc["scope"], doc["exit_code"]) == ("status", "all", code)
    assert CLIENT in {c["client"] for c in doc["clients"]}
    code, out, _ = run_cli(capsys, "verify", CLIENT, "--json")
    doc = json.loads(out)
    assert (code, doc["command"], doc["ok"], doc["runs"]) == (0, "verify", True, 1)
    code, out, err = run_cli(capsys, "status", "no-such-client", "--json")
    doc = json.loads(out)
    assert (code, doc["exit_code"], doc["ok"]) == (2, 2, False) and "unknown client" in doc["error"]
    assert "unknown client" in err


def test_emit_refuses_fields_that_are_the_envelope(capsys):
    with pytest.raises(ValueError):
        jsonout.emit("status", 0, {"ok": True})


def test_bash_completion_is_valid_and_completes_subcommands(tmp_path):
    script = tmp_path / "offboard.bash"
    script.write_text(completion.script(cli.build_parser(), "bash"))
    bash = shutil.which("bash")
    assert bash
    assert subprocess.run([bash, "-n", str(script)], capture_output=True).returncode == 0
    probe = (
        f"source {script}; COMP_WORDS=(offboard {{word}}); COMP_CWORD=1; COMP_LINE='offboard {{word}}'; "
        'COMP_POINT=${{#COMP_LINE}}; _shtab_offboard; echo "${{COMPREPLY[@]}}"'
    )
    for word, expect in (("st", {"status", "start"}), ("ret", {"retry"}), ("comp", {"completion"})):
        out = subprocess.run([bash, "-c", probe.format(word=word)], capture_output=True, text=True)
        assert set(out.stdout.split()) == expect, (word, out.stdout, out.stderr)


def test_completion_command_prints_bash_and_zsh(capsys):
    code, out, _ = run_cli(capsys, "completion", "zsh")
    assert code == 0 and out.startswith("#compdef offboard") and "retry" in out
    code, out, _ = run_cli(capsys, "completion", "bash", "--json")
    doc = json.loads(out)
    assert (doc["command"], doc["shell"]) == ("completion", "bash") and "_shtab_offboard" in doc["script"]
