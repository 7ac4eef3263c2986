"""Report, bundle and fleet view on a synthetic store: hostile strings escaped, nothing fetched, the bundle
checked by sha256sum and ssh-keygen alone (clean PATH), every state shown."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from offboard import bundle, cli, fleet, manifest, report
from offboard.evidence import EvidenceStore, RunMetadata, write_metadata

from tests.unit.test_signing import allowed, keypair

CLIENT = "acme-test"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
CLEAN_PATH = "/usr/bin:/bin"


def rec(kind: str, **kw) -> dict:
    # Schema-valid (docs/record.schema.json): readers skip any line that is not.
    base = {
        "schema": 1,
        "kind": kind,
        "client": CLIENT,
        "phase": "agents",
        "recorded_at": "2026-01-01T00:00:00Z",
        "check_mode": False,
    }
    return {**base, **kw}


def make_store(root: Path, run_id: str = "20260101T000000.000Z-aaaaaa") -> Path:
    run = root / CLIENT / run_id
    run.mkdir(parents=True)
    meta = RunMetadata(
        run_id, CLIENT, "wrapper", "run", "tech@msp", "2026-01-01T00:00:00Z", status="complete"
    )
    meta.complete, meta.versions = True, {"offboard": "0.1.0", "ansible_core": "2.19.0"}
    write_metadata(run, meta)
    records = [
        rec("phase_start", run_id=run_id, hosts=["srv1", "ws1", "dc1"]),
        rec("unreachable", run_id=run_id, host="laptop1", reason="offline " + HOSTILE),
        rec("item", run_id=run_id, host="srv1", component="rmm_agent", item="ninjaone", action="removed",
            before={"found": True, "packages": [{"name": HOSTILE, "version": "1"}]},
            after={"found": False, "uninstaller_rc": 0},
            verification={"method": "re-probe", "result": "verified_absent"}),
        rec("item", run_id=run_id, host="srv1", component="rmm_agent", item="datto", action="none",
            before={"found": False}, verification={"method": "re-probe", "result": "verified_absent"}),
        rec("item", run_id=run_id, host="ws1", component="security_agent", item="falcon", action="refused",
            error="replacement coverage not confirmed", verification={"result": "not_verified"}),
        rec("item", run_id=run_id, host="dc1", component="rmm_agent", item=HOSTILE, action="failed",
            error="uninstaller " + HOSTILE, verification={"result": "still_present"}),
        rec("phase_end", run_id=run_id, host="srv1", outcome="ok"),
        rec("phase_end", run_id=run_id, host="ws1", outcome="ok"),
        rec("phase_end", run_id=run_id, host="dc1", outcome="failed"),
    ]  # fmt: skip
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest.seal(run)
    return run


def test_report_escapes_hostile_strings_and_fetches_nothing(tmp_path):
    root = tmp_path / "evidence"
    run = make_store(root)
    data = report.collect(EvidenceStore(root), CLIENT, ["srv1", "ws1", "dc1", "laptop1"])
    page = report.render_html(data)
    assert "<script" not in page and "<img" not in page
    assert html_escaped(HOSTILE) in page
    tags, attrs = parsed(page)
    assert tags <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "h3",
        "h4",
        "p",
        "div",
        "span",
        "b",
        "br",
        "ul",
        "li",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "pre",
        "code",
    }, tags
    assert not attrs & {"src", "href", "srcset", "action", "onerror", "onload"}, attrs
    assert not re.search(r"url\(|@import|@font-face", page.split("</style>")[0])
    assert "default-src 'none'" in page
    # every state is shown as plainly as done
    states = {d.host: d.status for d in data.devices}
    assert states == {"srv1": "clean", "ws1": "pending", "dc1": "failed", "laptop1": "pending"}
    assert {o.state for o in data.outstanding} == {"unreachable", "refused", "failed"}
    # each certificate line names the sha256 of its records.jsonl line, reproducible with sed | sha256sum
    line = next(ln for d in data.devices for ln in d.lines if ln.item == "ninjaone")
    raw = (run / "records.jsonl").read_bytes().splitlines(keepends=True)[line.ref.line - 1]
    out = subprocess.run(
        ["bash", "-c", f"sed -n '{line.ref.line}p' records.jsonl | sha256sum"],
        cwd=run,
        capture_output=True,
        text=True,
    )
    assert out.stdout.split()[0] == line.ref.sha256 and b"ninjaone" in raw
    assert line.ref.sha256 in page


def parsed(page: str) -> tuple[set[str], set[str]]:
    """The tag names and attribute names a browser's parser sees in the page."""
    from html.parser import HTMLParser

    tags: set[str] = set()
    attrs: set[str] = set()

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attributes):
            tags.add(tag)
            attrs.update(name for name, _ in attributes)

    Collect().feed(page)
    return tags, attrs


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def run_verify_md(bag: Path) -> subprocess.CompletedProcess[str]:
    text = (bag / "VERIFY.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return subprocess.run(
        ["/bin/bash", "-c", block],
        cwd=bag,
        env={"PATH": CLEAN_PATH},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bundle_checks_with_standard_tools_only(tmp_path, monkeypatch):
    key = keypair(tmp_path)
    monkeypatch.setenv("OFFBOARD_SIGNING_KEY", str(key))
    monkeypatch.setenv("OFFBOARD_ALLOWED_SIGNERS", str(allowed(tmp_path, key)))
    root = tmp_path / "evidence"
    make_store(root)
    make_store(root, "20260102T000000.000Z-bbbbbb")
    out = bundle.make_bundle(EvidenceStore(root), CLIENT, tmp_path / "b.tar.gz", pdf=False)
    dest = tmp_path / "unpacked"
    with tarfile.open(out) as tar:
        tar.extractall(dest, filter="data")
    (bag,) = dest.iterdir()
    assert (bag / "bagit.txt").read_text().startswith("BagIt-Version: 1.0")
    import bagit  # the Library of Congress validator archivists use

    bagit.Bag(str(bag)).validate()
    assert (bag / "data" / "report" / f"{CLIENT}-report.html").is_file()
    done = run_verify_md(bag)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count('Good "offboard-evidence" signature') == 2
    # a changed byte in a run fails the reviewer's commands, naming the file
    records = next((bag / "data" / "evidence" / CLIENT).glob("2026*")) / "records.jsonl"
    records.write_text(records.read_text().replace("ninjaone", "ninjaonf"))
    bad = run_verify_md(bag)
    assert bad.returncode != 0 and "records.jsonl: FAILED" in bad.stdout


def test_fleet_lists_every_client_with_oldest_pending(tmp_path, capsys):
    root = tmp_path / "evidence"
    make_store(root)
    (root / "quiet").mkdir()
    rows = fleet.fleet(EvidenceStore(root), None)
    assert [r.client for r in rows] == [CLIENT, "quiet"]
    acme = rows[0]
    assert acme.phases["agents"] == {"done": 1, "pending": 2, "failed": 1}
    assert acme.oldest_pending["host"] in {"laptop1", "ws1"}
    assert fleet.print_fleet(rows, as_json=False) == 1
    assert "no evidence yet" in capsys.readouterr().out


def test_status_refuses_a_client_with_all(tmp_path):
    assert cli.main(["status", CLIENT, "--all", "--evidence-dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert cli.main(["status", "--evidence-dir", str(tmp_path)]) == cli.EXIT_USAGE


@pytest.mark.parametrize("bad", ["a\nb", "back\\slash"])
def test_bundle_refuses_names_sha256sum_cannot_carry(tmp_path, bad):
    root = tmp_path / "evidence"
    run = make_store(root)
    (run / bad).write_text("x")
    with pytest.raises(bundle.BundleError):
        bundle.make_bundle(EvidenceStore(root), CLIENT, tmp_path / "b.tar.gz", pdf=False)


def test_bundle_refuses_a_run_folder_name_a_shell_would_interpret(tmp_path):
    root = tmp_path / "evidence"
    make_store(root, "20260101T000000.000Z-aaaaaa$(touch pwned)")
    with pytest.raises(bundle.BundleError, match="names no run id has"):
        bundle.make_bundle(EvidenceStore(root), CLIENT, tmp_path / "b.tar.gz", pdf=False)


def test_verify_md_quotes_every_name_it_puts_in_a_command():
    text = bundle.verify_md(CLIENT, ["r1", "r2"], {"r2": "o'brien; rm -rf ~"}, "configured", "bag")
    assert "-I 'o'\"'\"'brien; rm -rf ~'" in text


def test_bundle_without_configured_signers_derives_them_and_says_so(tmp_path, monkeypatch):
    key = keypair(tmp_path)
    monkeypatch.setenv("OFFBOARD_SIGNING_KEY", str(key))
    monkeypatch.delenv("OFFBOARD_ALLOWED_SIGNERS", raising=False)
    root = tmp_path / "evidence"
    run = make_store(root)
    signer = run / "SIGNER"
    assert signer.read_text().startswith("ssh-ed25519 ")
    out = bundle.make_bundle(EvidenceStore(root), CLIENT, tmp_path / "b.tar.gz", pdf=False)
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "u", filter="data")
    (bag,) = (tmp_path / "u").iterdir()
    assert "DERIVED FROM THE EVIDENCE ITSELF" in (bag / "VERIFY.md").read_text()
    signers = (bag / "data" / "evidence" / CLIENT / "allowed_signers").read_text()
    assert signers.count("\n") == 1 and signers.startswith(
        'offboard-signer-1 namespaces="offboard-evidence" '
    )
    done = run_verify_md(bag)
    assert done.returncode == 0 and "Good" in done.stdout, done.stdout + done.stderr
