"""Outbound: a status note posted to the PSA's REST API (ConnectWise, HaloPSA), retried with backoff.

`post_status` never raises: its CallResult says what happened, with every configured secret masked.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from offboard.psa_config import TIMEOUT, Link, PsaConfig


@dataclass
class CallResult:
    target: str
    ok: bool = False
    http_status: int = 0
    attempts: int = 0
    error: str = ""
    request: dict[str, Any] = field(default_factory=dict)


class _Unconfigured(Exception):
    pass


def _env(api: Mapping[str, Any], key: str, required: bool = True) -> str:
    name = str(api.get(key) or "")
    value = os.environ.get(name, "") if name else ""
    if required and not value:
        raise _Unconfigured(f"${name or key} is not set")
    return value


def api_configured(cfg: PsaConfig) -> bool:
    kind = cfg.api.get("kind")
    key = {"connectwise": "base_url_env", "halopsa": "api_url_env"}.get(str(kind))
    return bool(key and _env(cfg.api, key, required=False))


def backoff_base() -> float:
    try:
        return max(0.0, float(os.environ.get("OFFBOARD_PSA_BACKOFF", "1")))
    except ValueError:
        return 1.0


def _retryable(status: int) -> bool:
    return status == 0 or status == 429 or status >= 500


def _http(method: str, url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return int(response.status), response.read(65536)
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""


def _call(
    method: str, url: str, data: bytes, headers: dict[str, str], attempts: int, res: CallResult
) -> bytes:
    """One request with retries (network errors, 429, 5xx) and exponential backoff."""
    base = backoff_base()
    body = b""
    for attempt in range(1, max(1, attempts) + 1):
        res.attempts += 1
        try:
            res.http_status, body = _http(method, url, data, headers)
            res.error = "" if res.http_status < 400 else f"HTTP {res.http_status}"
        except (OSError, ValueError) as exc:
            res.http_status, res.error = (
                0,
                f"unreachable ({getattr(exc, 'reason', None) or type(exc).__name__})",
            )
        if res.http_status and res.http_status < 400:
            return body
        if not _retryable(res.http_status) or attempt == attempts:
            break
        time.sleep(base * 2 ** (attempt - 1))
    raise _Failed(res.error)


class _Failed(Exception):
    pass


def _connectwise(cfg: PsaConfig, link: Link, text: str, res: CallResult) -> None:
    api = cfg.api
    base = _env(api, "base_url_env").rstrip("/")
    auth = f"{_env(api, 'company_env')}+{_env(api, 'public_key_env')}:{_env(api, 'private_key_env')}"
    path = f"/company/companies/{urllib.parse.quote(link.company_id, safe='')}/notes"
    note: dict[str, Any] = {"text": text, "flagged": False}
    if api.get("note_type_id"):
        note["type"] = {"id": int(api["note_type_id"])}
    res.target = f"POST {base}{path}"
    res.request = note
    headers = {
        "Authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
        "clientId": _env(api, "client_id_env"),
        "Content-Type": "application/json",
        "Accept": str(api.get("accept") or "application/json"),
    }
    _call("POST", base + path, json.dumps(note).encode(), headers, int(api.get("attempts", 4)), res)


def _halopsa(cfg: PsaConfig, link: Link, text: str, res: CallResult) -> None:
    api = cfg.api
    base = _env(api, "api_url_env").rstrip("/")
    auth_url = _env(api, "auth_url_env").rstrip("/")
    if not link.ticket_id:
        raise _Unconfigured(
            "no Halo ticket to post to (ticket_id in the webhook or offboard_psa.halopsa.ticket_id)"
        )
    tenant = _env(api, "tenant_env", required=False)
    token_url = f"{auth_url}/token" + (f"?tenant={urllib.parse.quote(tenant)}" if tenant else "")
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": _env(api, "client_id_env"),
            "client_secret": _env(api, "client_secret_env"),
            "scope": "all",
        }
    ).encode()
    attempts = int(api.get("attempts", 4))
    res.target = f"POST {auth_url}/token"
    raw = _call("POST", token_url, form, {"Content-Type": "application/x-www-form-urlencoded"}, attempts, res)
    try:
        token = json.loads(raw)["access_token"]
    except (ValueError, KeyError, TypeError):
        raise _Failed("the token endpoint answered without an access_token") from None
    action = [
        {
            "ticket_id": int(link.ticket_id) if link.ticket_id.isdigit() else link.ticket_id,
            "note": text,
            "outcome": str(api.get("outcome") or "Private Note"),
            "hiddenfromuser": True,
        }
    ]
    res.target = f"POST {base}/Actions"
    res.request = {"actions": action}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    _call("POST", f"{base}/Actions", json.dumps(action).encode(), headers, attempts, res)


_SENDERS = {"connectwise": _connectwise, "halopsa": _halopsa}


def post_status(cfg: PsaConfig, link: Link, text: str) -> CallResult:
    """Post one status note; never raises: the result says what happened."""
    res = CallResult(target=f"{cfg.name} (not configured)")
    sender = _SENDERS.get(str(cfg.api.get("kind")))
    try:
        if sender is None:
            raise _Unconfigured(f"api.kind {cfg.api.get('kind')!r} is not one of {', '.join(_SENDERS)}")
        sender(cfg, link, text, res)
        res.ok = True
    except _Unconfigured as exc:
        res.error = f"not configured: {exc}"
    except _Failed as exc:
        res.error = str(exc) or res.error
    except Exception as exc:  # the offboarding goes on whatever the PSA does
        res.error = f"{type(exc).__name__}"
    res.error = scrub(res.error, cfg)
    return res


def secrets(cfg: PsaConfig) -> list[str]:
    names = [cfg.auth.get("secret_env")]
    names += [v for k, v in cfg.api.items() if str(k).endswith("_env") and "url" not in str(k)]
    return [os.environ[n] for n in names if n and os.environ.get(str(n))]


def scrub(text: str, cfg: PsaConfig) -> str:
    for secret in sorted(secrets(cfg), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "********")
    return text
