"""The ledger folded from records: done, pending, unreachable and failed, and the exit codes."""

from __future__ import annotations

from offboard.ledger import Ledger
from offboard.records import Record


def rec(kind, run, host="", phase="agents", **kw):
    return Record(kind=kind, run_id=run, client="lab", phase=phase, recorded_at=f"{run}-t", host=host, **kw)


def item(run, host, name, action="removed", result="verified_absent", **kw):
    return rec(
        "item",
        run,
        host,
        component="rmm_agent",
        item=name,
        action=action,
        verification={"method": "probe", "result": result},
        **kw,
    )


def first_run():
    return [
        rec("phase_start", "r1", hosts=["ws01", "ws02"]),
        rec("unreachable", "r1", "laptop", reason="preflight: container offboard-lab-laptop01 is exited"),
        item("r1", "ws01", "ninjaone"),
        item("r1", "ws01", "teamviewer", action="none", result="verified_absent"),
        item("r1", "ws02", "ninjaone"),
        rec("phase_end", "r1", "ws01", outcome="ok"),
        rec("phase_end", "r1", "ws02", outcome="ok"),
    ]


def test_offline_host_is_pending_with_time_and_reason_the_rest_removed():
    ledger = Ledger("lab").fold(first_run())
    pending = ledger.pending()
    assert [(p["host"], p["phase"], p["state"]) for p in pending] == [("laptop", "agents", "unreachable")]
    assert pending[0]["since"] == "r1-t" and "exited" in pending[0]["reason"]
    states = {(r["host"], r["item"]): r["state"] for r in ledger.rows()}
    assert states[("ws01", "ninjaone")] == "removed"
    assert states[("ws01", "teamviewer")] == "absent"
    assert ledger.exit_code() == 75
    assert ledger.outstanding() == {"laptop": {"agents"}}


def test_a_successful_retry_clears_the_pending_host():
    retry = [
        rec("phase_start", "r2", hosts=["laptop"]),
        item("r2", "laptop", "ninjaone"),
        rec("phase_end", "r2", "laptop", outcome="ok"),
    ]
    ledger = Ledger("lab").fold(first_run() + retry)
    assert ledger.pending() == []
    assert ledger.exit_code() == 0


def test_a_run_killed_mid_phase_leaves_unfinished_hosts_pending():
    killed = [rec("phase_start", "r2", hosts=["ws01", "ws02"]), item("r2", "ws01", "datto")]
    ledger = Ledger("lab").fold(first_run() + killed)
    todo = ledger.outstanding()
    assert todo["ws01"] == {"agents"} and todo["ws02"] == {"agents"}
    # What the killed run did record is kept; what earlier runs removed stays removed.
    states = {(r["host"], r["item"]): r["state"] for r in ledger.rows()}
    assert states[("ws01", "datto")] == "removed" and states[("ws02", "ninjaone")] == "removed"
    assert ledger.exit_code() == 75


def test_failed_items_make_the_exit_code_an_error_and_stay_outstanding():
    failed = [
        rec("phase_start", "r2", hosts=["ws02"]),
        item("r2", "ws02", "datto", action="failed", result="still_present", error="uninstaller exit 1603"),
        rec("phase_end", "r2", "ws02", outcome="ok"),
    ]
    ledger = Ledger("lab").fold(first_run() + failed)
    assert "ws02" in ledger.outstanding()
    assert ledger.exit_code() == 1
    assert any(r["reason"] == "uninstaller exit 1603" for r in ledger.rows())


def test_rehearsal_records_change_nothing():
    rehearsal = [
        rec("phase_start", "r2", hosts=["laptop"], check_mode=True),
        item("r2", "laptop", "ninjaone", action="would_remove", check_mode=True),
        rec("phase_end", "r2", "laptop", outcome="ok", check_mode=True),
    ]
    ledger = Ledger("lab").fold(first_run() + rehearsal)
    assert ledger.outstanding() == {"laptop": {"agents"}}
    assert ledger.rehearsal_records == 3


def test_removed_but_not_verified_is_not_done():
    records = [
        rec("phase_start", "r1", hosts=["ws01"]),
        item("r1", "ws01", "ninjaone", result="not_verified"),
        rec("phase_end", "r1", "ws01", outcome="ok"),
    ]
    ledger = Ledger("lab").fold(records)
    assert ledger.exit_code() == 1


def test_a_refused_step_stays_outstanding_with_its_reason_until_a_later_run_does_it():
    guard = "replacement coverage not confirmed: set offboard_security.replacement_confirmed"
    refused = [
        rec("phase_start", "r1", hosts=["ws01"]),
        item("r1", "ws01", "sentinelone", action="refused", result="not_verified", error=guard),
        rec("phase_end", "r1", "ws01", outcome="ok"),
    ]
    ledger = Ledger("lab").fold(refused)
    states = {(r["host"], r["item"]): (r["state"], r["reason"]) for r in ledger.rows()}
    assert states[("ws01", "sentinelone")] == ("pending", guard)
    assert ledger.outstanding() == {"ws01": {"agents"}} and ledger.exit_code() == 75

    done = [
        rec("phase_start", "r2", hosts=["ws01"]),
        item("r2", "ws01", "sentinelone"),
        rec("phase_end", "r2", "ws01", outcome="ok"),
    ]
    assert Ledger("lab").fold(refused + done).exit_code() == 0


def test_login_refused_and_export_equal_count_as_verified_done():
    rows = [
        rec("phase_start", "r1", hosts=["ws01"], phase="access"),
        item("r1", "ws01", "msp-admin", action="disabled", result="verified_refused", phase="access"),
        item("r1", "ws01", "zone lab.test", action="exported", result="verified_equal", phase="access"),
        rec("phase_end", "r1", "ws01", outcome="ok", phase="access"),
    ]
    ledger = Ledger("lab").fold(rows)
    assert {r["state"] for r in ledger.rows()} == {"removed"} and ledger.exit_code() == 0
