"""Evidence records: the normalized lines of records.jsonl, shared by the wrapper and the callback.

Four kinds of line, one JSON object each (schema in docs/evidence.md):
  item         one discovered item on one host (what the role's offboard_record task recorded)
  unreachable  a host could not be reached in a phase (with time and reason)
  phase_start  a phase play began running tasks, for these hosts
  phase_end    a host's outcome at the end of a phase play: ok | failed | unreachable
phase_start without a phase_end for a host means the run ended (or died) before that host finished.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1
PHASES = ("docs", "access", "agents", "infra")
ACTIONS = (
    "removed",
    "none",
    "would_remove",
    "failed",
    "exported",
    "rotated",
    "disabled",
    "would_change",
    "reset",
    "handed_over",
    "refused",
)
VERIFICATION_RESULTS = (
    "verified_absent",
    "verified_changed",
    "verified_refused",
    "verified_equal",
    "still_present",
    "not_verified",
)
OUTCOMES = ("ok", "failed", "unreachable")
KINDS = ("item", "unreachable", "phase_start", "phase_end")

# A key naming secret material is refused anywhere in a record (values are never inspected for this).
# Keys are split into words (snake, kebab, dotted, camelCase) so "footprint" or "bypass_list" pass.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "privatekey",
        "credential",
        "credentials",
        "bearer",
        "pin",
        "otp",
        "cookie",
        "vault",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("ssh", "key"),
        ("auth", "key"),
        ("client", "secret"),
        ("access", "key"),
        ("secret", "key"),
        ("key", "material"),
    }
)
_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def looks_secret(key: str) -> bool:
    """True when a field name suggests it holds a secret value."""
    words = [w.lower() for w in _WORD_RE.findall(str(key))]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


class RecordError(ValueError):
    """A record that breaks the contract; the message names the field."""


def utc_now() -> str:
    """UTC timestamp, ISO 8601 with microseconds and a Z."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def secret_keys(value: Any, path: str = "") -> list[str]:
    """Dotted paths of every mapping key in `value` that looks like it holds secret material."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, sub in value.items():
            where = f"{path}.{key}" if path else str(key)
            if looks_secret(str(key)):
                found.append(where)
            found.extend(secret_keys(sub, where))
    elif isinstance(value, list | tuple):
        for index, sub in enumerate(value):
            found.extend(secret_keys(sub, f"{path}[{index}]"))
    return found


@dataclass(frozen=True)
class Record:
    """One line of records.jsonl. Fields not used by a kind stay at their defaults."""

    kind: str
    run_id: str
    client: str
    phase: str
    recorded_at: str
    host: str = ""
    check_mode: bool = False
    component: str = ""
    item: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    action: str = ""
    after: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    export: dict[str, Any] | None = None
    outcome: str = ""
    reason: str = ""
    hosts: list[str] = field(default_factory=list)
    task: str = ""
    schema: int = SCHEMA

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v not in ("", None, [], {}) or k in _ALWAYS}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


_ALWAYS = frozenset({"kind", "run_id", "client", "phase", "recorded_at", "check_mode", "schema"})


def validate_item_args(args: Mapping[str, Any]) -> None:
    """Check an offboard_record task's arguments; raise RecordError naming what is wrong."""
    for name in ("phase", "component", "item", "action"):
        if not args.get(name) or not isinstance(args.get(name), str):
            raise RecordError(f"'{name}' is required and must be a string")
    if args["phase"] not in PHASES:
        raise RecordError(f"unknown phase {args['phase']!r}: use one of {', '.join(PHASES)}")
    if args["action"] not in ACTIONS:
        raise RecordError(f"unknown action {args['action']!r}: use one of {', '.join(ACTIONS)}")
    for name in ("before", "after", "verification"):
        if name in args and args[name] is not None and not isinstance(args[name], Mapping):
            raise RecordError(f"'{name}' must be a mapping")
    result = (args.get("verification") or {}).get("result")
    if result is not None and result not in VERIFICATION_RESULTS:
        raise RecordError(
            f"unknown verification.result {result!r}: use one of {', '.join(VERIFICATION_RESULTS)}"
        )
    export = args.get("export")
    if export is not None and (not isinstance(export, Mapping) or not {"path", "sha256"} <= set(export)):
        raise RecordError("'export' must be a mapping with 'path' and 'sha256'")
    leaked = secret_keys(dict(args))
    if leaked:
        raise RecordError(
            f"refusing to record field(s) that look secret: {', '.join(leaked)}; refer to secrets by an "
            "opaque handle (e.g. 'credential_ref'), never by value"
        )


def iter_raw(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the records of one records.jsonl as plain dicts (fast path for folding)."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    loads = json.loads
    with handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn write at the end of a killed run
            if len(line) < 3:
                continue
            try:
                data = loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield data


def iter_records(path: Path) -> Iterator[Record]:
    """Stream the records of one records.jsonl; a torn last line (a killed writer) is skipped."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn write at the end of a killed run
            line = line.strip()
            if not line:
                continue
            try:
                yield Record.from_dict(json.loads(line))
            except (ValueError, TypeError):
                continue
