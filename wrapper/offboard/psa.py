"""The PSA as the plan's trigger and its audience (issue 17).

In: a PSA webhook (ConnectWise company callback, HaloPSA webhook, or any PSA described by a YAML file)
is authenticated, its delivery id checked against the ones already handled, its fields read where that
PSA's YAML says they are, and its company id mapped to a client folder (offboard_psa in the client's
inventory). Out: when a step of the plan completes, a note is posted to the PSA's REST API, retried with
backoff; each call is a `psa_update` record in the client's evidence. A PSA that fails never blocks the
offboarding: the call is recorded as failed and tried again by the next sync.

The shipped PSA files live next to this module (psa/*.yml); $OFFBOARD_PSA_CONFIG_DIR (or
`offboard serve --psa-config DIR`) adds or replaces files by name. Secrets are named by environment
variable in those files, never written in them, and never printed or recorded.
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
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from offboard.fsutil import locked, open_private

CONFIG_DIR = Path(__file__).with_name("psa")
DELIVERIES = ".psa-deliveries.jsonl"  # beside the client folders of the evidence root
TIMEOUT = 10.0
KEY_CACHE_SECONDS = 300.0
AUTH_SCHEMES = ("connectwise_signature", "basic", "header", "hmac_sha256")


class PsaError(Exception):
    """A request the receiver refuses: HTTP status and a reason safe to log (no secret, no body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- configuration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PsaConfig:
    name: str
    auth: dict[str, Any]
    fields: dict[str, str]
    match: dict[str, tuple[str, ...]]
    offboarding_status: str
    client_key: str
    api: dict[str, Any]
    path: Path

    def secret(self) -> str:
        """The shared secret of the inbound webhook (empty when its variable is unset)."""
        name = str(self.auth.get("secret_env") or "")
        return os.environ.get(name, "") if name else ""


def config_dirs(extra: Path | None = None) -> list[Path]:
    dirs = [CONFIG_DIR]
    env = os.environ.get("OFFBOARD_PSA_CONFIG_DIR")
    for d in (Path(env) if env else None, extra):
        if d is not None:
            dirs.append(d)
    return dirs


def load_configs(extra: Path | None = None) -> dict[str, PsaConfig]:
    """Every PSA file; later directories replace earlier files of the same name."""
    out: dict[str, PsaConfig] = {}
    for d in config_dirs(extra):
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.yml")):
            cfg = parse_config(path)
            out[cfg.name] = cfg
    return out


def parse_config(path: Path) -> PsaConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read PSA file {path}: {exc}") from None
    name = str(data.get("name") or path.stem)
    auth = dict(data.get("auth") or {})
    if auth.get("scheme") not in AUTH_SCHEMES:
        raise ValueError(f"{path}: auth.scheme must be one of {', '.join(AUTH_SCHEMES)}")
    if auth["scheme"] != "connectwise_signature" and not auth.get("secret_env"):
        raise ValueError(f"{path}: auth.secret_env must name the environment variable holding the secret")
    fields = {str(k): str(v) for k, v in (data.get("fields") or {}).items()}
    for need in ("delivery_id", "company_id", "status"):
        if need not in fields:
            raise ValueError(f"{path}: fields.{need} must say where the payload holds it")
    match = {
        str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v]))
        for k, v in (data.get("match") or {}).items()
    }
    return PsaConfig(
        name=name,
        auth=auth,
        fields=fields,
        match=match,
        offboarding_status=str(data.get("offboarding_status") or "Offboarding"),
        client_key=str(data.get("client_key") or "company_id"),
        api=dict(data.get("api") or {}),
        path=path,
    )


# --- payload fields -------------------------------------------------------------------------------
_MISSING = object()


def lookup(payload: Any, dotted: str) -> Any:
    """The value at a dotted path; a JSON string met on the way is decoded (ConnectWise's Entity)."""
    value = payload
    for part in dotted.split("."):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return _MISSING
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _scalar(value: Any) -> str:
    if value is _MISSING or value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value).strip()


@dataclass(frozen=True)
class Delivery:
    """What one webhook call says, read through the PSA's field mapping."""

    psa: str
    delivery_id: str
    company_id: str
    status: str
    ticket_id: str = ""
    matched: bool = True
    why_ignored: str = ""


def read_delivery(cfg: PsaConfig, payload: Any) -> Delivery:
    if not isinstance(payload, Mapping):
        raise PsaError(400, "payload is not a JSON object")
    values = {k: _scalar(lookup(payload, path)) for k, path in cfg.fields.items()}
    if not values["delivery_id"]:
        raise PsaError(400, f"no delivery id at {cfg.fields['delivery_id']}")
    why = ""
    for key, allowed in cfg.match.items():
        got = _scalar(lookup(payload, key))
        if got.lower() not in {a.lower() for a in allowed}:
            why = f"{key} is {got or 'missing'!r}, not {'/'.join(allowed)}"
            break
    if not why and not values["company_id"]:
        raise PsaError(400, f"no company id at {cfg.fields['company_id']}")
    if not why and not values["status"]:
        raise PsaError(400, f"no status at {cfg.fields['status']}")
    return Delivery(
        cfg.name,
        values["delivery_id"][:200],
        values["company_id"][:100],
        values["status"][:200],
        values.get("ticket_id", "")[:100],
        matched=not why,
        why_ignored=why,
    )


# --- inbound authentication -----------------------------------------------------------------------
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
        url = _scalar(lookup(payload, str(cfg.auth.get("key_url_field") or "Metadata.key_url")))
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


