"""Delivery of checklist messages: e-mail over SMTP and a chat webhook (Teams Adaptive Card, Slack text).

Configuration, environment first, then the client inventory's `offboard_notify` mapping:
  OFFBOARD_SMTP_HOST / smtp_host          SMTP server (no e-mail without it)
  OFFBOARD_SMTP_PORT / smtp_port          default 25
  OFFBOARD_SMTP_FROM / smtp_from          sender address, default offboard@<hostname>
  OFFBOARD_SMTP_STARTTLS / smtp_starttls  "1"/true to upgrade with STARTTLS
  OFFBOARD_SMTP_USER, OFFBOARD_SMTP_PASSWORD   login (environment only: the password is a secret)
  OFFBOARD_WEBHOOK_URL / webhook_url      incoming-webhook URL (Slack, Teams, Mattermost, ...)
  OFFBOARD_WEBHOOK_FORMAT / webhook_format  auto (default) | teams | text: Teams Workflows (Power
                                          Automate "when a Teams webhook request is received") accept only
                                          an Adaptive Card message; auto picks it for Teams/Power Automate
                                          hosts, else the Slack-compatible {"text"} body
A webhook URL usually embeds its token: it is never printed nor recorded, only "webhook".
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any

TIMEOUT = 15.0


@dataclass(frozen=True)
class Channels:
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    webhook_url: str = field(default="", repr=False)
    webhook_format: str = "auto"

    @property
    def names(self) -> list[str]:
        return [n for n, on in (("email", bool(self.smtp_host)), ("webhook", bool(self.webhook_url))) if on]

    def secrets(self) -> list[str]:
        """Values that must never reach a console line, a message or the evidence."""
        return [v for v in (self.smtp_password, self.webhook_url) if v]


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def channels(inventory_notify: Mapping[str, Any] | None = None) -> Channels:
    inv = dict(inventory_notify or {})
    env = os.environ

    def pick(env_name: str, key: str, default: Any = "") -> Any:
        return env.get(env_name) or inv.get(key) or default

    return Channels(
        smtp_host=str(pick("OFFBOARD_SMTP_HOST", "smtp_host")),
        smtp_port=int(pick("OFFBOARD_SMTP_PORT", "smtp_port", 25)),
        smtp_from=str(pick("OFFBOARD_SMTP_FROM", "smtp_from", f"offboard@{socket.gethostname()}")),
        smtp_starttls=_truthy(pick("OFFBOARD_SMTP_STARTTLS", "smtp_starttls", "0")),
        smtp_user=env.get("OFFBOARD_SMTP_USER", ""),
        smtp_password=env.get("OFFBOARD_SMTP_PASSWORD", ""),
        webhook_url=str(pick("OFFBOARD_WEBHOOK_URL", "webhook_url")),
        webhook_format=str(pick("OFFBOARD_WEBHOOK_FORMAT", "webhook_format", "auto")).strip().lower(),
    )


@dataclass(frozen=True)
class Outgoing:
    to_name: str
    to_email: str
    subject: str
    body: str
    cc: tuple[str, ...] = ()


class DeliveryError(Exception):
    """A channel refused or could not be reached; the message says which, never with a secret."""


def send_email(ch: Channels, msg: Outgoing) -> str:
    """Send one e-mail; returns its Message-ID."""
    email = EmailMessage()
    email["From"] = ch.smtp_from
    email["To"] = formataddr((msg.to_name, msg.to_email))
    email["Subject"] = msg.subject
    message_id = make_msgid(domain=ch.smtp_from.rsplit("@", 1)[-1] or None)
    email["Message-ID"] = message_id
    email.set_content(msg.body)
    try:
        with smtplib.SMTP(ch.smtp_host, ch.smtp_port, timeout=TIMEOUT) as smtp:
            if ch.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if ch.smtp_user:
                smtp.login(ch.smtp_user, ch.smtp_password)
            smtp.send_message(email)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(
            f"e-mail to {msg.to_email} via {ch.smtp_host}:{ch.smtp_port} failed: {exc}"
        ) from None
    return message_id


# Hosts of Teams Workflows (Power Automate) and the retired Office 365 connectors: Adaptive Cards only.
_TEAMS_HOSTS = (".logic.azure.com", ".powerautomate.com", ".powerplatform.com", ".webhook.office.com")


def webhook_format(ch: Channels) -> str:
    """teams | text: explicit when configured, else by the webhook URL's host."""
    if ch.webhook_format in ("teams", "text"):
        return ch.webhook_format
    host = (urllib.parse.urlsplit(ch.webhook_url).hostname or "").lower()
    return "teams" if host.endswith(_TEAMS_HOSTS) or host == "flow.microsoft.com" else "text"


def adaptive_card(msg: Outgoing) -> dict[str, Any]:
    """The message as Teams Workflows take it: a `message` with one Adaptive Card attachment."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": msg.subject, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": msg.body, "wrap": True},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def webhook_body(msg: Outgoing, fmt: str = "text") -> dict[str, Any]:
    """Teams: an Adaptive Card message. Otherwise a body Slack/Mattermost webhooks accept: `text`."""
    if fmt == "teams":
        return adaptive_card(msg)
    return {"text": f"*{msg.subject}*\n{msg.body}", "title": msg.subject}


def send_webhook(ch: Channels, msg: Outgoing) -> int:
    """POST the message to the webhook; returns the HTTP status."""
    data = json.dumps(webhook_body(msg, webhook_format(ch))).encode()
    request = urllib.request.Request(
        ch.webhook_url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook answered HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        # The URL (and its token) stays out of the message: only the failure's kind is named.
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise DeliveryError(f"webhook unreachable ({reason})") from None


def deliver(ch: Channels, msg: Outgoing) -> dict[str, str]:
    """Send through every configured channel; per channel "ok ..." or "error: ..."."""
    results: dict[str, str] = {}
    if ch.smtp_host:
        try:
            results["email"] = f"ok {send_email(ch, msg)}"
        except DeliveryError as exc:
            results["email"] = f"error: {_scrub(str(exc), ch)}"
    if ch.webhook_url:
        try:
            results["webhook"] = f"ok HTTP {send_webhook(ch, msg)}"
        except DeliveryError as exc:
            results["webhook"] = f"error: {_scrub(str(exc), ch)}"
    return results


def _scrub(text: str, ch: Channels) -> str:
    for secret in ch.secrets():
        text = text.replace(secret, "********")
    return text
