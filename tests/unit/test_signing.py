"""Signed manifests on a synthetic store: sealing signs, verify names tampering; a real local TSA."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from offboard import cli, manifest, signing

from tests.local_tsa import running_tsa

CLIENT = "signtest"


def keypair(where: Path, name: str = "signer") -> Path:
    key = where / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@offboard", "-f", str(key)], check=True
    )
    return key


def allowed(where: Path, key: Path, principal: str = "msp-evidence@example.test") -> Path:
    path = where / "allowed_signers"
    pub = key.with_name(key.name + ".pub").read_text().strip()
    path.write_text(f'{principal} namespaces="{signing.NAMESPACE}" {pub}\n')
    return path


def new_run(root: Path, run_id: str, text: str = "x") -> Path:
    run = root / CLIENT / run_id
    run.mkdir(parents=True)
    (run / "records.jsonl").write_text(json.dumps({"kind": "item", "item": text}) + "\n")
    (run / "metadata.json").write_text("{}\n")
    return run


def verify(root: Path, *extra: str, capsys) -> tuple[int, str]:
    rc = cli.main(["verify", CLIENT, "--evidence-dir", str(root), *extra])
    return rc, capsys.readouterr().out


@pytest.fixture
def signed_store(tmp_path, monkeypatch):
    key = keypair(tmp_path)
    monkeypatch.setenv("OFFBOARD_SIGNING_KEY", str(key))
    root = tmp_path / "evidence"
    for n in range(3):
        manifest.seal(new_run(root, f"2026010{n}T000000.000Z-aaaaa{n}"))
    return root, allowed(tmp_path, key)


def test_sealed_runs_are_signed_and_verify(signed_store, capsys):
    root, signers = signed_store
    runs = sorted((root / CLIENT).glob("2026*"))
    for run in runs:
        assert (run / signing.SIG).is_file()
        assert "SIGNER" in (run / manifest.MANIFEST).read_text()  # the manifest commits to the signature
    rc, out = verify(root, "--allowed-signers", str(signers), capsys=capsys)
    assert rc == 0, out
    assert "3 run(s) signed, signatures good (msp-evidence@example.test)" in out


def test_bad_signature_names_the_file(signed_store, capsys):
    root, signers = signed_store
    run = sorted((root / CLIENT).glob("2026*"))[1]
    sig = run / signing.SIG
    data = bytearray(sig.read_bytes())
    data[len(data) // 2] ^= 0x01
    sig.write_bytes(bytes(data))
    rc, out = verify(root, "--allowed-signers", str(signers), capsys=capsys)
    assert rc == 1
    assert f"FAIL {CLIENT}/{run.name}/{signing.SIG}" in out


def test_signer_not_in_allowed_signers_fails(signed_store, tmp_path, capsys):
    root, _ = signed_store
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    other = allowed(elsewhere, keypair(elsewhere, "intruder"))
    rc, out = verify(root, "--allowed-signers", str(other), capsys=capsys)
    assert rc == 1 and "not in allowed_signers" in out


def test_removed_signature_fails_even_on_the_newest_run(signed_store, capsys):
    root, signers = signed_store
    newest = sorted((root / CLIENT).glob("2026*"))[-1]
    (newest / signing.SIG).unlink()
    rc, out = verify(root, "--allowed-signers", str(signers), capsys=capsys)
    assert rc == 1
    assert f"FAIL {CLIENT}/{newest.name}/{signing.SIG}: missing" in out


def test_unsigned_store_reports_unsigned_and_can_be_required(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OFFBOARD_SIGNING_KEY", raising=False)
    root = tmp_path / "evidence"
    manifest.seal(new_run(root, "20260101T000000.000Z-bbbbbb"))
    rc, out = verify(root, capsys=capsys)
    assert rc == 0 and "1 run(s) unsigned" in out
    rc, out = verify(root, "--require-signatures", capsys=capsys)
    assert rc == 1 and "unsigned (signatures are required)" in out


def test_unsigned_run_after_a_signed_one_fails(signed_store, monkeypatch, capsys):
    root, signers = signed_store
    monkeypatch.delenv("OFFBOARD_SIGNING_KEY")
    late = new_run(root, "20260109T000000.000Z-cccccc")
    manifest.seal(late)
    rc, out = verify(root, "--allowed-signers", str(signers), capsys=capsys)
    assert rc == 1 and f"{late.name}/{signing.SIG}: unsigned, after signed run" in out


def test_an_unusable_key_seals_unsigned_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OFFBOARD_SIGNING_KEY", str(tmp_path / "nope"))
    run = new_run(tmp_path / "evidence", "20260101T000000.000Z-dddddd")
    manifest.seal(run)
    assert not (run / signing.SIG).exists() and not (run / signing.SIGNER).exists()
    assert "sealed UNSIGNED" in capsys.readouterr().err


def test_time_stamps_from_a_real_local_tsa(tmp_path, monkeypatch, capsys):
    key = keypair(tmp_path)
    monkeypatch.setenv("OFFBOARD_SIGNING_KEY", str(key))
    root = tmp_path / "evidence"
    with running_tsa(tmp_path / "tsa") as tsa:
        monkeypatch.setenv("OFFBOARD_TSA_URL", tsa.url)
        run = new_run(root, "20260101T000000.000Z-eeeeee")
        manifest.seal(run)
        assert len(tsa.requests) == 1
    tsr = run / signing.SIG_TSR
    assert tsr.is_file()
    # The token checks with openssl alone, against the TSA's CA.
    check = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            str(tsr),
            "-data",
            str(run / signing.SIG),
            "-CAfile",
            str(tsa.ca),
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    monkeypatch.setenv("OFFBOARD_TSA_CA", str(tsa.ca))
    rc, out = verify(root, "--allowed-signers", str(allowed(tmp_path, key)), capsys=capsys)
    assert rc == 0, out
    (run / signing.SIG_TSR).write_bytes((run / signing.SIG_TSR).read_bytes()[:-3] + b"\0\0\0")
    rc, out = verify(root, "--allowed-signers", str(allowed(tmp_path, key)), capsys=capsys)
    assert rc == 1 and f"{run.name}/{signing.SIG_TSR}" in out


def test_the_client_inventory_can_name_the_key_relative_to_itself(tmp_path, monkeypatch):
    for name in ("OFFBOARD_SIGNING_KEY", "OFFBOARD_TSA_URL"):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "project"
    inv = project / "inventories" / CLIENT
    (inv / "group_vars").mkdir(parents=True)
    (project / "offboard.yml").write_text("---\n")
    keypair(inv, "evidence-key")
    (inv / "group_vars" / CLIENT).mkdir()
    (inv / "group_vars" / CLIENT / "main.yml").write_text(
        "offboard_signing_key: evidence-key\n"
        "offboard_tsa_url: http://127.0.0.1:9/tsa\n"
        "some_secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n"
    )
    monkeypatch.setenv("OFFBOARD_PROJECT_DIR", str(project))
    cfg = signing.config_for(CLIENT)
    assert cfg.key == inv / "evidence-key" and cfg.tsa_url == "http://127.0.0.1:9/tsa"
    run = new_run(tmp_path / "evidence", "20260101T000000.000Z-ffffff")
    manifest.seal(run)  # the TSA on port 9 does not answer: signed, not time-stamped, sealed all the same
    assert (run / signing.SIG).is_file() and not (run / signing.SIG_TSR).exists()
    assert manifest.read_head(run.parent)[1] == run.name


def test_a_key_ssh_keygen_refuses_seals_unsigned_not_half_signed(tmp_path, monkeypatch, capsys):
    key = keypair(tmp_path)
    key.chmod(0o644)  # ssh-keygen ignores private keys others can read
    monkeypatch.setenv("OFFBOARD_SIGNING_KEY", str(key))
    run = new_run(tmp_path / "evidence", "20260101T000000.000Z-111111")
    manifest.seal(run)
    assert not (run / signing.SIGNER).exists() and not (run / signing.SIG).exists()
    assert "bad permissions" in capsys.readouterr().err
