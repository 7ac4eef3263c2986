"""Plan corrections of issue 17 (pure logic, controlled clock): several people per owner role (primary
first, deputies informed, escalation to the role's manager), the old one-person form still accepted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from offboard import checklist, ledger
from offboard import plan as planlib
from offboard.cli import UsageError

ROOT = Path(__file__).resolve().parents[2]
D = dt.date.fromisoformat
START = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def process() -> planlib.Process:
    return planlib.load_process()


def _cvars(team: dict) -> checklist.ClientVars:
    base = checklist.load_client_vars("lab", ROOT)
    return checklist.ClientVars("lab", {**base.values, "offboard_team": team})


ROTA = {
    "account_manager": {"name": "Alex Account", "email": "alex@msp.test", "manager": "leadership"},
    "technicians": {
        "manager": "leadership",
        "people": [
            {"name": "Tess Tech", "email": "tess@msp.test"},
            {"name": "Terry Tech", "email": "terry@msp.test"},
        ],
    },
    "documentation": [
        {"name": "Dana Docs", "email": "dana@msp.test", "manager": "leadership"},
        {"name": "Dev Docs", "email": "dev@msp.test"},
    ],
    "billing": {"name": "Bill Billing", "email": "bill@msp.test", "manager": "leadership"},
    "leadership": [
        {"name": "Lee Lead", "email": "lee@msp.test"},
        {"name": "Liv Lead", "email": "liv@msp.test"},
    ],
}


def _ctx(process, cvars, today: str, attestations=()) -> checklist.Context:
    plan = checklist.build_plan(process, cvars, cvars.dates(), START)
    hist = checklist.History(plan=plan, attestations=list(attestations), ledger=ledger.Ledger("lab"))
    return checklist.Context("lab", process, hist, [], cvars, D(today))


def test_several_people_per_role_first_is_primary_deputies_informed_manager_escalated(process):
    cvars = _cvars(ROTA)
    assert checklist.plan_gaps(process, cvars) == []
    plan = checklist.build_plan(process, cvars, cvars.dates(), START)
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["3.1"]["owner_name"] == "Tess Tech"
    assert steps["3.1"]["deputies"] == [{"name": "Terry Tech", "email": "terry@msp.test"}]
    assert steps["3.1"]["manager_name"] == "Lee Lead"  # the manager role's primary
    assert steps["1.3"]["owner_name"] == "Dana Docs" and steps["1.3"]["manager_role"] == "leadership"
    assert steps["1.1"]["deputies"] == []

    ctx = _ctx(process, cvars, "2026-11-08")  # phase 1 due 2026-11-04: 4 days overdue
    notes = checklist.notices(ctx, checklist.step_states(ctx))
    kickoff = {n.to_email: n for n in notes if n.kind == "kickoff"}
    assert set(kickoff) == {
        f"{p}@msp.test" for p in ("alex", "tess", "terry", "dana", "dev", "bill", "lee", "liv")
    }
    assert "3.1 RMM agent removal" in kickoff["terry@msp.test"].body
    assert "(deputy for Tess Tech)" in kickoff["terry@msp.test"].body
    reminders = {(n.step, n.to_email) for n in notes if n.kind == "reminder"}
    assert ("1.3", "dana@msp.test") in reminders and ("1.3", "dev@msp.test") not in reminders
    escalations = {(n.step, n.to_email) for n in notes if n.kind == "escalation"}
    assert ("1.3", "lee@msp.test") in escalations and not any(e == "liv@msp.test" for _, e in escalations)
    # A deputy may attest; the kick-off counts as done only once deputies were told too.
    assert checklist.find_person(cvars, "Terry Tech").role == "technicians"
    sent = [{"notice_kind": "kickoff", "to_email": e, "channels": {"email": "ok <id>"}, "recorded_at": "x"}
            for e in ("alex", "tess", "dana", "bill", "lee")]  # fmt: skip
    for n in sent:
        n["to_email"] += "@msp.test"
    ctx.hist.notifications = sent
    st = {s.id: s for s in checklist.step_states(ctx)}
    assert not st["1.2"].done and st["1.2"].evidence == "5/8 people notified of the plan"


def test_old_one_person_form_and_a_deputy_without_email(process):
    old = checklist.load_client_vars("lab", ROOT)
    assert {r: p.name for r, p in old.team.items()}["technicians"] == "Tess Tech"
    assert all(len(ps) == 1 for ps in old.members.values())
    broken = _cvars({**ROTA, "technicians": {"manager": "leadership", "people": [
        {"name": "Tess Tech", "email": "tess@msp.test"}, {"name": "Nobody"}]}})  # fmt: skip
    assert any("a deputy" in g and "technicians" in g for g in checklist.plan_gaps(process, broken))
    with pytest.raises(UsageError):
        checklist.find_person(old, "Terry Tech")


# --- a guard-refused step with a known date waits, it is not late --------------------------------
def _run(host_items: dict[str, list[tuple[str, str, str]]], run="2026-11-10T10") -> list[dict]:
    """Records of one agents run: per host, (item, action, verification result) of backup_agent."""
    out = [
        {
            "kind": "phase_start",
            "run_id": run,
            "phase": "agents",
            "hosts": list(host_items),
            "recorded_at": run,
        }
    ]
    for host, items in host_items.items():
        for item, action, result in items:
            out.append({"kind": "item", "run_id": run, "phase": "agents", "host": host, "recorded_at": run,
                        "component": "backup_agent", "item": item, "action": action,
                        "verification": {"result": result}})  # fmt: skip
        out.append({"kind": "phase_end", "run_id": run, "phase": "agents", "host": host, "outcome": "ok",
                    "recorded_at": run})  # fmt: skip
    return out


def _backup_ctx(process, records, today):
    cvars = checklist.load_client_vars("lab", ROOT)  # retention_until 2026-11-21: deletable from 11-22
    ctx = _ctx(process, cvars, today)
    ctx.hist.ledger = ledger.Ledger("lab").fold(records)
    ctx.hosts = ["lab-srv01", "lab-ws01"]
    return ctx


REFUSED_DATA = _run(
    {
        "lab-srv01": [
            ("veeam_agent", "removed", "verified_absent"),
            ("backup_data:/var/backups/msp-veeam-repo", "refused", "not_verified"),
        ],
        "lab-ws01": [("veeam_agent", "removed", "verified_absent")],
    }
)


@pytest.mark.parametrize(
    ("today", "status", "kinds"),
    [
        ("2026-11-15", "waiting until 2026-11-22", set()),  # 3.3 was due 2026-11-11: not late, waiting
        ("2026-11-22", "due today", {"reminder"}),  # the dated follow-up: the assignee is reminded
        ("2026-11-25", "overdue 3d", {"reminder", "escalation"}),  # late from the follow-up on
    ],
)
def test_backup_step_refused_by_the_retention_guard_waits_until_the_date(process, today, status, kinds):
    ctx = _backup_ctx(process, REFUSED_DATA, today)
    states = {s.id: s for s in checklist.step_states(ctx)}
    st = states["3.3"]
    assert st.due == D("2026-11-11") and st.waiting_until == "2026-11-22"
    assert st.status(ctx.today) == status
    assert "refused by a guard until 2026-11-22" in st.evidence
    got = {n.kind for n in checklist.notices(ctx, list(states.values())) if n.step == "3.3"}
    assert got == kinds
    if kinds:
        body = next(n.body for n in checklist.notices(ctx, list(states.values())) if n.step == "3.3")
        assert "was due 2026-11-22 (follow-up: a guard held it until 2026-11-22)" in body


def test_a_step_with_other_work_outstanding_is_late_not_waiting(process):
    agent_failed = _run(
        {
            "lab-srv01": [
                ("veeam_agent", "failed", "still_present"),
                ("backup_data:/var/backups/msp-veeam-repo", "refused", "not_verified"),
            ],
            "lab-ws01": [("veeam_agent", "removed", "verified_absent")],
        }
    )
    st = {s.id: s for s in checklist.step_states(_backup_ctx(process, agent_failed, "2026-11-15"))}["3.3"]
    assert st.waiting_until == "" and st.status(D("2026-11-15")) == "overdue 4d"
    # No date known (retention_until unset): the refusal stays a plain open step.
    ctx = _backup_ctx(process, REFUSED_DATA, "2026-11-15")
    ctx.cvars = checklist.ClientVars("lab", {**ctx.cvars.values, "offboard_backup_terms": {}})
    st = {s.id: s for s in checklist.step_states(ctx)}["3.3"]
    assert st.waiting_until == "" and st.status(D("2026-11-15")).startswith("overdue")


def test_access_revocation_refused_before_the_agreed_date_waits_for_it(process):
    run = "2026-11-10T10"
    records = [
        {"kind": "phase_start", "run_id": run, "phase": "access", "hosts": ["lab-srv03"], "recorded_at": run},
        {"kind": "item", "run_id": run, "phase": "access", "host": "lab-srv03", "recorded_at": run,
         "component": "msp_account", "item": "revocation-date-guard", "action": "refused",
         "verification": {"result": "not_verified"}},
        {"kind": "phase_end", "run_id": run, "phase": "access", "host": "lab-srv03", "outcome": "ok",
         "recorded_at": run},
    ]  # fmt: skip
    cvars = checklist.load_client_vars("lab", ROOT)
    revocation = cvars.values["offboard_dates"]["access_revocation"]
    ctx = _ctx(process, cvars, "2026-11-10")
    ctx.hist.ledger = ledger.Ledger("lab").fold(records)
    ctx.hosts = ["lab-srv03"]
    st = {s.id: s for s in checklist.step_states(ctx)}["2.3"]
    assert st.waiting_until == str(revocation) and st.status(ctx.today) == f"waiting until {revocation}"
