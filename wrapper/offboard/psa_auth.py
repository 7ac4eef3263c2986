"""Inbound authentication of PSA webhooks: ConnectWise signatures, Basic, a shared header, HMAC-SHA256.

Every comparison is constant-time; a ConnectWise signing key is fetched only from a trusted key URL,
without following redirects, and cached for a few minutes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from offboard.psa_config import TIMEOUT, PsaConfig, PsaError, lookup, scalar

KEY_CACHE_SECONDS = 300.0
_key_cache: dict[str, tuple[float, str]] = {}
_key_lock = threading.Lock()


def trusted_key_urls(cfg: PsaConfig) -> list[str]:
    prefixes = [str(p) for p in cfg.auth.get("trusted_key_urls") or []]
    env = os.environ.get(f"OFFBOARD_PSA_{cfg.name.upper()}_KEY_URLS", "")
    prefixes += [p.strip() for p in env.split(",") if p.strip()]
    out = []
    for p in prefixes:
        parts = urllib.parse.urlsplit(p)
        if parts.scheme in ("https", "http") and parts.netloc:
            # A prefix ends at a path boundary: https://api-na.myconnectwise.net.evil.test never matches.
            path = parts.path if parts.path.endswith("/") else parts.path + "/"
            out.append(f"{parts.scheme}://{parts.netloc}{path}")
    return out


def _key_url_allowed(url: str, prefixes: list[str]) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password or parts.fragment or parts.scheme not in ("https", "http"):
        return False
    return any(url.startswith(p) for p in prefixes)


def _fetch_signing_key(url: str) -> str:
    now = time.monotonic()
    with _key_lock:
        hit = _key_cache.get(url)
        if hit and now - hit[0] < KEY_CACHE_SECONDS:
            return hit[1]
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            data = json.loads(response.read(8192))
    except (OSError, ValueError) as exc:
        raise PsaError(401, f"signing key not available from the key URL ({type(exc).__name__})") from None
    key = data.get("signing_key") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key:
        raise PsaError(401, "the key URL answered without a signing_key")
    with _key_lock:
        _key_cache[url] = (now, key)
    return key


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A trusted key URL that redirects elsewhere is not trusted: redirects are refused."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def connectwise_signature(signing_key: str, body: bytes) -> str:
    key = hashlib.sha256(signing_key.encode()).digest()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def authenticate(cfg: PsaConfig, headers: Mapping[str, str], body: bytes, payload: Any) -> None:
    """Raise PsaError unless the call proves it comes from the PSA. Comparisons are constant-time."""
    scheme = cfg.auth["scheme"]
    if scheme == "connectwise_signature":
        given = headers.get(str(cfg.auth.get("header") or "x-content-signature"), "")
        if not given:
            raise PsaError(401, "unsigned: no x-content-signature header")
        url = scalar(lookup(payload, str(cfg.auth.get("key_url_field") or "Metadata.key_url")))
        if not url:
            raise PsaError(401, "signed, but the payload names no key URL")
        if not _key_url_allowed(url, trusted_key_urls(cfg)):
            raise PsaError(401, "the key URL is not a trusted ConnectWise address")
        expected = connectwise_signature(_fetch_signing_key(url), body)
        if not hmac.compare_digest(expected.encode(), given.strip().encode()):
            raise PsaError(401, "bad signature")
        return
    secret = cfg.secret()
    if not secret:
        raise PsaError(503, f"no shared secret configured (set {cfg.auth.get('secret_env')})")
    if scheme == "basic":
        value = headers.get("Authorization", "")
        if not value.lower().startswith("basic "):
            raise PsaError(401, "no Basic authorization")
        try:
            user, _, password = base64.b64decode(value[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise PsaError(401, "malformed Basic authorization") from None
        want_user = str(cfg.auth.get("username") or "")
        ok = hmac.compare_digest(password.encode(), secret.encode())
        ok &= not want_user or hmac.compare_digest(user.encode(), want_user.encode())
        if not ok:
            raise PsaError(401, "wrong credentials")
    elif scheme == "header":
        given = headers.get(str(cfg.auth.get("header") or "X-Offboard-Secret"), "")
        if not given or not hmac.compare_digest(given.encode(), secret.encode()):
            raise PsaError(401, "missing or wrong shared secret header")
    else:  # hmac_sha256: a generic body signature, hex or base64, optionally prefixed ("sha256=")
        given = headers.get(str(cfg.auth.get("header") or "X-Signature"), "").strip()
        prefix = str(cfg.auth.get("prefix") or "")
        if not given or (prefix and not given.startswith(prefix)):
            raise PsaError(401, "unsigned")
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        want = base64.b64encode(digest).decode() if cfg.auth.get("encoding") == "base64" else digest.hex()
        if not hmac.compare_digest((prefix + want).encode(), given.encode()):
            raise PsaError(401, "bad signature")
