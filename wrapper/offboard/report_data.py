"""The data of `offboard report`: what the report shows, collected from a client's sealed evidence.

Every certificate line keeps the run, line number and sha256 of the records.jsonl line it comes from;
the evidence check (chain, files, signatures) is run here too, so the report states it at generation.
Rendering is report_html.py; the command and the PDF are report.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offboard import ledger, manifest, signing
from offboard.evidence import RECORDS, EvidenceStore, RunMetadata, active_runs, read_metadata

GENERATOR = "offboard report"
_MAX = 240  # characters of one shown value; the record itself is in the evidence, in full


# --- the data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordRef:
    run_id: str
    line: int  # 1-based line number in <run>/records.jsonl
    sha256: str  # of that line's bytes including its newline: `sed -n 'Np' records.jsonl | sha256sum`


@dataclass
class CertLine:
    phase: str
    component: str
    item: str
    state: str  # the ledger's: removed | absent | failed | pending | unreachable (+ refused)
    found: str
    action: str
    method: str
    verification: str
    result: str
    when: str
    operator: str
    tool: str
    reason: str
    ref: RecordRef


@dataclass
class Outstanding:
    host: str
    phase: str
    state: str
    since: str
    run_id: str
    reason: str
    ref: RecordRef | None = None


@dataclass
class Device:
    host: str
    status: str  # clean | pending | failed | no evidence
    lines: list[CertLine] = field(default_factory=list)
    outstanding: list[Outstanding] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


@dataclass
class StepRow:
    id: str
    title: str
    phase: str
    owner: str
    due: str
    status: str
    evidence: str


@dataclass
class ReportData:
    client: str
    generated_at: str
    generator: str
    head: str
    verify_ok: bool
    verify_summary: str
    verify_problems: list[str]
    signature_lines: list[str]
    runs: list[RunMetadata]
    phases: list[dict[str, Any]]
    outstanding: list[Outstanding]
    steps: list[StepRow]
    steps_note: str
    devices: list[Device]


# --- collecting --------------------------------------------------------------------------------
def iter_lines(run_dir: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, sha256 of the line, record) of every whole, parseable line of a run's records."""
    try:
        handle = (run_dir / RECORDS).open("rb")
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                break
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield number, hashlib.sha256(raw).hexdigest(), data


def tool_text(meta: RunMetadata | None) -> str:
    """The tool versions a run names: offboard, ansible-core, and the commit it ran from."""
    if meta is None:
        return ""
    v = meta.versions or {}
    parts = [f"offboard {v.get('offboard') or '?'}", f"ansible-core {v.get('ansible_core') or '?'}"]
    commit = (meta.repository or {}).get("commit")
    if commit:
        parts.append(f"commit {commit[:12]}{' (modified)' if meta.repository.get('dirty') else ''}")
    return ", ".join(parts)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"


def _names(values: Any) -> list[str]:
    out = []
    for v in values if isinstance(values, list) else []:
        if isinstance(v, Mapping):
            name = v.get("name") or v.get("path") or v.get("id") or _short(v)
            version = v.get("version")
            out.append(f"{name} {version}" if version else str(name))
        else:
            out.append(str(v))
    return list(dict.fromkeys(out))


def found_text(before: Mapping[str, Any]) -> str:
    """What discovery found, in one line: found or not, then every list it names."""
    if not before:
        return ""
    parts = []
    if "found" in before:
        parts.append("found" if before.get("found") else "nothing found")
    for key, value in before.items():
        if isinstance(value, list) and value:
            parts.append(f"{key}: {', '.join(_names(value))}")
        elif key in ("version", "uninstaller", "path", "zone", "account", "user", "name") and value:
            parts.append(f"{key}: {value}")
    return _short("; ".join(parts))


def method_text(record: Mapping[str, Any]) -> str:
    """How it was done: the record's own method when it names one, else what its `after` shows."""
    after = record.get("after") or {}
    before = record.get("before") or {}
    if not isinstance(after, Mapping):
        return ""
    for key in ("method", "removal_method", "how"):
        if after.get(key):
            return _short(after[key])
    parts = []
    if "uninstaller_rc" in after:
        parts.append(
            f"vendor uninstaller {before.get('uninstaller') or ''} (rc {after['uninstaller_rc']})".strip()
        )
    removed = after.get("removed")
    if isinstance(removed, Mapping) and any(removed.values()):
        parts.append("forced cleanup of " + ", ".join(k for k, v in removed.items() if v))
    if record.get("export"):
        parts.append(f"exported to {record['export'].get('path')}")
    if not parts and record.get("action") in ("removed", "rotated", "disabled", "reset", "handed_over"):
        parts.append(str(record.get("task") or record.get("action")))
    return _short("; ".join(parts))


