"""What the checklist reads from and writes to the evidence store: its runs and their records."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offboard import ledger, paths
from offboard import plan as planlib
from offboard.evidence import STATUS_COMPLETE, EvidenceStore, Run
from offboard.fsutil import open_private
from offboard.records import CHECKLIST_KINDS, ChecklistRecord, Record

CHECKLIST_LOCK = ".checklist.lock"


def store(evidence_dir: Path | None = None) -> EvidenceStore:
    """The evidence store: --evidence-dir, else $OFFBOARD_EVIDENCE_DIR or <project>/evidence."""
    return EvidenceStore(evidence_dir.resolve() if evidence_dir else paths.evidence_root())


def write_run(
    evidence: EvidenceStore,
    client: str,
    command: str,
    records: Iterable[Mapping[str, Any]],
    files: Mapping[str, Path | str] | None = None,
    at: dt.datetime | None = None,
) -> Path:
    """One sealed run folder holding checklist records (and files), chained like every other run.

    Each record is a mapping with `kind` and the kind's fields, written as a records.ChecklistRecord (the
    checklist's kinds) or records.Record (the others), checked against docs/record.schema.json."""
    os.umask(0o077)
    started = planlib.iso_utc(at or planlib.now())
    run = Run.open(evidence, client, source="checklist", command=command, started_at=started)
    for rel, src in (files or {}).items():
        dest = run.dir / rel
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copyfile(src, dest)
        else:
            with open_private(dest, "w") as handle:
                handle.write(src)
    with run.records() as writer:
        for rec in records:
            if rec.get("kind") in CHECKLIST_KINDS:
                writer.write(ChecklistRecord.from_dict(rec, run.run_id, client, started))
            else:  # a run's own kinds (item, phase_end...), as tests and imports of old runs write them
                envelope = {"run_id": run.run_id, "client": client, "recorded_at": started}
                writer.write(Record.from_dict({**envelope, **rec}))
    run.finish(STATUS_COMPLETE, exit_code=0, ended_at=started).seal()
    return run.dir


@dataclass
class History:
    """What the checklist runs recorded for one client: the newest plan, attestations, messages."""

    plan: dict[str, Any] | None = None
    plan_run: str = ""
    attestations: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    psa_updates: list[dict[str, Any]] = field(default_factory=list)  # status posted back to the PSA
    ledger: ledger.Ledger | None = None


def read_history(evidence: EvidenceStore, client: str) -> History:
    """One pass over the client's records: checklist records collected, Ansible records folded."""
    hist = History()
    hist.ledger = ledger.Ledger(client)

    def ansible_records(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for r in records:
            kind = r.get("kind")
            if kind == "plan":
                hist.plan, hist.plan_run = r.get("plan"), r.get("run_id", "")
                hist.attestations, hist.notifications, hist.psa_updates = [], [], []  # a new plan starts over
            elif kind == "attestation":
                hist.attestations.append(r)
            elif kind == "notification":
                hist.notifications.append(r)
            elif kind == "psa_update":
                hist.psa_updates.append(r)
            else:
                yield r

    hist.ledger.fold(ansible_records(evidence.iter_client_records(client)))
    return hist


def delivered(notification: Mapping[str, Any]) -> bool:
    """A notification record that reached its person on at least one channel."""
    return any(str(v).startswith("ok") for v in (notification.get("channels") or {}).values())
