"""`--json` on report, bundle, psa-sync and lab status: one envelope on stdout, messages on stderr."""

from __future__ import annotations

import json
import tarfile

from offboard import cli, lab

from tests.unit.test_report_bundle import CLIENT, make_store


def _doc(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out)  # the whole of stdout is one JSON document


def test_report_json_names_the_files_and_the_evidence_check(tmp_path, capsys):
    root = tmp_path / "evidence"
    make_store(root)
    argv = [
        "report",
        CLIENT,
        "--evidence-dir",
        str(root),
        "--out",
        str(tmp_path / "out"),
        "--no-pdf",
        "--json",
    ]
    code = cli.main(argv)
    doc = _doc(capsys)
    assert doc["command"] == "report" and doc["schema"] == 1 and doc["exit_code"] == code == 0 and doc["ok"]
    assert doc["html"] == str(tmp_path / "out" / f"{CLIENT}-report.html") and doc["pdf"] is None
    assert doc["evidence_intact"] is True and doc["evidence_problems"] == []
    assert doc["runs"] == 1 and set(doc["devices_outstanding"]) >= {"dc1", "laptop1"}


def test_report_json_says_when_the_evidence_is_broken(tmp_path, capsys):
    root = tmp_path / "evidence"
    run = make_store(root)
    (run / "records.jsonl").write_text("tampered\n")
    code = cli.main(
        ["report", CLIENT, "--evidence-dir", str(root), "--out", str(tmp_path), "--no-pdf", "--json"]
    )
    doc = _doc(capsys)
    assert code == doc["exit_code"] == 1 and not doc["ok"] and doc["evidence_intact"] is False
    assert any("records.jsonl" in p for p in doc["evidence_problems"])


def test_bundle_json_gives_the_file_and_its_digest(tmp_path, capsys):
    root = tmp_path / "evidence"
    make_store(root)
    out = tmp_path / "b.tar.gz"
    code = cli.main(["bundle", CLIENT, "--evidence-dir", str(root), "--out", str(out), "--no-pdf", "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == doc["exit_code"] == 0 and doc["bundle"] == str(out) and tarfile.is_tarfile(out)
    assert len(doc["sha256"]) == 64 and "separately" in captured.err


def test_psa_sync_json_without_a_psa_posts_nothing(tmp_path, capsys):
    code = cli.main(["psa-sync", "lab", "--evidence-dir", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == doc["exit_code"] == 0 and doc["client"] == "lab" and doc["posts"] == []
    assert "nothing to post" in captured.err


def test_lab_status_json_lists_every_lab_host(monkeypatch, capsys):
    monkeypatch.setattr(lab, "docker_ready", lambda: False)
    code = cli.main(["lab", "status", "--json"])
    doc = _doc(capsys)
    assert doc["command"] == "lab status" and code == doc["exit_code"] == 1
    assert {h["host"] for h in doc["hosts"]} == {h.name for h in lab.lab_hosts()}
    assert all(h["container"] == "docker not running" and not h["as_expected"] for h in doc["hosts"])
