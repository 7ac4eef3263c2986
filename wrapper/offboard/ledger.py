"""The ledger: what is done and what is outstanding, folded from every run's records in time order.

Never stored: re-derived from the evidence on every call, so a crashed run cannot leave it wrong.
States per (host, phase, component, item): removed | absent | failed | unreachable | pending.
Per (host, phase) the ledger also keeps whether the phase finished for that host (phase_end ok) or
not (unreachable, failed, or started but never finished: pending). Check-mode (rehearsal) records
are not folded: a rehearsal changes nothing, so it cannot make anything done or outstanding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from offboard.records import Record
from offboard.vocabulary import DONE_ACTIONS

REMOVED, ABSENT, FAILED, UNREACHABLE, PENDING, OK = (
    "removed",
    "absent",
    "failed",
    "unreachable",
    "pending",
    "ok",
)
STATES = (REMOVED, ABSENT, FAILED, UNREACHABLE, PENDING)
_VERIFIED = ("verified_absent", "verified_changed", "verified_refused", "verified_equal")


@dataclass
class Entry:
    state: str
    run_id: str
    at: str
    reason: str = ""
    action: str = ""


@dataclass
class HostPhase:
    status: str  # ok | failed | unreachable | pending
    run_id: str
    at: str
    reason: str = ""
    items: dict[tuple[str, str], Entry] = field(default_factory=dict)

    def outstanding(self) -> bool:
        return self.status != OK or any(
            e.state in (FAILED, PENDING, UNREACHABLE) for e in self.items.values()
        )

    def worst(self) -> str:
        """The state that sums the host-phase up: failed > unreachable > pending > done."""
        states = {e.state for e in self.items.values()}
        if self.status == FAILED or FAILED in states:
            return FAILED
        if self.status == UNREACHABLE or UNREACHABLE in states:
            return UNREACHABLE
        if self.status == PENDING or PENDING in states:
            return PENDING
        return OK


def item_state(record: Record | Mapping[str, Any]) -> tuple[str, str]:
    """(state, reason) of one item record (a Record or its dict form)."""
    data = record if isinstance(record, Mapping) else record.__dict__
    action = data.get("action", "")
    result = (data.get("verification") or {}).get("result", "not_verified")
    error = data.get("error") or ""
    if action == "failed" or result == "still_present":
        return FAILED, error or ("still present after removal" if result == "still_present" else "")
    if action in DONE_ACTIONS:
        if result in _VERIFIED:
            return REMOVED, ""
        return FAILED, error or f"{action} but not verified"
    if action == "none":
        return ABSENT, ""
    if action == "refused":
        # A guarded step the role would not take (e.g. EDR without confirmed replacement coverage,
        # revocation before the agreed date): outstanding until a later run does it.
        return PENDING, error or "refused by a guard"
    return PENDING, f"rehearsal: {action}"


class Ledger:
    def __init__(self, client: str) -> None:
        self.client = client
        self.host_phases: dict[tuple[str, str], HostPhase] = {}
        self.runs: list[str] = []
        self.rehearsal_records = 0

    def _hp(self, host: str, phase: str, run_id: str, at: str, status: str, reason: str = "") -> HostPhase:
        hp = self.host_phases.get((host, phase))
        if hp is None:
            hp = self.host_phases[(host, phase)] = HostPhase(status, run_id, at, reason)
        else:
            hp.status, hp.run_id, hp.at, hp.reason = status, run_id, at, reason
        return hp

    def fold(self, records: Iterable[Record | Mapping[str, Any]]) -> Ledger:
        """Fold records (Record objects or their dict form) in time order; streams, keeps only state."""
        last_run = None
        for record in records:
            r = record if isinstance(record, Mapping) else record.__dict__
            run_id = r.get("run_id", "")
            if run_id != last_run:
                last_run = run_id
                self.runs.append(run_id)
            if r.get("check_mode"):
                self.rehearsal_records += 1
                continue
            kind, phase, at = r.get("kind"), r.get("phase", ""), r.get("recorded_at", "")
            if kind == "item":
                state, reason = item_state(r)
                host = r.get("host", "")
                hp = self.host_phases.get((host, phase))
                if hp is None:
                    hp = self._hp(
                        host,
                        phase,
                        run_id,
                        at,
                        PENDING,
                        f"run {run_id} ended before this host finished the phase",
                    )
                hp.items[(r.get("component", ""), r.get("item", ""))] = Entry(
                    state, run_id, at, reason, r.get("action", "")
                )
            elif kind == "phase_start":
                why = f"run {run_id} ended before this host finished the phase"
                hosts = r.get("hosts")
                # A string is not a host list ("abc" is not hosts a, b, c): the schema refuses it on read.
                for host in hosts if isinstance(hosts, list) else ():
                    if isinstance(host, str) and host:
                        self._hp(host, phase, run_id, at, PENDING, why)
            elif kind == "unreachable":
                self._hp(r.get("host", ""), phase, run_id, at, UNREACHABLE, r.get("reason", ""))
            elif kind == "phase_end":
                outcome = r.get("outcome")
                status = outcome if outcome in (OK, FAILED, UNREACHABLE) else PENDING
                current = self.host_phases.get((r.get("host", ""), phase))
                reason = r.get("reason", "")
                if status == UNREACHABLE and current and current.status == UNREACHABLE and not reason:
                    reason, at = current.reason, current.at  # keep the reason and time of the event
                self._hp(r.get("host", ""), phase, run_id, at, status, reason)
        return self

    # --- views -------------------------------------------------------------------------------
    def phases_run(self) -> set[str]:
        """Phases some (non-rehearsal) run started or finished for at least one host."""
        return {phase for (_, phase) in self.host_phases}

    def outstanding(self) -> dict[str, set[str]]:
        """Host -> phases still to do (unreachable, failed, pending, or with such items)."""
        todo: dict[str, set[str]] = {}
        for (host, phase), hp in self.host_phases.items():
            if hp.outstanding():
                todo.setdefault(host, set()).add(phase)
        return todo

    def exit_code(self, hosts: set[str] | None = None) -> int:
        """0 nothing outstanding, 1 something failed (a person must look), 75 devices still pending."""
        worst = {hp.worst() for (host, _), hp in self.host_phases.items() if hosts is None or host in hosts}
        if FAILED in worst:
            return 1
        if worst & {UNREACHABLE, PENDING}:
            return 75
        return 0

    def counts(self) -> dict[str, int]:
        """Rows per state: the same rows the status table shows, so the totals match what is listed
        (an unreachable host-phase counts even when earlier runs left item rows for it)."""
        counts = dict.fromkeys(STATES, 0)
        for row in self.rows():
            counts[row["state"]] += 1
        return counts

    def rows(self) -> Iterator[dict[str, Any]]:
        """One row per (host, phase, component, item); host-phases without items get one '*' row."""
        for (host, phase), hp in sorted(self.host_phases.items()):
            if hp.status != OK or not hp.items:
                state = hp.status if hp.status != OK else ABSENT
                yield {
                    "host": host,
                    "phase": phase,
                    "component": "*",
                    "item": "*",
                    "state": state,
                    "at": hp.at,
                    "run_id": hp.run_id,
                    "reason": hp.reason,
                }
            for (component, item), entry in sorted(hp.items.items()):
                yield {
                    "host": host,
                    "phase": phase,
                    "component": component,
                    "item": item,
                    "state": entry.state,
                    "at": entry.at,
                    "run_id": entry.run_id,
                    "reason": entry.reason,
                    "action": entry.action,
                }

    def host_summary(self) -> list[dict[str, Any]]:
        """One row per host for `offboard status`: its rows counted as done (removed, absent), pending
        (pending, unreachable) or failed, and when the host was last seen in a run (the newest time)."""
        hosts: dict[str, dict[str, Any]] = {}
        for row in self.rows():
            summary = hosts.setdefault(
                row["host"], {"host": row["host"], "done": 0, "pending": 0, "failed": 0}
            )
            state = row["state"]
            key = "done" if state in (REMOVED, ABSENT) else "failed" if state == FAILED else "pending"
            summary[key] += 1
            summary["last_seen"] = max(summary.get("last_seen") or "", row["at"] or "")
        return [hosts[h] for h in sorted(hosts)]

    def pending(self) -> list[dict[str, Any]]:
        """The pending list: one entry per outstanding (host, phase), with state, time and reason."""
        out = []
        for (host, phase), hp in sorted(self.host_phases.items()):
            if not hp.outstanding():
                continue
            bad = [
                f"{c}/{i}: {e.state}"
                for (c, i), e in sorted(hp.items.items())
                if e.state in (FAILED, PENDING, UNREACHABLE)
            ]
            reason = hp.reason if hp.status != OK else "; ".join(bad)
            out.append(
                {
                    "host": host,
                    "phase": phase,
                    "state": hp.worst(),
                    "since": hp.at,
                    "run_id": hp.run_id,
                    "reason": reason,
                    "items": bad,
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "runs": len(set(self.runs)),
            "counts": self.counts(),
            "exit_code": self.exit_code(),
            "pending": self.pending(),
            "rows": list(self.rows()),
        }