def collect(store: EvidenceStore, client: str, hosts: Iterable[str] = ()) -> ReportData:
    """Everything the report shows, from the client's sealed runs and a verify pass over them."""
    client_dir = store.client_dir(client)
    run_ids = store.run_ids(client)
    metas: dict[str, RunMetadata] = {}
    latest: dict[tuple[str, str, str, str], tuple[dict[str, Any], RecordRef]] = {}
    events: dict[tuple[str, str], RecordRef] = {}  # (host, phase) -> the record that set its status
    folded = ledger.Ledger(client)

    def stream() -> Iterator[dict[str, Any]]:
        for run_id in run_ids:
            meta = read_metadata(client_dir / run_id)
            if meta is not None:
                metas[run_id] = meta
            for number, digest, rec in iter_lines(client_dir / run_id):
                ref = RecordRef(run_id, number, digest)
                if not rec.get("check_mode"):
                    key = (rec.get("host", ""), rec.get("phase", ""))
                    if rec.get("kind") == "item":
                        latest[(*key, rec.get("component", ""), rec.get("item", ""))] = (rec, ref)
                    elif rec.get("kind") in ("unreachable", "phase_end"):
                        events[key] = ref
                    elif rec.get("kind") == "phase_start":
                        for host in rec.get("hosts") or ():
                            events[(host, rec.get("phase", ""))] = ref
                yield rec

    folded.fold(stream())
    report = manifest.VerifyReport(client)
    if client_dir.is_dir():
        manifest.verify_chain(client_dir, run_ids, active_runs(store, client), report)
    sigs = signing.verify_runs(client_dir, run_ids, signing.config_for(client, client_dir))
    problems = [str(p) for p in report.problems] + [f"{p}: {w}" for p, w in sigs.problems]
    head = manifest.read_head(client_dir) if (client_dir / manifest.HEAD).is_file() else None

    devices: dict[str, Device] = {h: Device(h, "no evidence") for h in hosts}
    for (host, phase, component, item), (rec, ref) in sorted(latest.items()):
        entry = folded.host_phases.get((host, phase))
        e = entry.items.get((component, item)) if entry else None
        state = e.state if e else ""
        if rec.get("action") == "refused":
            state = "refused"
        meta = metas.get(ref.run_id)
        verification = rec.get("verification") or {}
        line = CertLine(
            phase=phase,
            component=component,
            item=item,
            state=state,
            found=found_text(rec.get("before") or {}),
            action=str(rec.get("action", "")),
            method=method_text(rec),
            verification=_short(verification.get("method", "")),
            result=str(verification.get("result", "")),
            when=str(rec.get("recorded_at", "")),
            operator=meta.operator if meta else "",
            tool=tool_text(meta),
            reason=_short(rec.get("error") or (e.reason if e else "")),
            ref=ref,
        )
        devices.setdefault(host, Device(host, "no evidence")).lines.append(line)
    outstanding = []
    for p in folded.pending():
        hp = folded.host_phases[(p["host"], p["phase"])]
        state = p["state"]
        if any(e.action == "refused" for e in hp.items.values()) and state == ledger.PENDING:
            state = "refused"
        out = Outstanding(
            p["host"],
            p["phase"],
            state,
            p["since"],
            p["run_id"],
            _short(p["reason"]),
            events.get((p["host"], p["phase"])),
        )
        outstanding.append(out)
        devices.setdefault(p["host"], Device(p["host"], "no evidence")).outstanding.append(out)
    for (host, _phase), hp in folded.host_phases.items():
        dev = devices.setdefault(host, Device(host, "no evidence"))
        worst = hp.worst()
        rank = {"no evidence": 0, "clean": 1, "pending": 2, "failed": 3}
        status = {ledger.OK: "clean", ledger.FAILED: "failed"}.get(worst, "pending")
        if rank[status] > rank[dev.status]:
            dev.status = status
    for dev in devices.values():
        dev.runs = sorted({ln.ref.run_id for ln in dev.lines} | {o.run_id for o in dev.outstanding})
    steps, steps_note = checklist_rows(store, client, folded, list(devices))
    sig_lines = [
        f"{r.run_id}: {r.state}"
        + (f" by {r.principal}" if r.principal else "")
        + (f", time-stamped {r.timestamp}" if r.timestamp else "")
        + (f" ({r.detail})" if r.detail else "")
        for r in sigs.runs
    ]
    if sigs.count("unchecked"):
        sig_lines.append("signatures present but not checked: no allowed_signers configured for this client")
    return ReportData(
        client=client,
        generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        generator=f"{GENERATOR} ({tool_text(metas.get(run_ids[-1])) if run_ids else 'offboard'})",
        head=f"{head[0]} ({head[1]}/{manifest.MANIFEST})" if head else "none (no sealed run)",
        verify_ok=report.ok and not sigs.problems and bool(run_ids),
        verify_summary=(
            f"{report.runs_checked} run(s), {report.files_checked} file(s) re-hashed; chain from HEAD "
            + ("intact" if report.ok else "BROKEN")
            + f"; signatures: {sigs.count('signed')} good, {len(sigs.problems)} bad or missing, "
            f"{sigs.count('unsigned')} unsigned"
        ),
        verify_problems=problems,
        signature_lines=sig_lines,
        runs=[metas[r] for r in run_ids if r in metas],
        phases=phase_summary(folded),
        outstanding=outstanding,
        steps=steps,
        steps_note=steps_note,
        devices=sorted(devices.values(), key=lambda d: d.host),
    )


