"""The store trusts nothing it did not seal: forged and unsealed runs, an empty store, symlinks, bad lines.

No Ansible run here: stores are built with the evidence API (or by hand, as a forger would), then read
through the real CLI (`offboard status|verify|retry` in-process) against this repository's lab inventory.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from offboard import cli, commands, manifest
from offboard.evidence import EvidenceStore, RunMetadata, write_metadata
from offboard.fsutil import SymlinkRefused
from offboard.ledger import Ledger
from offboard.lock import Holder, RunLock
from offboard.records import Record

REPO = Path(__file__).resolve().parents[2]
CLIENT = "lab"
# The metadata of a finished wrapper run (its run id and this machine's name are added per run).
COMPLETE_RUN = {
    "client": CLIENT,
    "source": "wrapper",
    "command": "run",
    "operator": "t@x",
    "started_at": "2026-12-01T00:00:00Z",
    "status": "complete",
    "complete": True,
    "pid": 0,
}


@pytest.fixture
def store(tmp_path, monkeypatch) -> EvidenceStore:
    root = tmp_path / "evidence"
    monkeypatch.setenv("OFFBOARD_PROJECT_DIR", str(REPO))
    monkeypatch.setenv("OFFBOARD_EVIDENCE_DIR", str(root))
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("ANSIBLE_VAULT_IDENTITY_LIST", raising=False)
    return EvidenceStore(root)


def rec(kind: str, run_id: str, **kw) -> str:
    return Record(
        kind=kind, run_id=run_id, client=CLIENT, phase="agents", recorded_at="2026-12-01T00:00:00Z", **kw
    ).to_json()


def item(run_id: str, host: str, name: str) -> str:
    return rec(
        "item",
        run_id,
        host=host,
        component="rmm_agent",
        item=name,
        action="removed",
        verification={"method": "probe", "result": "verified_absent"},
    )


def make_run(store: EvidenceStore, run_id: str, lines: list[str | bytes], seal: bool = True, **meta) -> Path:
    run = store.new_run(CLIENT, run_id)
    fields = {**COMPLETE_RUN, "run_id": run_id, "hostname": socket.gethostname(), **meta}
    write_metadata(run, RunMetadata(**fields))
    data = b"".join(line if isinstance(line, bytes) else (line + "\n").encode() for line in lines)
    (run / "records.jsonl").write_bytes(data)
    if seal:
        manifest.seal(run)
    return run


def genuine(store: EvidenceStore) -> Path:
    r = "20261201T000000.000Z-aaaaaa"
    return make_run(
        store,
        r,
        [
            rec("phase_start", r, hosts=["lab-ws01"]),
            item(r, "lab-ws01", "ninjaone"),
            rec("phase_end", r, host="lab-ws01", outcome="ok"),
        ],
    )


def status_json(capsys) -> dict:
    code = cli.main(["status", CLIENT, "--json"])
    out = capsys.readouterr()
    data = json.loads(out.out)
    data["_code"], data["_err"] = code, out.err
    return data


# --- forged and unsealed runs -----------------------------------------------------------------------
@pytest.mark.parametrize("meta", [{"pid": 1}, {"hostname": "some-other-host", "pid": 4242}])
def test_a_forged_unsealed_run_fails_verify_and_counts_for_nothing(store, capsys, meta):
    genuine(store)
    forged_id = "20261202T000000.000Z-f0f0f0"
    make_run(store, forged_id, [item(forged_id, "lab-dc01", "teamviewer")], seal=False, **meta)
    assert cli.main(["verify", CLIENT]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {CLIENT}/{forged_id}: not sealed" in out
    status = status_json(capsys)
    assert forged_id in status["unsealed_runs"]
    assert not [r for r in status["rows"] if r["host"] == "lab-dc01"], "the forged removal was counted"
    assert cli.main(["status", CLIENT]) in (0, 75)
    assert "UNSEALED" in capsys.readouterr().out


def test_an_unsealed_run_is_only_a_note_while_a_live_run_holds_the_lock(store, capsys):
    genuine(store)
    make_run(store, "20261202T000000.000Z-bbbbbb", [], seal=False, status="running", complete=False)
    holder = Holder("20261202T000000.000Z-bbbbbb", "t", os.getpid(), socket.gethostname(), "now", "test")
    with RunLock(store.client_dir(CLIENT), CLIENT).acquire(holder):
        assert cli.main(["verify", CLIENT]) == 0
        assert "run in progress" in capsys.readouterr().out
    assert cli.main(["verify", CLIENT]) == 1


# --- an empty or lost store ---------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["no store at all", "empty client folder"])
def test_an_empty_store_is_not_done(store, capsys, state):
    if state == "empty client folder":
        store.client_dir(CLIENT, create=True)
    assert cli.main(["verify", CLIENT]) == 1
    assert "no evidence for client lab" in capsys.readouterr().out
    assert cli.main(["retry", CLIENT]) == 1
    err = capsys.readouterr().err
    assert "no sealed evidence for client lab" in err and "offboard run lab" in err


def test_retry_counts_inventory_hosts_never_reached_in_a_phase_that_ran():
    r = "r1"
    folded = Ledger(CLIENT).fold(
        [
            json.loads(rec("phase_start", r, hosts=["ws01"])),
            json.loads(rec("phase_end", r, host="ws01", outcome="ok")),
        ]
    )
    assert commands.outstanding(folded, {"ws01", "ws02"}) == {"ws02": {"agents"}}
    assert commands.outstanding(Ledger(CLIENT).fold([]), {"ws01"}) == {}  # no phase has run


# --- symlinks ------------------------------------------------------------------------------------------
def test_a_client_folder_symlink_is_refused_and_its_target_untouched(store, tmp_path, capsys):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    store.root.mkdir()
    (store.root / CLIENT).symlink_to(target)
    with pytest.raises(SymlinkRefused):
        store.client_dir(CLIENT, create=True)
    assert cli.main(["run", CLIENT, "--tags", "agents"]) == 1
    assert "symlink" in capsys.readouterr().err
    assert (target.stat().st_mode & 0o777) == 0o755 and not list(target.iterdir())


def test_a_run_lock_symlink_never_truncates_its_target(store, tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    client_dir = store.client_dir(CLIENT, create=True)
    (client_dir / ".run.lock").symlink_to(precious)
    assert cli.main(["run", CLIENT, "--tags", "agents"]) == 1
    assert "run lock" in capsys.readouterr().err
    assert precious.read_text() == "keep me\n"


def test_an_existing_store_root_keeps_its_mode(store):
    store.root.mkdir()
    store.root.chmod(0o1777)
    client_dir = store.client_dir(CLIENT, create=True)
    assert (store.root.stat().st_mode & 0o7777) == 0o1777
    assert (client_dir.stat().st_mode & 0o777) == 0o700


def test_symlinks_in_the_store_are_never_followed(store, tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("not evidence\n")
    outside.chmod(0o644)
    # Sealing drops a symlink planted in a run instead of hashing (or chmodding) what it points to.
    run = make_run(store, "20261201T000000.000Z-cccccc", [], seal=False)
    (run / "exports").mkdir()
    (run / "exports" / "link.txt").symlink_to(outside)
    manifest.seal(run)
    assert not (run / "exports" / "link.txt").is_symlink()
    assert (outside.stat().st_mode & 0o777) == 0o644
    assert cli.main(["verify", CLIENT]) == 0
    capsys.readouterr()
    # Planted after sealing: a symlink in a run, a run folder that is a symlink, HEAD as a symlink.
    (run / "records.jsonl").unlink()
    (run / "records.jsonl").symlink_to(outside)
    other = tmp_path / "other-run"
    other.mkdir()
    (store.client_dir(CLIENT) / "20261203T000000.000Z-dddddd").symlink_to(other)
    assert cli.main(["verify", CLIENT]) == 1
    out = capsys.readouterr().out
    assert "records.jsonl: a symlink" in out and "20261203T000000.000Z-dddddd: a symlink" in out
    head = store.client_dir(CLIENT) / "HEAD"
    head.rename(tmp_path / "HEAD")
    head.symlink_to(tmp_path / "HEAD")
    assert cli.main(["verify", CLIENT]) == 1
    assert "HEAD" in capsys.readouterr().out


# --- malformed lines -----------------------------------------------------------------------------------
def test_bad_lines_are_reported_with_file_and_line_and_skipped(store, capsys):
    r = "20261201T000000.000Z-eeeeee"
    good = item(r, "lab-ws01", "ninjaone")
    bad = [
        good.replace('"host":"lab-ws01"', '"host":null'),
        good.replace('"host":"lab-ws01"', '"host":["lab-ws01"]'),
        good.replace('"verification":{"method":"probe","result":"verified_absent"}', '"verification":"yes"'),
        b'{"kind":"item","host":"\xff\xfe"}\n',
        rec("phase_start", r, hosts=["x"]).replace('["x"]', '"abc"'),
        "not json at all",
        "[1, 2, 3]",
    ]
    end = rec("phase_end", r, host="lab-ws01", outcome="ok")
    run = make_run(store, r, [rec("phase_start", r, hosts=["lab-ws01"]), *bad, good, end])
    for argv in (["status", CLIENT], ["status", CLIENT, "--json"]):
        cli.main(argv)
        err = capsys.readouterr().err
        for number in range(2, 2 + len(bad)):
            assert f"{run / 'records.jsonl'}:{number}: skipped" in err, (argv, number, err)
        assert "Traceback" not in err
    status = status_json(capsys)
    hosts = {row["host"] for row in status["rows"]}
    assert hosts == {"lab-ws01"}, "phantom hosts from a malformed line"
    assert {(r["item"], r["state"]) for r in status["rows"]} == {("ninjaone", "removed")}


def test_verify_reports_a_manifest_that_is_not_utf8(store, capsys):
    run = genuine(store)
    with (run / manifest.MANIFEST).open("ab") as handle:
        handle.write(b"\xff\xfe garbage\n")
    assert cli.main(["verify", CLIENT]) == 1
    out = capsys.readouterr().out
    assert "malformed" in out
