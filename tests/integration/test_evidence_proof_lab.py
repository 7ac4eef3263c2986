"""Proof a reviewer checks without the tool, on real lab evidence (issue 16).

One wrapper run and one plain ansible-playbook run of the agents phase (laptop offline), both signed with
ssh-keygen and time-stamped by a real local RFC 3161 TSA, are shared by every test here (module-scoped).
Tampering tests work on copies of that store.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from offboard import inventory, report, signing

from tests.conftest import ROOT, ansible_env, evidence_dir, playbook
from tests.conftest import offboard_cli as offboard
from tests.local_tsa import running_tsa

pytestmark = pytest.mark.lab

LAPTOP = "lab-laptop01"
CLEAN_PATH = "/usr/bin:/bin"  # no venv: neither offboard nor its Python package is reachable
PRINCIPAL = "evidence@msp.test"


@dataclass(frozen=True)
class Proof:
    root: Path
    allowed: Path
    tsa_ca: Path
    wrapper_run: str
    plain_run: str


@pytest.fixture(scope="module")
def proof(lab_session, tmp_path_factory) -> Proof:
    lab_session.replant()  # every footprint back, the laptop stopped again
    base = tmp_path_factory.mktemp("proof")
    key = base / "signing-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(key)], check=True
    )
    allowed = base / "allowed_signers"
    allowed.write_text(f'{PRINCIPAL} namespaces="{signing.NAMESPACE}" {key.with_suffix(".pub").read_text()}')
    root = base / "evidence"
    with running_tsa(base / "tsa") as tsa:
        env = {
            "OFFBOARD_EVIDENCE_DIR": str(root),
            "OFFBOARD_SIGNING_KEY": str(key),
            "OFFBOARD_TSA_URL": tsa.url,
        }
        first = offboard("run", "lab", "--tags", "agents", env=env)
        assert first.returncode == 75, first.stdout[-3000:] + first.stderr[-3000:]
        second = playbook("offboard.yml", "-l", "lab", "--tags", "agents", env=ansible_env(**env))
        assert "offboard evidence:" in second.stdout, second.stdout[-3000:] + second.stderr[-2000:]
        assert len(tsa.requests) == 2
    runs = sorted(p.name for p in (root / "lab").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2 and evidence_dir(second.stdout).name == runs[1]
    return Proof(root, allowed, tsa.ca, runs[0], runs[1])


def verify(root: Path, proof: Proof, *extra: str) -> subprocess.CompletedProcess:
    return offboard(
        "verify", "lab", "--evidence-dir", str(root), "--allowed-signers", str(proof.allowed), *extra,
        env={"OFFBOARD_TSA_CA": str(proof.tsa_ca)},
    )  # fmt: skip


def copy_store(proof: Proof, tmp_path: Path) -> Path:
    dest = tmp_path / "evidence"
    shutil.copytree(proof.root, dest, symlinks=True, ignore=shutil.ignore_patterns(".*"))
    return dest


def reseal(run: Path) -> str:
    """What someone who can write the store but has no key would do: recompute the manifest with
    sha256sum (same format) and return its new digest."""
    files = sorted(
        p.relative_to(run).as_posix()
        for p in run.rglob("*")
        if p.is_file() and p.name != "MANIFEST.sha256" and p.name not in signing.DETACHED
    )
    out = subprocess.run(["sha256sum", *files], cwd=run, capture_output=True, text=True, check=True)
    (run / "MANIFEST.sha256").write_text(out.stdout)
    return subprocess.run(
        ["sha256sum", "MANIFEST.sha256"], cwd=run, capture_output=True, text=True, check=True
    ).stdout.split()[0]


def test_signed_runs_verify_with_time_stamps(proof):
    for run_id in (proof.wrapper_run, proof.plain_run):
        run = proof.root / "lab" / run_id
        assert (run / signing.SIG).is_file() and (run / signing.SIG_TSR).is_file()
        assert "SIGNER" in (run / "MANIFEST.sha256").read_text()
    done = verify(proof.root, proof, "--require-signatures")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"2 run(s) signed, signatures good ({PRINCIPAL})" in done.stdout
    assert "time-stamp" not in done.stdout  # tokens checked against the TSA's CA, none failed


def test_one_flipped_byte_fails_naming_the_file(proof, tmp_path):
    root = copy_store(proof, tmp_path)
    records = root / "lab" / proof.wrapper_run / "records.jsonl"
    data = bytearray(records.read_bytes())
    data[100] ^= 0x01
    records.write_bytes(bytes(data))
    done = verify(root, proof)
    assert done.returncode == 1
    assert f"FAIL lab/{proof.wrapper_run}/records.jsonl: altered" in done.stdout


def test_a_chain_resealed_without_the_key_fails_on_its_signatures(proof, tmp_path):
    root = copy_store(proof, tmp_path)
    first, second = root / "lab" / proof.wrapper_run, root / "lab" / proof.plain_run
    records = first / "records.jsonl"
    records.write_text(records.read_text().replace('"action":"removed"', '"action":"none"', 1))
    digest = reseal(first)
    (second / "PREVIOUS.sha256").write_text(f"{digest}  ../{first.name}/MANIFEST.sha256\n")
    head = reseal(second)
    (root / "lab" / "HEAD").write_text(f"{head}  {second.name}/MANIFEST.sha256\n")
    done = verify(root, proof)
    assert done.returncode == 1
    fails = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    # the hash chain alone is whole again: only the signatures give the rewrite away
    assert fails == [
        f"FAIL lab/{first.name}/{signing.SIG}: bad signature: MANIFEST.sha256 was changed (re-sealed?) "
        "after it was signed",
        f"FAIL lab/{second.name}/{signing.SIG}: bad signature: MANIFEST.sha256 was changed (re-sealed?) "
        "after it was signed",
    ], done.stdout


def test_a_removed_signature_fails_naming_the_file(proof, tmp_path):
    root = copy_store(proof, tmp_path)
    second = root / "lab" / proof.plain_run
    (second / signing.SIG).unlink()
    done = verify(root, proof)
    assert done.returncode == 1
    assert f"FAIL lab/{second.name}/{signing.SIG}: missing" in done.stdout
    # also stripping SIGNER and re-sealing does not make it a plain unsigned run
    (second / signing.SIGNER).unlink()
    (second / signing.SIG_TSR).unlink()
    (root / "lab" / "HEAD").write_text(f"{reseal(second)}  {second.name}/MANIFEST.sha256\n")
    done = verify(root, proof)
    assert done.returncode == 1
    assert (
        f"FAIL lab/{second.name}/{signing.SIG}: unsigned, after signed run {proof.wrapper_run}" in done.stdout
    )


def test_the_bundle_verifies_with_sha256sum_and_ssh_keygen_alone(proof, tmp_path):
    out = tmp_path / "lab.tar.gz"
    made = offboard(
        "bundle", "lab", "--evidence-dir", str(proof.root), "--out", str(out),
        env={"OFFBOARD_ALLOWED_SIGNERS": str(proof.allowed)},
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    reviewer = tmp_path / "reviewer"
    with tarfile.open(out) as tar:
        tar.extractall(reviewer, filter="data")
    (bag,) = reviewer.iterdir()
    block = re.search(r"```sh\n(.*?)```", (bag / "VERIFY.md").read_text(), re.S).group(1)
    env = {"PATH": CLEAN_PATH, "HOME": str(reviewer)}
    absent = subprocess.run(
        ["/bin/bash", "-c", "command -v offboard || python3 -c 'import offboard'"],
        env=env,
        capture_output=True,
    )
    assert absent.returncode != 0, "offboard must not be reachable for the reviewer"
    done = subprocess.run(
        ["/bin/bash", "-c", block], cwd=bag, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(f'Good "offboard-evidence" signature for {PRINCIPAL}') == 2
    assert (bag / "data" / "report" / "lab-report.pdf").stat().st_size > 10_000
    # the reviewer's commands catch a changed byte too
    records = bag / "data" / "evidence" / "lab" / proof.plain_run / "records.jsonl"
    records.write_bytes(records.read_bytes().replace(b"lab-", b"lab_", 1))
    bad = subprocess.run(
        ["/bin/bash", "-c", block], cwd=bag, env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0 and "records.jsonl: FAILED" in bad.stdout


def test_the_report_shows_the_offline_laptop_pending_and_names_every_device(proof, tmp_path):
    made = offboard(
        "report", "lab", "--evidence-dir", str(proof.root), "--out", str(tmp_path),
        env={"OFFBOARD_ALLOWED_SIGNERS": str(proof.allowed)},
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    devices = inventory.load("lab", ROOT).names
    text = subprocess.run(
        ["pdftotext", "-layout", str(tmp_path / "lab-report.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for host in devices:
        assert host in text, f"{host} missing from the PDF"
    assert re.search(rf"{LAPTOP}\s+pending", text) and "unreachable" in text
    assert (
        "Certificate of removal: lab-srv01" in text and "How to verify this evidence without offboard" in text
    )

    # A real headless browser renders the page; the device table is found by its own header colour, and
    # in it the laptop's pending badge.
    from PIL import Image

    shot = tmp_path / "report.png"
    html_file = tmp_path / "lab-report.html"
    argv = [*report.browser_argv(tmp_path / "profile"), "--hide-scrollbars", "--window-size=1280,1400"]
    subprocess.run(
        [*argv, f"--screenshot={shot}", html_file.as_uri()], capture_output=True, timeout=120, check=True
    )
    image = Image.open(shot).convert("RGB")
    width, height = image.size
    pixels = image.load()
    header_rows = [
        y for y in range(height) if sum(pixels[x, y] == (20, 54, 90) for x in range(0, width, 4)) > 100
    ]
    assert header_rows, "the device table's header is not on the screenshot"
    top = header_rows[-1]
    badge = [
        (x, y)
        for y in range(top, min(height, top + 40 * len(devices)))
        for x in range(0, width, 2)
        if pixels[x, y] == (255, 241, 194)
    ]
    assert badge, "no pending badge in the device table"
    dom = subprocess.run(
        [*argv, "--dump-dom", html_file.as_uri()], capture_output=True, text=True, timeout=120
    )
    table = dom.stdout.split('id="device-table"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == len(devices) + 1
    assert re.search(rf"<td>{LAPTOP}</td><td><span class=\"state s-pending\">pending</span>", table)
