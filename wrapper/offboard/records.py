"""Evidence records: the normalized lines of records.jsonl, shared by the wrapper and the callback.

Four kinds of line, one JSON object each (schema in docs/evidence.md):
  item         one discovered item on one host (what the role's offboard_record task recorded)
  unreachable  a host could not be reached in a phase (with time and reason)
  phase_start  a phase play began running tasks, for these hosts
  phase_end    a host's outcome at the end of a phase play: ok | failed | unreachable
phase_start without a phase_end for a host means the run ended (or died) before that host finished.
The checklist writes four more kinds (ChecklistRecord, phase "checklist"): plan, attestation,
notification (a message sent) and psa_update (a status posted back to the PSA).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from offboard.vocabulary import (  # noqa: F401 (the vocabulary, re-exported for the wrapper)
    ACTIONS,
    CHECKLIST_KINDS,
    KINDS,
    OUTCOMES,
    PHASES,
    RUN_KINDS,
    VERIFICATION_RESULTS,
    check_item_args,
    looks_secret,
    names_secret,
    secret_keys,
)

SCHEMA = 1
CHECKLIST_PHASE = "checklist"


class RecordError(ValueError):
    """A record that breaks the contract; the message names the field."""


def utc_now() -> str:
    """UTC timestamp, ISO 8601 with microseconds and a Z."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None, [], {}) or k in _ALWAYS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


_ALWAYS = frozenset({"kind", "run_id", "client", "phase", "recorded_at", "check_mode", "schema"})


@dataclass(frozen=True)
class ChecklistRecord:
    """One checklist line of records.jsonl (kind in CHECKLIST_KINDS): the envelope every record has, plus
    the kind's own fields (the plan, who attested, whom a notice reached...), kept as given."""

    kind: str
    run_id: str
    client: str
    recorded_at: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    check_mode: bool = False
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if self.kind not in CHECKLIST_KINDS:
            raise RecordError(f"unknown checklist record kind {self.kind!r}: use one of {CHECKLIST_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.fields.items() if k not in _ALWAYS}
        data.update(
            schema=self.schema,
            kind=self.kind,
            run_id=self.run_id,
            client=self.client,
            phase=CHECKLIST_PHASE,
            recorded_at=self.recorded_at,
            check_mode=self.check_mode,
        )
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], run_id: str, client: str, recorded_at: str
    ) -> ChecklistRecord:
        """From a dict with `kind` and the kind's fields; its recorded_at/check_mode win when given."""
        return cls(
            kind=str(data.get("kind", "")),
            run_id=run_id,
            client=client,
            recorded_at=str(data.get("recorded_at") or recorded_at),
            fields={k: v for k, v in data.items() if k not in _ALWAYS},
            check_mode=bool(data.get("check_mode", False)),
        )


def validate_item_args(args: Mapping[str, Any]) -> None:
    """Check an offboard_record task's arguments; raise RecordError naming what is wrong."""
    try:
        check_item_args(args)
    except ValueError as exc:
        raise RecordError(str(exc)) from None


# --- the published schema (docs/record.schema.json) ----------------------------------------------
SCHEMA_FILE = "record.schema.json"
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),
    "number": (int, float),
}
Check = Callable[[Any], "str | None"]


def schema_path() -> Path:
    """docs/record.schema.json of the checkout this package runs from (else of the project)."""
    here = Path(__file__).resolve().parents[2] / "docs" / SCHEMA_FILE
    if here.is_file():
        return here
    from offboard.paths import project_root

    return project_root() / "docs" / SCHEMA_FILE


@functools.cache
def record_schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text(encoding="utf-8"))


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(record_schema())


def schema_problem(data: Any) -> str | None:
    """The first way `data` breaks the published record schema (jsonschema's message), or None."""
    error = next(iter(sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))), None)
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path))
    return f"{where}: {error.message}" if where else error.message


