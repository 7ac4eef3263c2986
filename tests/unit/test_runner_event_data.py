"""The wrapper keeps only the event data it reads (issue 18): records come from the evidence callback, so an
event's payload is dropped except a failure's result (its reason is shown) and the final stats."""

from __future__ import annotations

import io

from offboard.progress import Progress
from offboard.runner import slim_event


def test_an_ok_event_keeps_host_and_task_but_not_its_result():
    event = {
        "event": "runner_on_ok",
        "uuid": "u1",
        "counter": 7,
        "stdout": "ok: [ws01]",
        "event_data": {"host": "ws01", "task": "probe", "res": {"big": "x" * 10_000}, "task_args": "a=b"},
    }
    slim = slim_event(event)
    assert slim["event_data"] == {"host": "ws01", "task": "probe"}
    assert (slim["uuid"], slim["counter"], slim["stdout"]) == ("u1", 7, "ok: [ws01]")
    assert "res" in event["event_data"], "the caller's event is not changed"


def test_a_failure_keeps_its_reason_and_the_stats_stay_whole():
    failed = {
        "event": "runner_on_failed",
        "event_data": {"host": "ws01", "task": "remove", "res": {"msg": "the uninstaller\nexited 3"}},
    }
    stats = {"event": "playbook_on_stats", "event_data": {"ok": {"ws01": 3}, "failures": {"ws01": 1}}}
    out = io.StringIO()
    progress = Progress(["ws01"], out=out)
    for event in (failed, stats):
        progress.handle(slim_event(event))
    assert "FAILED ws01: " in out.getvalue() and "exited 3" in out.getvalue()
    assert progress.stats is not None and progress.stats["failures"] == {"ws01": 1}
    assert slim_event(stats) is stats
