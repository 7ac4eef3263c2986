"""Chat webhooks: Teams Workflows take only an Adaptive Card message; Slack-style hooks keep `text`.
Posted over real HTTP to a receiver on loopback that accepts only the Teams Workflows shape."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from offboard import notify

MSG = notify.Outgoing(
    "Tess Tech", "tess@msp.test", "[offboard] lab 3.1 RMM agent removal", "Step 3.1 is due."
)


def _teams_shape_problems(body: dict) -> list[str]:
    """What the Teams 'When a Teams webhook request is received' trigger needs to post a card."""
    if body.get("type") != "message" or not isinstance(body.get("attachments"), list):
        return ["a message with attachments"]
    att = body["attachments"][0]
    card = att.get("content") or {}
    problems = []
    if att.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append("contentType")
    if card.get("type") != "AdaptiveCard" or not str(card.get("version", "")).startswith("1."):
        problems.append("AdaptiveCard with a version")
    if not any(b.get("type") == "TextBlock" and b.get("text") for b in card.get("body", [])):
        problems.append("TextBlocks")
    return problems


@pytest.fixture
def teams_hook():
    posts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            posts.append(body)
            problems = _teams_shape_problems(body)
            self.send_response(400 if problems else 202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/workflows/abc/triggers/manual/paths/invoke", posts
    server.shutdown()


def test_teams_workflow_webhook_gets_an_adaptive_card(teams_hook):
    url, posts = teams_hook
    ch = notify.Channels(webhook_url=url, webhook_format="teams")
    assert notify.deliver(ch, MSG) == {"webhook": "ok HTTP 202"}
    card = posts[0]["attachments"][0]["content"]
    assert [b["text"] for b in card["body"]] == [MSG.subject, MSG.body]
    # The legacy body is what a Workflows trigger refuses.
    ch_text = notify.Channels(webhook_url=url, webhook_format="text")
    assert notify.deliver(ch_text, MSG)["webhook"] == "error: webhook answered HTTP 400"


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        ("https://prod-12.westeurope.logic.azure.com:443/workflows/x/triggers/manual/paths/invoke", "teams"),
        ("https://default1234.environment.api.powerplatform.com/powerautomate/automations/direct/x", "teams"),
        ("https://contoso.webhook.office.com/webhookb2/x/IncomingWebhook/y/z", "teams"),
        ("https://hooks.slack.com/services/T0/B0/x", "text"),
        ("https://chat.example.net/hooks/abc", "text"),
    ],
)
def test_the_format_follows_the_webhook_host_unless_configured(url, fmt, monkeypatch):
    assert notify.webhook_format(notify.Channels(webhook_url=url)) == fmt
    monkeypatch.setenv("OFFBOARD_WEBHOOK_URL", url)
    monkeypatch.setenv("OFFBOARD_WEBHOOK_FORMAT", "text")
    assert notify.webhook_format(notify.channels()) == "text"
