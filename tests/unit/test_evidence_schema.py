"""docs/record.schema.json is the record contract: a valid JSON Schema, used when writing and reading.

Reading uses a compiled check of the same schema (records.fast_check, for speed); these tests hold it to
jsonschema's verdict on a corpus of good and bad records, so the two can never drift apart unnoticed.
"""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator
from offboard import records
from offboard.evidence import RecordWriter
from offboard.records import Record, RecordError

BASE = {
    "schema": 1,
    "run_id": "r1",
    "client": "lab",
    "phase": "agents",
    "recorded_at": "t",
    "check_mode": False,
}
GOOD = [
    {
        **BASE,
        "kind": "item",
        "host": "ws01",
        "component": "rmm_agent",
        "item": "ninjaone",
        "action": "removed",
        "before": {"found": True, "paths": ["/opt/x"]},
        "after": {"found": False},
        "verification": {"method": "probe", "result": "verified_absent"},
        "export": {"path": "exports/ws01/x", "sha256": "ab"},
        "error": None,
        "task": "t",
    },
    {**BASE, "kind": "phase_start", "hosts": ["ws01", "ws02"]},
    {**BASE, "kind": "phase_start"},
    {**BASE, "kind": "unreachable", "host": "ws01", "reason": "down", "task": "preflight"},
    {**BASE, "kind": "phase_end", "host": "ws01", "outcome": "ok", "reason": ""},
    {**BASE, "kind": "plan", "phase": "checklist", "plan": {"steps": []}},
    {**BASE, "kind": "attestation", "phase": "checklist", "step": "x", "by": "y"},
]


def _bad() -> list[dict]:
    item = GOOD[0]
    out = []
    for change in (
        {"host": None},
        {"host": ["ws01"]},
        {"host": ""},
        {"verification": "yes"},
        {"verification": {"result": "gone"}},
        {"action": "zapped"},
        {"phase": "lunch"},
        {"schema": 2},
        {"check_mode": "no"},
        {"export": {"path": "x"}},
        {"before": []},
        {"password": "x"},
    ):
        out.append({**copy.deepcopy(item), **change})
    for name in ("component", "run_id", "kind"):
        broken = copy.deepcopy(item)
        del broken[name]
        out.append(broken)
    out += [
        {**BASE, "kind": "phase_start", "hosts": "abc"},
        {**BASE, "kind": "phase_start", "hosts": [None]},
        {**BASE, "kind": "phase_end", "host": "ws01", "outcome": "done"},
        {**BASE, "kind": "unreachable"},
        {**BASE, "kind": "plan", "phase": "agents"},
        {**BASE, "kind": "forged"},
        [1, 2],
        "text",
        None,
    ]
    return out


def test_the_published_schema_is_valid_json_schema():
    Draft202012Validator.check_schema(records.record_schema())


@pytest.mark.parametrize("data", GOOD, ids=lambda d: d.get("kind"))
def test_good_records_pass_both_checks(data):
    assert records.schema_problem(data) is None
    assert records.fast_check()(data) is None


@pytest.mark.parametrize("data", _bad(), ids=lambda d: json.dumps(d)[:60])
def test_bad_records_fail_both_checks(data):
    assert records.schema_problem(data) is not None
    assert records.fast_check()(data) is not None
    assert records.check_record(data)


def test_the_writer_refuses_a_record_that_breaks_the_schema(tmp_path):
    writer = RecordWriter(tmp_path)
    writer.write(
        Record(kind="phase_start", run_id="r", client="c", phase="agents", recorded_at="t", hosts=["a"])
    )
    with pytest.raises(RecordError, match=r"record\.schema\.json"):
        writer.write(Record(kind="item", run_id="r", client="c", phase="agents", recorded_at="t", host="h"))
    writer.close()
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 1
