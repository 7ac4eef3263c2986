"""Reminders and escalation through a real SMTP server and a webhook receiver on loopback, with a
controlled clock: one day overdue reaches the assignee, three days the manager too, never twice a day."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from offboard import cli

TOKEN = "T0KEN-canary-9c1e77b2"  # a webhook URL embeds its secret: never in evidence or console


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append({"to": envelope.rcpt_tos, "subject": msg["Subject"], "body": msg.get_content()})
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[_Inbox]:
    inbox = _Inbox()
    with socket.socket() as probe:  # a free loopback port (the controller's own readiness check needs one)
        probe.bind(("127.0.0.1", 0))
        inbox.port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list]]:
    posts: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append({"path": self.path, "json": json.loads(body), "type": self.headers["Content-Type"]})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/{TOKEN}", posts
    server.shutdown()


@pytest.fixture
def env(tmp_path, monkeypatch, smtp, webhook):
    monkeypatch.setenv("OFFBOARD_EVIDENCE_DIR", str(tmp_path / "evidence"))
    monkeypatch.setenv("OFFBOARD_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OFFBOARD_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("OFFBOARD_SMTP_FROM", "offboard@msp.test")
    monkeypatch.setenv("OFFBOARD_WEBHOOK_URL", webhook[0])
    return tmp_path / "evidence"


def offboard(monkeypatch, capsys, now: str, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("OFFBOARD_NOW", now)
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def _evidence_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_overdue_steps_remind_the_assignee_then_escalate_to_the_manager_once_a_day(
    env, smtp, webhook, monkeypatch, capsys
):
    code, out = offboard(monkeypatch, capsys, "2026-11-02T08:00:00Z", "start", "lab")
    assert code == 75, out
    # Day 2: nothing is overdue yet; only the kick-off notice (step 1.2) goes to all five people.
    code, out = offboard(monkeypatch, capsys, "2026-11-03T07:00:00Z", "remind", "lab")
    assert code == 0, out
    assert sorted(m["to"][0] for m in smtp.messages) == [
        "alex@msp.test", "bill@msp.test", "dana@msp.test", "lee@msp.test", "tess@msp.test",
    ]  # fmt: skip
    smtp.messages.clear()
    # Phase 1 was due 2026-11-04. Attest 1.1 so it is not reminded.
    code, out = offboard(
        monkeypatch, capsys, "2026-11-04T12:00:00Z", "attest", "lab", "1.1", "--by", "Alex Account"
    )
    assert code == 0, out

    # One day overdue: the assignees of 1.3 and 1.4, not the manager.
    code, out = offboard(monkeypatch, capsys, "2026-11-05T07:00:00Z", "remind", "lab")
    assert code == 75, out
    got = {(m["to"][0], m["subject"]) for m in smtp.messages}
    assert got == {
        ("alex@msp.test", "[offboard] lab 1.4 Contract review"),
        ("dana@msp.test", "[offboard] lab 1.3 Documentation export"),
    }
    assert "1 day(s) overdue" in smtp.messages[0]["body"]
    assert len(webhook[1]) == 5 + 2
    assert all(p["type"] == "application/json" and "text" in p["json"] for p in webhook[1])
    assert "lab 1.3 Documentation export" in webhook[1][-1]["json"]["text"] + webhook[1][-2]["json"]["text"]

    # Twice the same day: nothing new.
    smtp.messages.clear()
    code, out = offboard(monkeypatch, capsys, "2026-11-05T18:00:00Z", "remind", "lab")
    assert code == 75 and smtp.messages == [] and len(webhook[1]) == 7, out
    assert "nothing to send today" in out

    # Three days overdue: the assignee again, and the manager (leadership) too.
    code, out = offboard(monkeypatch, capsys, "2026-11-07T07:00:00Z", "remind", "lab", "--dry-run")
    assert "would send escalation for 1.3 to Lee Lead <lee@msp.test>" in out
    assert smtp.messages == []  # dry run sends nothing
    code, out = offboard(monkeypatch, capsys, "2026-11-07T07:00:00Z", "remind", "lab")
    got = sorted((m["to"][0], m["subject"].split(" lab ")[1][:3]) for m in smtp.messages)
    assert ("lee@msp.test", "1.3") in got and ("lee@msp.test", "1.4") in got
    assert ("dana@msp.test", "1.3") in got and ("alex@msp.test", "1.4") in got
    escalation = next(m for m in smtp.messages if m["to"][0] == "lee@msp.test")
    assert "ESCALATION" in escalation["subject"] and "3 day(s) overdue" in escalation["subject"]
    assert not any(m["subject"].endswith("1.1 Formal acknowledgment") for m in smtp.messages)

    # Every message sent is evidence, sealed in the chain; the webhook token is nowhere.
    code, out = offboard(monkeypatch, capsys, "2026-11-07T08:00:00Z", "verify", "lab")
    assert code == 0, out
    notes = [
        json.loads(line)
        for p in env.joinpath("lab").glob("*/records.jsonl")
        for line in p.read_text().splitlines()
        if '"notification"' in line
    ]
    sent = len(notes)
    assert sent == 5 + 2 + len(got)
    assert all(
        n["channels"]["email"].startswith("ok") and n["channels"]["webhook"] == "ok HTTP 200" for n in notes
    )
    assert TOKEN not in _evidence_text(env)
    assert TOKEN not in out
    code, out = offboard(monkeypatch, capsys, "2026-11-07T08:00:00Z", "plan", "lab", "--json")
    plan = json.loads(out)
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["1.2"]["done"] and steps["1.1"]["done"] and steps["1.3"]["status"] == "overdue 3d"


def test_attestation_keeps_hashed_files_in_the_chain_and_bad_input_is_refused(
    env, monkeypatch, capsys, tmp_path
):
    offboard(monkeypatch, capsys, "2026-11-02T08:00:00Z", "start", "lab")
    proof = tmp_path / "acknowledgment letter.pdf"
    proof.write_bytes(b"%PDF-1.4 signed acknowledgment")
    code, out = offboard(
        monkeypatch, capsys, "2026-11-03T09:15:00Z", "attest", "lab", "1.1",
        "--by", "alex@msp.test", "--note", "sent by registered mail", "--attach", str(proof),
    )  # fmt: skip
    assert code == 0, out
    run = Path(out.rsplit("evidence in ", 1)[1].strip())
    rec = json.loads((run / "records.jsonl").read_text())
    assert rec["by_name"] == "Alex Account" and rec["recorded_at"] == "2026-11-03T09:15:00Z"
    assert rec["note"] == "sent by registered mail"
    kept = run / rec["attachments"][0]["path"]
    assert kept.read_bytes() == proof.read_bytes()
    assert rec["attachments"][0]["sha256"] == hashlib.sha256(proof.read_bytes()).hexdigest()
    assert (
        f"{rec['attachments'][0]['sha256']}  {rec['attachments'][0]['path']}"
        in (run / "MANIFEST.sha256").read_text()
    )
    kept.write_bytes(b"forged")
    code, out = offboard(monkeypatch, capsys, "2026-11-03T09:20:00Z", "verify", "lab")
    assert code == 1 and "altered" in out

    code, out = offboard(
        monkeypatch, capsys, "2026-11-03T09:20:00Z", "attest", "lab", "7.7", "--by", "Alex Account"
    )
    assert code == 2 and "unknown step '7.7'" in out
    code, out = offboard(
        monkeypatch, capsys, "2026-11-03T09:20:00Z", "attest", "lab", "1.4", "--by", "Mallory"
    )
    assert code == 2 and "unknown person 'Mallory'" in out and "Alex Account" in out
    code, out = offboard(
        monkeypatch, capsys, "2026-11-03", "start", "lab", "--replan", "--contract-end", "2026-11-01"
    )
    assert code == 2 and "dates out of order" in out
    code, out = offboard(monkeypatch, capsys, "2027-01-01", "start", "lab", "--replan")
    assert code == 2 and "the contract ended on 2026-12-31" in out
    code, out = offboard(monkeypatch, capsys, "2026-11-03", "plan", "nosuchclient")
    assert code == 2 and "unknown client" in out
