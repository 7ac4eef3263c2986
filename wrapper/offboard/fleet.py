"""`offboard status --all`: every client at a glance: per phase done/pending/failed, the oldest pending item.

Clients are the union of the evidence store's client folders and the inventories (a client with an
inventory but no run yet is listed as such). Each client's ledger is folded from its own records.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from offboard import jsonout, ledger
from offboard.errors import EXIT_ERROR, EXIT_OK, EXIT_PENDING
from offboard.evidence import EvidenceStore
from offboard.progress import write_table
from offboard.records import PHASES


@dataclass
class ClientStatus:
    client: str
    runs: int
    phases: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> done/pending/failed
    oldest_pending: dict[str, Any] | None = None
    exit_code: int = 0


def clients(store: EvidenceStore, inventories: Path | None) -> list[str]:
    names: set[str] = set()
    for base in (store.root, inventories):
        if base is not None and base.is_dir():
            names |= {e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith(".")}
    return sorted(names)


def client_status(store: EvidenceStore, client: str) -> ClientStatus:
    folded = ledger.Ledger(client).fold(store.iter_client_records(client))
    status = ClientStatus(client, len(store.run_ids(client)), exit_code=folded.exit_code())
    for (_host, phase), hp in folded.host_phases.items():
        counts = status.phases.setdefault(phase, {"done": 0, "pending": 0, "failed": 0})
        worst = hp.worst()
        key = "done" if worst == ledger.OK else "failed" if worst == ledger.FAILED else "pending"
        counts[key] += 1
    pending = [p for p in folded.pending() if p["state"] != ledger.FAILED] or folded.pending()
    if pending:
        oldest = min(pending, key=lambda p: p["since"] or "~")
        status.oldest_pending = {k: oldest[k] for k in ("host", "phase", "state", "since", "reason")}
    return status


def fleet(store: EvidenceStore, inventories: Path | None) -> list[ClientStatus]:
    return [client_status(store, c) for c in clients(store, inventories)]


def print_fleet(rows: list[ClientStatus], as_json: bool, out: TextIO | None = None) -> int:
    """Print the fleet; returns the worst exit code (1 failed somewhere, 75 pending somewhere, else 0)."""
    out = out or sys.stdout
    codes = {r.exit_code for r in rows}
    worst = EXIT_ERROR if EXIT_ERROR in codes else EXIT_PENDING if EXIT_PENDING in codes else EXIT_OK
    if as_json:
        return jsonout.emit("status", worst, {"scope": "all", "clients": [asdict(r) for r in rows]}, out)
    phases = [p for p in PHASES if any(p in r.phases for r in rows)]
    headers = ["CLIENT", "RUNS", *(f"{p.upper()} done/pend/fail" for p in phases), "OLDEST PENDING"]
    body = []
    for r in rows:
        cells = [r.client, str(r.runs)]
        for p in phases:
            c = r.phases.get(p)
            cells.append(f"{c['done']}/{c['pending']}/{c['failed']}" if c else "-")
        o = r.oldest_pending
        if o:
            cells.append(f"{o['host']} {o['phase']} {o['state']} since {o['since']}: {o['reason']}"[:160])
        else:
            cells.append("no evidence yet" if not r.runs else "-")
        body.append(cells)
    write_table(out, headers, body)
    out.write("counts are device-phases; done = finished with nothing outstanding\n")
    return worst