# --- replayed deliveries --------------------------------------------------------------------------
class DeliveryLog:
    """Delivery ids already handled, persisted (one JSON line each) so a restart still knows them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    self._seen.add((str(rec["psa"]), str(rec["delivery_id"])))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from a crash: that delivery may be handled again

    def seen(self, psa: str, delivery_id: str) -> bool:
        with self._lock:
            return (psa, delivery_id) in self._seen

    def add(self, psa: str, delivery_id: str, outcome: str, at: str) -> None:
        with self._lock:
            self._seen.add((psa, delivery_id))
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with locked(self.path.with_name(self.path.name + ".lock")), open_private(self.path, "a") as f:
                line = {"psa": psa, "delivery_id": delivery_id, "outcome": outcome, "at": at}
                f.write(json.dumps(line, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())


# --- client mapping -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """Which PSA record stands for the client: recorded in the plan, used for the status updates."""

    psa: str
    company_id: str
    ticket_id: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("psa", self.psa), ("company_id", self.company_id), ("ticket_id", self.ticket_id))
            if v
        }


def inventory_link(values: Mapping[str, Any], cfg: PsaConfig) -> Link | None:
    entry = (values.get("offboard_psa") or {}).get(cfg.name)
    if not isinstance(entry, Mapping):
        return None
    company = _scalar(entry.get(cfg.client_key))
    if not company:
        return None
    return Link(cfg.name, company, _scalar(entry.get("ticket_id")))


def find_client(project: Path, cfg: PsaConfig, company_id: str) -> tuple[str, Link] | None:
    """The client whose inventory names this PSA company (offboard_psa.<psa>.<client_key>)."""
    from offboard import checklist

    inventories = project / "inventories"
    if not inventories.is_dir():
        return None
    for folder in sorted(p for p in inventories.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            values = checklist.load_client_vars(folder.name, project).values
        except Exception:  # an unreadable inventory is another client's problem, not this delivery's
            continue
        link = inventory_link(values, cfg)
        if link and link.company_id == company_id:
            return folder.name, link
    return None


# --- outbound: status back to the PSA -------------------------------------------------------------
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


def now_iso() -> str:
    from offboard import plan as planlib

    return planlib.iso_utc(planlib.now())


def step_note(client: str, step_id: str, title: str, done_at: str, evidence: str) -> str:
    return f"offboard: client {client}, step {step_id} {title}: done {done_at}" + (
        f" ({evidence})" if evidence else ""
    )


def plan_link(
    plan: Mapping[str, Any] | None, values: Mapping[str, Any], configs: dict[str, PsaConfig]
) -> Link | None:
    """The PSA record of the client: the one that started the plan, else the inventory's first."""
    rec = (plan or {}).get("psa") or {}
    if rec.get("psa") in configs and rec.get("company_id"):
        inv = inventory_link(values, configs[rec["psa"]])
        ticket = str(rec.get("ticket_id") or (inv.ticket_id if inv else ""))
        return Link(str(rec["psa"]), str(rec["company_id"]), ticket)
    for cfg in configs.values():
        link = inventory_link(values, cfg)
        if link:
            return link
    return None


def sync_client(
    store: Any, client: str, extra: Path | None = None, quiet: bool = False
) -> list[dict[str, Any]]:
    """Post every completed step the PSA has not confirmed yet; record each call. Never raises."""
    from offboard import checklist, ledger
    from offboard import plan as planlib

    try:
        configs = load_configs(extra)
        if not any(api_configured(c) for c in configs.values()):
            return []  # no PSA API to talk to: nothing to read (runs and reminders stay as fast as before)
        project = checklist._project()
        cvars = checklist.load_client_vars(client, project)
        hist = checklist.read_history(store, client)
        if hist.plan is None:
            return []
        link = plan_link(hist.plan, cvars.values, configs)
        if link is None or not api_configured(configs[link.psa]):
            return []
        cfg = configs[link.psa]
        process = planlib.load_process()
        ctx = checklist.Context(
            client, process, hist, checklist._hosts(client, project), cvars, planlib.now().date()
        )
        hist.ledger = hist.ledger or ledger.Ledger(client)
        reported = {r.get("step") for r in hist.psa_updates if r.get("ok")}
        last_error = {r.get("step"): r.get("error", "") for r in hist.psa_updates}
        records = []
        for st in checklist.step_states(ctx):
            if not st.done or st.id in reported:
                continue
            text = step_note(client, st.id, st.title, st.done_at, st.evidence)
            res = post_status(cfg, link, text)
            if res.error.startswith("not configured") and last_error.get(st.id) == res.error:
                continue  # the same configuration gap, already on record: not one more record per run
            rec = {
                "kind": "psa_update",
                "step": st.id,
                "title": st.title,
                "psa": cfg.name,
                "company_id": link.company_id,
                "ticket_id": link.ticket_id,
                "target": res.target,
                "request": res.request,
                "http_status": res.http_status,
                "attempts": res.attempts,
                "ok": res.ok,
                "error": res.error,
                "recorded_at": now_iso(),
            }
            records.append(rec)
            if not quiet:
                print(
                    f"{client}: step {st.id} -> {cfg.name}: "
                    + (
                        f"ok HTTP {res.http_status}"
                        if res.ok
                        else f"not posted ({res.error}); retried next sync"
                    )
                )
        if records:
            with locked(store.client_dir(client) / checklist.CHECKLIST_LOCK):
                checklist.write_checklist_run(store, client, "psa-sync", records)
        return records
    except Exception as exc:  # a PSA problem never blocks the offboarding command that called us
        if not quiet:
            print(f"{client}: PSA status update skipped ({type(exc).__name__}: {exc})")
        return []
