"""PSA files and what a webhook call says: configuration, payload fields, replayed deliveries, client mapping.

The shipped PSA files live in psa/ beside this module; $OFFBOARD_PSA_CONFIG_DIR (or
`offboard serve --psa-config DIR`) adds or replaces files by name. Secrets are named by environment
variable in those files, never written in them. See psa.py for the whole picture.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from offboard.fsutil import locked, open_private

CONFIG_DIR = Path(__file__).with_name("psa")
DELIVERIES = ".psa-deliveries.jsonl"  # beside the client folders of the evidence root
TIMEOUT = 10.0
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


def scalar(value: Any) -> str:
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
    values = {k: scalar(lookup(payload, path)) for k, path in cfg.fields.items()}
    if not values["delivery_id"]:
        raise PsaError(400, f"no delivery id at {cfg.fields['delivery_id']}")
    why = ""
    for key, allowed in cfg.match.items():
        got = scalar(lookup(payload, key))
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
    company = scalar(entry.get(cfg.client_key))
    if not company:
        return None
    return Link(cfg.name, company, scalar(entry.get("ticket_id")))


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
