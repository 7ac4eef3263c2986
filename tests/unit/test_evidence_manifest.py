"""Manifest and chain: any altered, added or missing file, and any deleted run, is named."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from offboard import manifest
from offboard.evidence import EvidenceStore, RunMetadata, write_metadata


def _make_runs(root: Path, count: int = 3) -> tuple[EvidenceStore, list[str]]:
    store = EvidenceStore(root)
    ids = []
    for n in range(count):
        run_dir = store.new_run("acme", f"2026010{n}T000000.000Z-abc00{n}")
        write_metadata(
            run_dir,
            RunMetadata(
                run_id=run_dir.name,
                client="acme",
                source="wrapper",
                command="run",
                operator="t",
                started_at="x",
            ),
        )
        (run_dir / "records.jsonl").write_text('{"kind":"item"}\n')
        (run_dir / "artifacts").mkdir()
        (run_dir / "artifacts" / "stdout").write_text(f"run {n} output\n")
        manifest.seal(run_dir)
        ids.append(run_dir.name)
    return store, ids


def _verify(store: EvidenceStore) -> manifest.VerifyReport:
    report = manifest.VerifyReport("acme")
    manifest.verify_chain(store.client_dir("acme"), store.run_ids("acme"), set(), report)
    return report


def test_untouched_evidence_verifies(tmp_path):
    store, _ = _make_runs(tmp_path)
    report = _verify(store)
    assert report.ok, report.problems
    assert report.runs_checked == 3


@pytest.mark.parametrize("rel", ["records.jsonl", "metadata.json", "artifacts/stdout", "PREVIOUS.sha256"])
def test_flipping_one_byte_names_the_file(tmp_path, rel):
    store, ids = _make_runs(tmp_path)
    path = store.client_dir("acme") / ids[1] / rel
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    problems = [str(p) for p in _verify(store).problems]
    assert f"{ids[1]}/{rel}: altered (sha256 differs)" in problems


def test_added_and_missing_files_are_named(tmp_path):
    store, ids = _make_runs(tmp_path)
    run = store.client_dir("acme") / ids[0]
    (run / "artifacts" / "stdout").unlink()
    (run / "injected.json").write_text("{}")
    problems = [str(p) for p in _verify(store).problems]
    assert f"{ids[0]}/artifacts/stdout: missing (listed in the manifest)" in problems
    assert f"{ids[0]}/injected.json: added (not in the manifest)" in problems


def test_deleting_a_run_breaks_the_chain(tmp_path):
    store, ids = _make_runs(tmp_path)
    shutil.rmtree(store.client_dir("acme") / ids[1])
    problems = [str(p) for p in _verify(store).problems]
    assert any(p.startswith(f"{ids[2]}/PREVIOUS.sha256: chain broken") and ids[1] in p for p in problems)
    assert f"{ids[0]}: not in the chain from HEAD (added, or a later run was deleted)" in problems


def test_rewritten_manifest_is_caught_by_the_next_link(tmp_path):
    store, ids = _make_runs(tmp_path)
    run = store.client_dir("acme") / ids[0]
    (run / "records.jsonl").write_text('{"kind":"forged"}\n')
    # An attacker re-seals the altered run: the next run's PREVIOUS.sha256 no longer matches.
    lines = [manifest.format_line(manifest.sha256_file(run / rel), rel) for rel in manifest.run_files(run)]
    (run / manifest.MANIFEST).write_text("".join(lines))
    problems = [str(p) for p in _verify(store).problems]
    assert any(p.startswith(f"{ids[0]}/MANIFEST.sha256: altered") for p in problems)


def test_the_documented_sha256sum_check_agrees(tmp_path):
    store, ids = _make_runs(tmp_path)
    client = store.client_dir("acme")
    assert subprocess.run(["sha256sum", "-c", "HEAD"], cwd=client, capture_output=True).returncode == 0
    for run_id in ids:
        run = client / run_id
        assert (
            subprocess.run(
                ["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=run, capture_output=True
            ).returncode
            == 0
        )
        if (run / "PREVIOUS.sha256").exists():
            assert (
                subprocess.run(
                    ["sha256sum", "-c", "PREVIOUS.sha256"], cwd=run, capture_output=True
                ).returncode
                == 0
            )
    (client / ids[1] / "records.jsonl").write_text("tampered\n")
    out = subprocess.run(
        ["sha256sum", "-c", "MANIFEST.sha256"], cwd=client / ids[1], capture_output=True, text=True
    )
    assert out.returncode != 0 and "records.jsonl: FAILED" in out.stdout


def test_evidence_is_owner_only(tmp_path):
    store, _ = _make_runs(tmp_path)
    client = store.client_dir("acme")
    for path in [client, *client.rglob("*")]:
        if path.name.startswith(".tmp"):
            continue
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), path
