"""The summary table of one run: per targeted host its outcome and what was removed, found absent or failed,
from the run's stats, its preflight and its records (what `offboard run` and `retry` print and return)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from offboard import evidence
from offboard.ledger import item_state
from offboard.records import iter_records

if TYPE_CHECKING:
    from offboard.runner import RunResult


def summary_headers(result: RunResult) -> list[str]:
    """Column names for host_summary(): a rehearsal counts what it would remove."""
    done = "WOULD REMOVE" if result.metadata.check_mode else "REMOVED"
    return ["HOST", "OUTCOME", done, "ABSENT", "FAILED", "NOTE"]


def host_summary(result: RunResult) -> list[tuple[str, str, int, int, int, str]]:
    """(host, outcome, removed, absent, failed items, note) per targeted host, from stats and records.

    In a rehearsal the "removed" column counts items the run would remove (would_remove records).
    """
    stats = result.stats or {}
    counts: dict[str, dict[str, int]] = {}
    for record in iter_records(result.run_dir / evidence.RECORDS):
        if record.kind != "item":
            continue
        c = counts.setdefault(record.host, {"removed": 0, "absent": 0, "failed": 0})
        state, _ = item_state(record)
        if str(record.action).startswith("would_"):
            state = "removed"
        if state in c:
            c[state] += 1
    rows = []
    for host in result.metadata.hosts:
        pre = result.preflight.get(host)
        c = counts.get(host, {"removed": 0, "absent": 0, "failed": 0})
        if pre and not pre.usable:
            outcome, note = pre.state, pre.reason
        elif (stats.get("dark") or {}).get(host):
            outcome, note = "unreachable", ""
        elif (stats.get("failures") or {}).get(host):
            outcome, note = "failed", ""
        elif result.stats is None:
            outcome, note = "incomplete", "run ended early"
        elif host in (stats.get("processed") or {}):
            outcome, note = "ok", ""
        else:
            outcome, note = "not run", ""
        rows.append((host, outcome, c["removed"], c["absent"], c["failed"], note))
    return rows