def _compile(schema: Mapping[str, Any]) -> Check:
    """A fast check of the subset of JSON Schema record.schema.json uses (type, const, enum, required,
    properties, propertyNames enum, items, minLength, allOf, if/then). It answers on every line read;
    jsonschema (schema_problem) words the message for a line it rejects and checks every line written.
    tests/unit/test_evidence_schema.py holds both to the same verdicts."""
    checks: list[Check] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        types = tuple(t for n in names for t in _TYPES[n])
        no_bool = "integer" in names or "number" in names

        def check_type(v: Any) -> str | None:
            if isinstance(v, types) and not (no_bool and isinstance(v, bool) and bool not in types):
                return None
            return f"{v!r} is not of type {' or '.join(names)}"

        checks.append(check_type)
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v: None if v == const and type(v) is type(const) else f"{v!r} is not {const!r}")
    if "enum" in schema:
        allowed = schema["enum"]
        checks.append(
            lambda v: (
                None
                if isinstance(v, str | int) and not isinstance(v, bool) and v in allowed
                else f"{v!r} is not one of {allowed}"
            )
        )
    if "minLength" in schema:
        least = schema["minLength"]
        checks.append(lambda v: f"{v!r} is too short" if isinstance(v, str) and len(v) < least else None)
    if "required" in schema:
        required = tuple(schema["required"])

        def check_required(v: Any) -> str | None:
            if isinstance(v, dict):
                for name in required:
                    if name not in v:
                        return f"{name!r} is a required property"
            return None

        checks.append(check_required)
    if "properties" in schema:
        props = {k: _compile(sub) for k, sub in schema["properties"].items()}

        def check_props(v: Any) -> str | None:
            if isinstance(v, dict):
                for name, check in props.items():
                    if name in v:
                        problem = check(v[name])
                        if problem:
                            return f"{name}: {problem}"
            return None

        checks.append(check_props)
    if "propertyNames" in schema:
        allowed_names = frozenset(schema["propertyNames"]["enum"])

        def check_names(v: Any) -> str | None:
            if isinstance(v, dict):
                extra = [k for k in v if k not in allowed_names]
                if extra:
                    return f"unknown field {extra[0]!r}"
            return None

        checks.append(check_names)
    if "items" in schema:
        each = _compile(schema["items"])

        def check_items(v: Any) -> str | None:
            if isinstance(v, list):
                for n, sub in enumerate(v):
                    problem = each(sub)
                    if problem:
                        return f"{n}: {problem}"
            return None

        checks.append(check_items)
    for sub in schema.get("allOf", ()):
        checks.append(_compile(sub))
    if "if" in schema:
        cond, then = _compile(schema["if"]), _compile(schema.get("then", {}))
        checks.append(lambda v: then(v) if cond(v) is None else None)

    def check(v: Any) -> str | None:
        for one in checks:
            problem = one(v)
            if problem:
                return problem
        return None

    return check


@functools.cache
def fast_check() -> Check:
    return _compile(record_schema())


def check_record(data: Any) -> str | None:
    """None when `data` is a valid record; else what is wrong (in jsonschema's words)."""
    if fast_check()(data) is None:
        return None
    return schema_problem(data) or fast_check()(data)


def report_bad_line(path: Path, number: int, why: str) -> None:
    """A bad line is named (file and line number) on stderr and skipped; nothing else stops."""
    print(f"offboard: {path}:{number}: skipped: {why}", file=sys.stderr)


def iter_raw(path: Path, on_bad: Callable[[Path, int, str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Stream the valid records of one records.jsonl as plain dicts (fast path for folding).

    Every line is checked against the published schema; a line that is not valid UTF-8, not JSON or
    not a valid record is reported (file and line number) and skipped, never a traceback."""
    on_bad = on_bad or report_bad_line
    try:
        if path.is_symlink():
            on_bad(path, 0, "a symlink, not read")
            return
        handle = path.open("rb")
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            on_bad(path, 0, exc.strerror or str(exc))
        return
    loads = json.loads
    check = fast_check()
    with handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                on_bad(path, number, "incomplete last line (its writer was killed)")
                break
            if len(raw.strip()) == 0:
                continue
            try:
                data = loads(raw)
            except UnicodeDecodeError:
                on_bad(path, number, "not valid UTF-8")
                continue
            except ValueError as exc:
                on_bad(path, number, f"not JSON ({exc})")
                continue
            if check(data) is not None:
                on_bad(path, number, f"not a valid record: {check_record(data)}")
                continue
            yield data


def iter_records(path: Path, on_bad: Callable[[Path, int, str], None] | None = None) -> Iterator[Record]:
    """Stream the valid records of one records.jsonl as Record objects (bad lines reported, skipped)."""
    for data in iter_raw(path, on_bad):
        yield Record.from_dict(data)
