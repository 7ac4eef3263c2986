"""`offboard serve` and the status back to the PSA, driven over real HTTP on loopback: a PSA webhook
(signed ConnectWise company callback, HaloPSA webhook with Basic auth) starts the client's plan once and
the kick-off notices go out (local SMTP and webhook receivers); bad calls get a 4xx and start nothing;
completing a step posts a note to a PSA stand-in that checks the documented request shapes, retried with
backoff and recorded in the evidence. No lab containers: every server here is a thread on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from offboard import cli, serve
from offboard.evidence import EvidenceStore

SIGNING_KEY = "cw-signing-key-canary-51f0"
HALO_SECRET = "halo-webhook-secret-canary-77ad"
CW_PRIVATE = "cw-private-key-canary-0b3e"
HALO_CLIENT_SECRET = "halo-client-secret-canary-c4d2"
HOOK_TOKEN = "hook-token-canary-9a1b"
SECRETS = (SIGNING_KEY, HALO_SECRET, CW_PRIVATE, HALO_CLIENT_SECRET, HOOK_TOKEN)
NOW = "2026-11-02T08:00:00Z"  # the lab client's offboarding start


def _thread(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append({"to": envelope.rcpt_tos[0], "subject": msg["Subject"]})
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[_Inbox]:
    inbox = _Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.port = port
    yield inbox
    controller.stop()


class _Recorder(BaseHTTPRequestHandler):
    """Stand-in for the chat webhook, ConnectWise's key URL and both PSA REST APIs. It answers only
    requests of the documented shape; anything else gets a 400 and lands in `bad`."""

    calls: list[dict]
    bad: list[str]
    fail_next: list[int]

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/v4_6_release/system/callbackkey/"):
            self.calls.append({"kind": "key", "path": self.path})
            return self._reply(200, {"signing_key": SIGNING_KEY})
        self._reply(404, {})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        path = urllib.parse.urlsplit(self.path).path
        if self.fail_next and self.fail_next[0] > 0:
            self.fail_next[0] -= 1
            self.calls.append({"kind": "failed", "path": path})
            return self._reply(503, {"message": "maintenance"})
        if path.startswith("/hooks/"):
            self.calls.append({"kind": "chat", "json": json.loads(raw)})
            return self._reply(200, {})
        if m := re.fullmatch(r"/v4_6_release/apis/3\.0/company/companies/(\d+)/notes", path):
            problems = self._check_connectwise(raw)
            if not problems:
                note = json.loads(raw)
                self.calls.append({"kind": "cw_note", "company": m.group(1), "text": note["text"]})
                return self._reply(201, {"id": len(self.calls), **note})
        elif path == "/auth/token":
            form = urllib.parse.parse_qs(raw.decode())
            want = {"grant_type": ["client_credentials"], "client_id": ["halo-app"], "scope": ["all"]}
            problems = [] if {k: form.get(k) for k in want} == want else [f"token form {form}"]
            if form.get("client_secret") != [HALO_CLIENT_SECRET]:
                problems.append("client_secret")
            if "application/x-www-form-urlencoded" not in self.headers.get("Content-Type", ""):
                problems.append("token content type")
            if not problems:
                self.calls.append({"kind": "halo_token"})
                return self._reply(200, {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600})
        elif path == "/api/Actions":
            problems = self._check_halo(raw)
            if not problems:
                actions = json.loads(raw)
                self.calls.append({"kind": "halo_action", "actions": actions})
                return self._reply(201, actions)
        else:
            problems = [f"unknown path {path}"]
        self.bad.extend(problems)
        self._reply(400, {"errors": problems})

    def _check_connectwise(self, raw: bytes) -> list[str]:
        problems = []
        want = "Basic " + base64.b64encode(f"msp+pub-key:{CW_PRIVATE}".encode()).decode()
        if self.headers.get("Authorization") != want:
            problems.append("CW Authorization is not Basic <company>+<public>:<private>")
        if self.headers.get("clientId") != "cw-client-id":
            problems.append("CW clientId header")
        if self.headers.get("Content-Type") != "application/json":
            problems.append("CW content type")
        try:
            note = json.loads(raw)
        except ValueError:
            return [*problems, "CW body not JSON"]
        if not isinstance(note, dict) or not isinstance(note.get("text"), str) or not note["text"]:
            problems.append("CompanyNote.text is required")
        elif set(note) - {"text", "flagged", "type"} or not isinstance(note.get("flagged", False), bool):
            problems.append(f"CompanyNote has unknown fields {sorted(note)}")
        return problems

    def _check_halo(self, raw: bytes) -> list[str]:
        problems = [] if self.headers.get("Authorization") == "Bearer tok-1" else ["Halo bearer token"]
        actions = json.loads(raw)
        if not isinstance(actions, list) or not actions:
            return [*problems, "Halo Actions body must be an array"]
        for a in actions:
            if not isinstance(a.get("ticket_id"), int) or not isinstance(a.get("note"), str):
                problems.append(f"Halo action needs int ticket_id and str note: {a}")
        return problems


@pytest.fixture
def stand_in() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Rec", (_Recorder,), {"calls": [], "bad": [], "fail_next": [0]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = _thread(server)
    yield url, handler
    server.shutdown()


@pytest.fixture
def env(tmp_path, monkeypatch, smtp, stand_in) -> Path:
    url, _ = stand_in
    monkeypatch.setenv("OFFBOARD_NOW", NOW)
    monkeypatch.setenv("OFFBOARD_EVIDENCE_DIR", str(tmp_path / "evidence"))
    monkeypatch.setenv("OFFBOARD_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OFFBOARD_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("OFFBOARD_SMTP_FROM", "offboard@msp.test")
    monkeypatch.setenv("OFFBOARD_WEBHOOK_URL", f"{url}/hooks/{HOOK_TOKEN}")
    monkeypatch.setenv("OFFBOARD_PSA_CONNECTWISE_KEY_URLS", f"{url}/v4_6_release/")
    monkeypatch.setenv("OFFBOARD_HALOPSA_WEBHOOK_SECRET", HALO_SECRET)
    monkeypatch.setenv("OFFBOARD_PSA_BACKOFF", "0.01")
    return tmp_path / "evidence"


def _api_env(monkeypatch, url: str) -> None:
    monkeypatch.setenv("OFFBOARD_CW_API_URL", f"{url}/v4_6_release/apis/3.0")
    monkeypatch.setenv("OFFBOARD_CW_COMPANY", "msp")
    monkeypatch.setenv("OFFBOARD_CW_PUBLIC_KEY", "pub-key")
    monkeypatch.setenv("OFFBOARD_CW_PRIVATE_KEY", CW_PRIVATE)
    monkeypatch.setenv("OFFBOARD_CW_CLIENT_ID", "cw-client-id")
    monkeypatch.setenv("OFFBOARD_HALO_API_URL", f"{url}/api")
    monkeypatch.setenv("OFFBOARD_HALO_AUTH_URL", f"{url}/auth")
    monkeypatch.setenv("OFFBOARD_HALO_CLIENT_ID", "halo-app")
    monkeypatch.setenv("OFFBOARD_HALO_CLIENT_SECRET", HALO_CLIENT_SECRET)


@pytest.fixture
def receiver(env) -> Iterator[str]:
    server = serve.make_server(EvidenceStore(env), "127.0.0.1", 0, max_body=16384)
    url = _thread(server)
    yield url
    server.shutdown()
    server.server_close()


def cw_callback(
    key_base: str, message_id: str, status: str = "Offboarding", company: int = 250, **over
) -> dict:
    """A company callback as ConnectWise PSA sends it (Entity is the record serialized as a string)."""
    entity = {
        "id": company,
        "identifier": "LabClient",
        "name": "Lab Client",
        "status": {"id": 7, "name": status},
    }
    body = {
        "MessageId": message_id,
        "FromUrl": "msp.example.net",
        "CompanyId": "msp",
        "MemberId": "alex",
        "Action": "updated",
        "Type": "company",
        "ID": company,
        "Entity": json.dumps(entity),
        "Metadata": {"key_url": f"{key_base}/v4_6_release/system/callbackkey/index.rails?id=cb1"},
    }
    body.update(over)
    return body


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def post_cw(receiver: str, payload: dict, key: str = SIGNING_KEY, sign: bool = True) -> tuple[int, dict]:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if sign:
        digest = hmac.new(hashlib.sha256(key.encode()).digest(), raw, hashlib.sha256).digest()
        headers["x-content-signature"] = base64.b64encode(digest).decode()
    return post(f"{receiver}/psa/connectwise", raw, headers)


def _plans(evidence: Path) -> list[dict]:
    out = []
    for p in sorted(evidence.glob("lab/*/records.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if '"kind":"plan"' in line]
    return out


def _records(evidence: Path, kind: str) -> list[dict]:
    return [
        json.loads(line)
        for p in sorted(evidence.glob("lab/*/records.jsonl"))
        for line in p.read_text().splitlines()
        if f'"kind":"{kind}"' in line
    ]


def _all_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_status_change_starts_the_plan_once_with_owners_dates_and_kickoff_notices(
    env, receiver, smtp, stand_in, caplog
):
    url, rec = stand_in
    caplog.set_level(logging.INFO, logger="offboard.serve")
    code, answer = post_cw(receiver, cw_callback(url, "msg-1"))
    assert (code, answer) == (201, {"status": "started", "client": "lab"})
    plans = _plans(env)
    assert len(plans) == 1
    plan = plans[0]["plan"]
    assert plan["psa"] == {
        "psa": "connectwise", "company_id": "250", "delivery_id": "msg-1", "status": "Offboarding",
    }  # fmt: skip
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["1.3"]["owner_name"] == "Dana Docs" and steps["1.3"]["due"] == "2026-11-04"
    assert steps["3.1"]["owner_name"] == "Tess Tech" and steps["3.1"]["manager_name"] == "Lee Lead"
    # Kick-off (step 1.2): every person of the team, by e-mail and on the chat webhook.
    assert sorted(m["to"] for m in smtp.messages) == [
        "alex@msp.test", "bill@msp.test", "dana@msp.test", "lee@msp.test", "tess@msp.test",
    ]  # fmt: skip
    assert len([c for c in rec.calls if c["kind"] == "chat"]) == 5

    # The same delivery again: a replay, ignored. A new delivery of the same status: already started.
    assert post_cw(receiver, cw_callback(url, "msg-1")) == (200, {"status": "duplicate"})
    assert post_cw(receiver, cw_callback(url, "msg-2")) == (
        200,
        {"status": "already started", "client": "lab"},
    )
    assert len(_plans(env)) == 1 and len(smtp.messages) == 5
    # Replays stay known across a restart of the receiver (persisted beside the evidence).
    second = serve.make_server(EvidenceStore(env), "127.0.0.1", 0)
    try:
        assert post_cw(_thread(second), cw_callback(url, "msg-1")) == (200, {"status": "duplicate"})
    finally:
        second.shutdown()
        second.server_close()
    assert "replayed delivery ignored" in caplog.text
    assert SIGNING_KEY not in caplog.text and SIGNING_KEY not in _all_text(env)


def test_bad_calls_get_a_4xx_a_log_line_and_start_nothing(env, receiver, stand_in, caplog):
    url, _ = stand_in
    caplog.set_level(logging.INFO, logger="offboard.serve")
    good = cw_callback(url, "msg-9")
    assert post_cw(receiver, good, sign=False)[0] == 401  # unsigned
    assert post_cw(receiver, good, key="not-the-key")[0] == 401  # signed with another key
    raw = json.dumps(good).encode()
    sig = base64.b64encode(
        hmac.new(hashlib.sha256(SIGNING_KEY.encode()).digest(), raw, hashlib.sha256).digest()
    )
    tampered = raw.replace(b'"Lab Client', b'"Lab Clienz')
    assert tampered != raw
    assert post(f"{receiver}/psa/connectwise", tampered, {"x-content-signature": sig.decode()})[0] == 401
    # A key URL pointing anywhere but the trusted prefix is never fetched.
    evil = cw_callback(url, "msg-10", Metadata={"key_url": "http://127.0.0.2:9/steal"})
    assert post_cw(receiver, evil)[0] == 401
    assert post(f"{receiver}/psa/connectwise", b"{not json", {})[0] == 400
    assert post(f"{receiver}/psa/connectwise", b"[1, 2]", {})[0] == 401  # no key URL: unauthenticated
    assert post_cw(receiver, {**good, "MessageId": ""})[0] == 400  # signed but malformed: no delivery id
    assert post_cw(receiver, {**good, "Entity": "{broken"})[0] == 400  # no status where the mapping says
    assert post(f"{receiver}/psa/connectwise", b"x" * 20000, {})[0] == 413  # over --max-body
    assert post(f"{receiver}/psa/nosuchpsa", b"{}", {})[0] == 404
    assert post_cw(receiver, cw_callback(url, "msg-11", company=999))[0] == 422  # no client maps it
    with socket.create_connection(("127.0.0.1", int(receiver.rsplit(":", 1)[1]))) as s:  # no Content-Length
        s.sendall(b"POST /psa/connectwise HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 411")
    # Authentic, but not a change to the offboarding status, or not a company: nothing starts.
    assert post_cw(receiver, cw_callback(url, "msg-12", status="Active")) == (202, {"status": "ignored"})
    assert post_cw(receiver, cw_callback(url, "msg-13", Type="ticket")) == (202, {"status": "ignored"})
    # HaloPSA: Basic auth with the shared secret.
    halo = {"delivery_id": "h-1", "client_id": 31, "ticket_id": 4711, "status": "Offboarding"}
    wrong = "Basic " + base64.b64encode(b"offboard:guess").decode()
    assert post(f"{receiver}/psa/halopsa", json.dumps(halo).encode(), {"Authorization": wrong})[0] == 401
    assert (
        post(f"{receiver}/psa/halopsa", json.dumps(halo).encode(), {"Authorization": "Basic %%%"})[0] == 401
    )
    assert post(f"{receiver}/psa/halopsa", json.dumps(halo).encode(), {})[0] == 401
    assert post(f"{receiver}/psa/halopsa", b"{not json", {})[0] == 401  # authenticated before it is read
    right = "Basic " + base64.b64encode(f"offboard:{HALO_SECRET}".encode()).decode()
    assert post(f"{receiver}/psa/halopsa", b"{not json", {"Authorization": right})[0] == 400
    no_id = {k: v for k, v in halo.items() if k != "delivery_id"}
    assert post(f"{receiver}/psa/halopsa", json.dumps(no_id).encode(), {"Authorization": right})[0] == 400

    assert _plans(env) == []
    refused = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refused) >= 15 and all(" -> 4" in r.getMessage() for r in refused)
    assert "Traceback" not in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text


def test_halopsa_webhook_starts_the_plan_and_steps_reach_the_halo_ticket(
    env, receiver, stand_in, monkeypatch, capsys
):
    url, rec = stand_in
    _api_env(monkeypatch, url)
    halo = {"delivery_id": "h-2", "client_id": 31, "ticket_id": 4711, "status": "Offboarding"}
    auth = "Basic " + base64.b64encode(f"offboard:{HALO_SECRET}".encode()).decode()
    code, answer = post(f"{receiver}/psa/halopsa", json.dumps(halo).encode(), {"Authorization": auth})
    assert (code, answer) == (201, {"status": "started", "client": "lab"})
    assert _plans(env)[0]["plan"]["psa"]["ticket_id"] == "4711"

    monkeypatch.setenv("OFFBOARD_NOW", "2026-11-03T09:00:00Z")
    assert cli.main(["attest", "lab", "1.1", "--by", "Alex Account", "--note", "letter sent"]) == 0
    actions = [a for c in rec.calls if c["kind"] == "halo_action" for a in c["actions"]]
    assert rec.bad == []
    # 1.2 completed by the kick-off notices, 1.1 by the attestation: one private note each on the ticket.
    assert sorted(a["note"].split(", step ")[1][:3] for a in actions) == ["1.1", "1.2"]
    assert all(a["ticket_id"] == 4711 and a["hiddenfromuser"] is True for a in actions)
    updates = _records(env, "psa_update")
    assert {u["step"] for u in updates} == {"1.1", "1.2"} and all(u["ok"] for u in updates)
    assert updates[0]["target"].endswith("/api/Actions") and updates[0]["http_status"] == 201
    out = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in _all_text(env) and secret not in out.out + out.err


def test_completed_step_posts_a_connectwise_note_retried_with_backoff_and_recorded(
    env, receiver, stand_in, monkeypatch, capsys
):
    url, rec = stand_in
    assert post_cw(receiver, cw_callback(url, "msg-20"))[0] == 201
    # The PSA API is down when the step completes: the attestation still succeeds, the call is recorded.
    monkeypatch.setenv("OFFBOARD_CW_API_URL", "http://127.0.0.1:9/v4_6_release/apis/3.0")
    for key, value in (("COMPANY", "msp"), ("PUBLIC_KEY", "pub-key"), ("PRIVATE_KEY", CW_PRIVATE)):
        monkeypatch.setenv(f"OFFBOARD_CW_{key}", value)
    monkeypatch.setenv("OFFBOARD_CW_CLIENT_ID", "cw-client-id")
    monkeypatch.setenv("OFFBOARD_NOW", "2026-11-03T09:00:00Z")
    assert cli.main(["attest", "lab", "1.4", "--by", "Alex Account"]) == 0
    failed = _records(env, "psa_update")
    assert failed and not any(u["ok"] for u in failed)
    assert all(u["attempts"] == 4 and u["error"].startswith("unreachable") for u in failed)

    # Back up, answering 503 once: the next sync retries, succeeds, and records the call.
    _api_env(monkeypatch, url)
    rec.fail_next[0] = 1
    assert cli.main(["psa-sync", "lab"]) == 0
    notes = [c for c in rec.calls if c["kind"] == "cw_note"]
    assert rec.bad == [] and {n["company"] for n in notes} == {"250"}
    assert sorted(n["text"].split(", step ")[1][:3] for n in notes) == ["1.2", "1.4"]
    ok = [u for u in _records(env, "psa_update") if u["ok"]]
    assert {u["step"] for u in ok} == {"1.2", "1.4"}
    assert max(u["attempts"] for u in ok) == 2 and all(u["http_status"] == 201 for u in ok)
    assert ok[0]["target"].startswith("POST http://127.0.0.1") and ok[0]["request"]["text"]
    # Nothing twice: a further sync has nothing to post.
    assert cli.main(["psa-sync", "lab"]) == 0
    assert len([c for c in rec.calls if c["kind"] == "cw_note"]) == 2
    assert cli.main(["verify", "lab"]) == 0  # the psa_update runs are sealed in the chain
    out = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in _all_text(env) and secret not in out.out + out.err


def test_another_psa_is_a_yaml_file_with_its_own_fields_and_signature(env, tmp_path, monkeypatch):
    conf = tmp_path / "psa"
    conf.mkdir()
    (conf / "mypsa.yml").write_text(
        "---\nname: mypsa\n"
        "auth: {scheme: hmac_sha256, header: X-Signature, prefix: 'sha256=', secret_env: MYPSA_SECRET}\n"
        "fields: {delivery_id: event.id, company_id: data.account.id, status: data.account.lifecycle}\n"
        "match: {event.type: [account.updated]}\n"
        "offboarding_status: Leaving\nclient_key: account_id\n"
    )
    monkeypatch.setenv("MYPSA_SECRET", "mypsa-secret-canary")
    server = serve.make_server(EvidenceStore(env), "127.0.0.1", 0, extra=conf)
    url = _thread(server)
    try:

        def send(body: dict, secret: str = "mypsa-secret-canary") -> int:
            raw = json.dumps(body).encode()
            sig = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            return post(f"{url}/psa/mypsa", raw, {"X-Signature": sig})[0]

        event = {
            "event": {"id": "e1", "type": "account.updated"},
            "data": {"account": {"id": 7, "lifecycle": "Leaving"}},
        }
        assert send(event, secret="wrong") == 401
        assert send({**event, "event": {"id": "e2", "type": "account.created"}}) == 202
        assert send(event) == 422  # authentic and readable; no inventory maps mypsa account 7
        monkeypatch.setenv("OFFBOARD_PSA_CONFIG_DIR", str(conf))  # the same file serves `psa-sync` too
        from offboard import psa

        assert sorted(psa.load_configs()) == ["connectwise", "halopsa", "mypsa"]
    finally:
        server.shutdown()
        server.server_close()
    assert _plans(env) == []


@pytest.mark.parametrize(
    "key_url",
    [
        "https://api-na.myconnectwise.net.evil.test/v4_6_release/system/callbackkey/x",  # host suffix
        "https://user:pw@api-na.myconnectwise.net/v4_6_release/x",  # credentials in the URL
        "https://api-na.myconnectwise.net:444/v4_6_release/x",  # another port
        "http://api-na.myconnectwise.net/v4_6_release/x",  # downgraded scheme
        "https://api-na.myconnectwise.net/x#frag",
        "file:///etc/passwd",
    ],
)
def test_connectwise_key_urls_outside_the_trusted_prefixes_are_never_fetched(key_url):
    from offboard import psa

    cfg = psa.load_configs()["connectwise"]
    assert not psa._key_url_allowed(key_url, psa.trusted_key_urls(cfg))
    assert psa._key_url_allowed(
        "https://api-na.myconnectwise.net/v4_6_release/system/callbackkey/index.rails?id=1",
        psa.trusted_key_urls(cfg),
    )


def test_a_step_completed_by_run_evidence_is_posted_with_its_evidence(env, receiver, stand_in, monkeypatch):
    from offboard import checklist

    url, rec = stand_in
    _api_env(monkeypatch, url)
    assert post_cw(receiver, cw_callback(url, "msg-30"))[0] == 201
    # An agents run that removed the RMM agent everywhere (as `offboard run` records it).
    hosts = checklist._hosts("lab", Path(__file__).resolve().parents[2])
    run = "2026-11-09T10:00:00Z"
    records = [{"kind": "phase_start", "phase": "agents", "hosts": hosts, "recorded_at": run}]
    for host in hosts:
        records.append({"kind": "item", "phase": "agents", "host": host, "component": "rmm_agent",
                        "item": "ninjaone", "action": "removed", "recorded_at": run,
                        "verification": {"result": "verified_absent"}})  # fmt: skip
        records.append(
            {"kind": "phase_end", "phase": "agents", "host": host, "outcome": "ok", "recorded_at": run}
        )
    checklist.write_checklist_run(EvidenceStore(env), "lab", "run", records)
    monkeypatch.setenv("OFFBOARD_NOW", "2026-11-09T11:00:00Z")
    assert cli.main(["psa-sync", "lab"]) == 0
    notes = {n["text"].split(", step ")[1][:3]: n["text"] for n in rec.calls if n["kind"] == "cw_note"}
    assert f"({len(hosts)}/{len(hosts)} devices clean)" in notes["3.1"]
    assert rec.bad == []
