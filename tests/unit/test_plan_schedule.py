"""The offboarding plan's pure logic: process data, owners, due dates, compression, reminders,
and automated steps completing from the ledger (controlled clock, no I/O beyond the repo's files)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from offboard import checklist, ledger
from offboard import plan as planlib

ROOT = Path(__file__).resolve().parents[2]
D = dt.date.fromisoformat
BRIEF_STEPS = [
    "1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "2.3", "2.4", "3.1", "3.2",
    "3.3", "3.4", "4.1", "4.2", "4.3", "4.4", "5.1", "5.2", "5.3",
]  # fmt: skip


@pytest.fixture(scope="module")
def process() -> planlib.Process:
    return planlib.load_process()


def test_process_holds_the_19_steps_of_the_brief_and_the_30_day_check(process):
    assert process.ids == [*BRIEF_STEPS, "5.4"]
    by = {s.id: s for s in process.steps}
    assert {s.owner for s in process.steps} <= {"account_manager", "technicians", "documentation", "billing"}
    assert by["3.1"].completion == "automated" and by["3.1"].evidence.components == ("rmm_agent",)
    assert by["1.1"].completion == "attest" and by["1.2"].completion == "notified"
    assert by["5.4"].after_done == ("5.3", 30)
    assert set(by["3.1"].after) == {"3.2", "3.3", "3.4"}  # the RMM agent goes last


def test_sample_client_plan_assigns_every_step_to_the_right_person_and_date(process):
    cvars = checklist.load_client_vars("example", ROOT)
    plan = checklist.build_plan(process, cvars, cvars.dates(), dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC))
    steps = {s["id"]: s for s in plan["steps"]}
    assert not plan["compressed"]
    expected_due = {
        "1": "2026-11-04",
        "2": "2026-11-08",
        "3": "2026-11-11",
        "4": "2026-11-15",
        "5": "2026-11-15",
    }
    for sid, s in steps.items():
        if sid in ("2.3", "5.4"):
            continue
        assert s["due"] == expected_due[sid[0]], sid
    assert steps["2.3"]["due"] == "2026-11-16"  # the agreed revocation date, not the window
    assert steps["5.4"]["due"] == "2026-12-15"  # 30 days after recurring billing removal
    people = {
        "account_manager": "Alex Account",
        "technicians": "Tess Tech",
        "documentation": "Dana Docs",
        "billing": "Bill Billing",
    }
    for s in steps.values():
        assert s["owner_name"] == people[s["owner_role"]]
        assert s["manager_name"] == "Lee Lead"
    assert steps["1.3"]["owner_email"] == "docs@msp.example.net"


def test_contract_ending_in_7_days_compresses_every_window_before_it(process):
    today = D("2026-11-02")
    sched = planlib.schedule(process, planlib.Dates(today, D("2026-11-09")), today)
    assert sched.compressed and sched.available_days == 8 and sched.nominal_days == 14
    windowed = {k: v for k, v in sched.due.items() if k != "5.4"}
    assert max(windowed.values()) == D("2026-11-09")
    assert min(windowed.values()) >= today
    assert sched.due["1.1"] == D("2026-11-03")  # day 3 of 14 -> day 2 of 8
    assert sched.due["2.1"] == D("2026-11-05")  # day 7 -> day 4
    assert sched.due["3.1"] == D("2026-11-07")  # day 10 -> day 6
    assert sched.due["4.1"] == D("2026-11-09")  # day 14 -> day 8
    for step in process.steps:  # dependencies stay in order
        for dep in step.after:
            assert sched.due[dep] <= sched.due[step.id], (dep, step.id)
    assert "compressed" in sched.notes[0]


def test_contract_that_ended_yesterday_is_refused_with_an_explanation(process):
    today = D("2026-11-10")
    with pytest.raises(planlib.PlanError, match=r"contract ended on 2026-11-09 .*today is 2026-11-10"):
        planlib.schedule(process, planlib.Dates(D("2026-11-02"), D("2026-11-09")), today)


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        (planlib.Dates(D("2026-11-10"), D("2026-11-05")), "contract_end 2026-11-05 is before"),
        (planlib.Dates(D("2026-11-02"), D("2026-11-30"), D("2026-12-05")), "access_revocation 2026-12-05"),
        (planlib.Dates(D("2026-11-02"), D("2026-11-30"), D("2026-11-01")), "access_revocation 2026-11-01"),
    ],
)
def test_dates_out_of_order_are_refused(process, dates, message):
    with pytest.raises(planlib.PlanError, match=message):
        planlib.schedule(process, dates, D("2026-11-01"))


def test_fixed_revocation_date_pulls_its_prerequisites_before_it(process):
    dates = planlib.Dates(D("2026-11-02"), D("2026-11-30"), D("2026-11-04"))
    sched = planlib.schedule(process, dates, D("2026-11-02"))
    assert sched.due["2.3"] == D("2026-11-04")
    assert sched.due["2.1"] <= D("2026-11-04") and sched.due["2.2"] <= D("2026-11-04")


def test_billing_check_counts_30_days_from_the_real_removal(process):
    step = process.step("5.4")
    assert planlib.after_done_due(step, {"5.3": D("2026-11-20")}, D("2026-12-15")) == D("2026-12-20")
    assert planlib.after_done_due(step, {}, D("2026-12-15")) == D("2026-12-15")


@pytest.mark.parametrize(
    ("today", "on_due", "kinds"),
    [
        ("2026-11-04", False, []),
        ("2026-11-05", False, ["reminder"]),
        ("2026-11-06", False, ["reminder"]),
        ("2026-11-07", False, ["reminder", "escalation"]),
        ("2026-11-04", True, ["reminder"]),
        ("2026-11-03", True, []),
    ],
)
def test_reminder_at_one_day_overdue_escalation_at_three(today, on_due, kinds):
    assert planlib.reminder_kinds(D("2026-11-04"), D(today), on_due) == kinds


def test_clock_is_injectable(monkeypatch):
    monkeypatch.setenv("OFFBOARD_NOW", "2026-11-05T10:30:00Z")
    assert planlib.now() == dt.datetime(2026, 11, 5, 10, 30, tzinfo=dt.UTC)
    monkeypatch.setenv("OFFBOARD_NOW", "2026-11-05")
    assert planlib.now().date() == D("2026-11-05")


# --- automated completion from the ledger --------------------------------------------------------
def _rec(run, kind, host="", **kw):
    return {"kind": kind, "run_id": run, "phase": "agents", "host": host, "recorded_at": f"{run}Z", **kw}


def _item(run, host, item, action, result):
    return _rec(run, "item", host, component="rmm_agent", item=item, action=action,
                verification={"result": result})  # fmt: skip


def _states(process, records, hosts, attestations=()):
    cvars = checklist.load_client_vars("lab", ROOT)
    plan = checklist.build_plan(process, cvars, cvars.dates(), dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    hist = checklist.History(plan=plan, attestations=list(attestations))
    hist.ledger = ledger.Ledger("lab").fold(records)
    ctx = checklist.Context("lab", process, hist, hosts, cvars, D("2026-11-12"))
    return {s.id: s for s in checklist.step_states(ctx)}


def test_rmm_step_stays_open_while_an_offline_device_is_pending_and_names_it(process):
    first = [
        _rec("2026-11-05T10", "phase_start", hosts=["ws01", "laptop"]),
        _item("2026-11-05T10", "ws01", "ninjaone", "removed", "verified_absent"),
        _rec("2026-11-05T10", "phase_end", "ws01", outcome="ok"),
        _rec("2026-11-05T10", "unreachable", "laptop", reason="container stopped"),
        _rec("2026-11-05T10", "phase_end", "laptop", outcome="unreachable"),
    ]
    st = _states(process, first, ["ws01", "laptop"])["3.1"]
    assert not st.done and st.status(D("2026-11-12")) == "overdue 1d"
    assert "laptop (unreachable" in st.evidence and "container stopped" in st.evidence
    assert "1/2 devices clean" in st.evidence
    # An attestation cannot overrule the pending device.
    att = {"step": "3.1", "by_name": "Tess Tech", "recorded_at": "2026-11-06T00:00:00Z"}
    assert not _states(process, first, ["ws01", "laptop"], [att])["3.1"].done

    retried = [
        *first,
        _rec("2026-11-07T10", "phase_start", hosts=["laptop"]),
        _item("2026-11-07T10", "laptop", "ninjaone", "removed", "verified_absent"),
        _item("2026-11-07T10", "laptop", "tactical_rmm", "none", "verified_absent"),
        _rec("2026-11-07T10", "phase_end", "laptop", outcome="ok"),
    ]
    st = _states(process, retried, ["ws01", "laptop"])["3.1"]
    assert st.done and st.evidence.startswith("2/2 devices clean")
    # A device of the inventory that no run has covered keeps it open too.
    st = _states(process, retried, ["ws01", "laptop", "srv01"])["3.1"]
    assert not st.done and "no run yet: srv01" in st.evidence


def test_check_mode_records_never_complete_an_automated_step(process):
    rehearsal = [
        {**r, "check_mode": True}
        for r in [
            _rec("r1", "phase_start", hosts=["ws01"]),
            _item("r1", "ws01", "ninjaone", "none", "verified_absent"),
            _rec("r1", "phase_end", "ws01", outcome="ok"),
        ]
    ]
    st = _states(process, rehearsal, ["ws01"])["3.1"]
    assert not st.done and st.evidence == ""


def test_manual_step_completes_by_attestation(process):
    att = {
        "step": "1.1",
        "by_name": "Alex Account",
        "recorded_at": "2026-11-03T09:00:00Z",
        "attachments": [{}],
    }
    st = _states(process, [], [], [att])["1.1"]
    assert st.done and st.evidence == "attested by Alex Account 2026-11-03T09:00:00Z, 1 file(s)"


def _components_roles_record() -> set[str]:
    """Every evidence component some role or plugin records (`component:` literal or in its template)."""
    found: set[str] = set()
    files = [*(ROOT / "roles").rglob("*.yml"), *(ROOT / "plugins").rglob("*.py")]
    for path in files:
        lines = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*COMPONENTS\s*=", line):  # an action plugin's tuple of the components it records
                found.update(re.findall(r"['\"]([a-z_]+)['\"]", line))
            if "component" not in line:
                continue
            chunk = " ".join(lines[i : i + 2])
            found.update(re.findall(r"component['\"]?\s*[:=]\s*['\"]?([a-z_]+)", chunk))
            if "{{" in line:
                found.update(re.findall(r"'([a-z_]+)'", chunk))
    return found


def test_every_evidence_component_of_the_process_is_recorded_by_some_role(process):
    produced = _components_roles_record()
    for step in process.steps:
        if step.evidence is None:
            continue
        missing = set(step.evidence.components) - produced
        assert not missing, f"step {step.id}: no role records {sorted(missing)}: the step could never close"
    assert "monitoring_agent" not in produced  # the case that was wrong: no role records it