def phase_summary(folded: ledger.Ledger) -> list[dict[str, Any]]:
    """Per phase: devices and item counts by state, refused counted apart from pending."""
    out: dict[str, dict[str, Any]] = {}
    for (host, phase), hp in sorted(folded.host_phases.items()):
        row = out.setdefault(
            phase,
            {
                "phase": phase,
                "devices": set(),
                "clean": set(),
                **dict.fromkeys(("removed", "absent", "refused", "pending", "unreachable", "failed"), 0),
            },
        )
        row["devices"].add(host)
        if not hp.outstanding():
            row["clean"].add(host)
        if hp.status == ledger.UNREACHABLE:
            row["unreachable"] += 1
        elif hp.status == ledger.FAILED and not hp.items:
            row["failed"] += 1
        elif hp.status == ledger.PENDING and not hp.items:
            row["pending"] += 1
        for e in hp.items.values():
            key = "refused" if e.action == "refused" else e.state
            row[key] = row.get(key, 0) + 1
    return [{**r, "devices": len(r["devices"]), "clean": len(r["clean"])} for r in out.values()]


def checklist_rows(
    store: EvidenceStore, client: str, folded: ledger.Ledger, hosts: list[str]
) -> tuple[list[StepRow], str]:
    """The checklist's steps with their state; without a plan, the steps and what the evidence says."""
    try:
        from offboard import checklist, paths
        from offboard import plan as planlib

        project = paths.project_root()
        process = planlib.load_process()
        hist = checklist.read_history(store, client)
    except Exception as exc:  # the checklist is optional for a report; say why it is missing
        return [], f"checklist not available: {exc}"
    phase_names = {p.id: p.name for p in process.phases.values()} if isinstance(process.phases, dict) else {}
    if hist.plan is not None:
        try:
            cvars = checklist.load_client_vars(client, project)
            today = planlib.now().date()
            ctx = checklist.Context(client, process, hist, hosts, cvars, today)
            return [
                StepRow(
                    s.id,
                    s.title,
                    phase_names.get(s.phase, str(s.phase)),
                    f"{s.owner} ({s.role})",
                    s.due.isoformat(),
                    s.status(today),
                    s.evidence,
                )
                for s in checklist.step_states(ctx)
            ], f"plan from run {hist.plan_run}"
        except Exception as exc:
            note = f"plan could not be evaluated ({exc}); steps listed from the process"
    else:
        note = f"no plan yet (`offboard start {client}` makes one): steps listed with what the evidence says"
    rows = []
    for step in process.steps:
        evidence, status = "", "not planned"
        if step.evidence is not None:
            view = checklist.evidence_view(step, folded, hosts)
            if view.has_evidence:
                total = len(view.clean) + len(view.outstanding) + len(view.missing)
                evidence = f"{len(view.clean)}/{total} devices clean"
                if view.outstanding:
                    evidence += "; pending: " + "; ".join(view.outstanding)
                status = "done" if not view.outstanding and not view.missing else "pending"
        rows.append(
            StepRow(
                step.id,
                step.title,
                phase_names.get(step.phase, str(step.phase)),
                step.owner,
                "",
                status,
                evidence,
            )
        )
    return rows, note
