"""`offboard report CLIENT`: one self-contained HTML file a reviewer reads, and a PDF of it.

What it holds, all derived from the sealed evidence (never from anything else):
  - the evidence check at generation time (chain, files, signatures);
  - a summary per phase and per checklist step: pending, failed and refused as plain as done;
  - per device a certificate of removal with the fields of NIST SP 800-88's certificate of sanitization
    (device, what was found, what was done, method, how verified and result, when, run, by whom, tool
    version); every line carries the sha256 of the records.jsonl line it comes from and that run's id;
  - how to check all of it without this tool.
Every value from a record is escaped: records may hold hostile strings (a file name, a service name).
The HTML loads nothing (no scripts, styles, fonts or images from anywhere); the PDF is Chromium's print.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
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


def _tool(meta: RunMetadata | None) -> str:
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
            tool=_tool(meta),
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
        generator=f"{GENERATOR} ({_tool(metas.get(run_ids[-1])) if run_ids else 'offboard'})",
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


# --- rendering ----------------------------------------------------------------------------------
def e(value: Any) -> str:
    """Escape for HTML text and attribute values alike."""
    return html.escape("" if value is None else str(value), quote=True)


_CSS = """
@page { size: A4 landscape; margin: 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 10.5px; color: #111;
       print-color-adjust: exact; -webkit-print-color-adjust: exact;
       margin: 0 auto; max-width: 1400px; padding: 16px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 22px 0 6px; border-bottom: 2px solid #1f4e79; }
h3 { font-size: 13px; margin: 16px 0 4px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 10px; table-layout: auto; }
th, td { border: 1px solid #999; padding: 3px 5px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #1f4e79; color: #fff; font-weight: 600; }
table.kv th { width: 16em; background: #dde6f0; color: #111; }
#device-table th { background: #14365a; }  /* its own shade: the screenshot test finds the table by it */
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 9.5px; }
.hash { font-family: "DejaVu Sans Mono", monospace; font-size: 8.5px; color: #333; word-break: break-all; }
td.nowrap, .nowrap { white-space: nowrap; }
table.lines tr.ref td { border-top: none; color: #444; font-size: 9px; padding-top: 0; padding-left: 18px; }
table.lines tr:not(.ref) td { border-bottom: none; }
h4 { font-size: 11.5px; margin: 10px 0 2px; }
.state { font-weight: 700; padding: 1px 4px; border-radius: 3px; white-space: nowrap; }
.s-clean, .s-removed, .s-absent, .s-done, .s-ok, .s-signed { background: #d7f0d8; color: #0b4d12; }
.s-pending, .s-unreachable, .s-refused, .s-open, .s-not-planned, .s-unsigned, .s-no-evidence, .s-unchecked
  { background: #fff1c2; color: #6b4a00; }
.s-failed, .s-bad, .s-missing, .s-broken { background: #f8d0d0; color: #7a0c0c; }
.banner { padding: 8px 10px; border: 2px solid; margin: 8px 0; font-size: 12px; }
.banner.ok { border-color: #2e7d32; background: #eef8ee; }
.banner.bad { border-color: #b71c1c; background: #fdecec; }
.cert { border: 2px solid #1f4e79; padding: 8px 10px; margin: 14px 0; page-break-inside: auto; }
.cert h3 { margin-top: 0; }
.muted { color: #555; } pre { white-space: pre-wrap; font-size: 9.5px; background: #f4f4f4; padding: 6px; }
"""


def _state(value: str) -> str:
    cls = "s-" + "-".join(value.lower().split()) if value else ""
    return f'<span class="state {e(cls)}">{e(value or "-")}</span>'


def _ref(ref: RecordRef | None) -> str:
    if ref is None:
        return ""
    return f'<span class="hash">run {e(ref.run_id)} line {ref.line}<br>sha256 {e(ref.sha256)}</span>'


def _table(headers: list[str], rows: Iterable[list[str]], attrs: str = "") -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(data: ReportData) -> str:
    """The report as one HTML document: inline style only, no script, nothing fetched."""
    out: list[str] = []
    w = out.append
    w('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    w(
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
    )
    w(f"<title>Offboarding evidence report: {e(data.client)}</title><style>{_CSS}</style></head><body>")
    w(f"<h1>Offboarding evidence report: client {e(data.client)}</h1>")
    w(
        f'<p class="muted">Generated {e(data.generated_at)} by {e(data.generator)} from the sealed evidence '
        f'store. Chain head (HEAD): <span class="mono">{e(data.head)}</span></p>'
    )
    pending_devices = [d.host for d in data.devices if d.status != "clean"]
    verdict = "intact" if data.verify_ok else "NOT intact, see problems below"
    w(
        f'<div class="banner {"ok" if data.verify_ok else "bad"}">'
        f"<b>Evidence check at generation: {e(verdict)}.</b> "
    )
    w(f"{e(data.verify_summary)}.<br>")
    if pending_devices:
        w(
            f"<b>Not every device is done:</b> {len(pending_devices)} of {len(data.devices)} device(s) "
            f"still outstanding ({e(', '.join(pending_devices))})."
        )
    else:
        w(f"All {len(data.devices)} device(s) are done (removed or nothing found, verified).")
    w("</div>")
    if data.verify_problems:
        w("<h3>Problems found by the evidence check</h3><ul>")
        w("".join(f"<li>{e(p)}</li>" for p in data.verify_problems) + "</ul>")

    w("<h2>Summary per phase</h2>")
    w(
        _table(
            [
                "Phase",
                "Devices",
                "Devices done",
                "Items removed",
                "Nothing found",
                "Refused (guard)",
                "Pending",
                "Unreachable (device-phases)",
                "Failed",
            ],
            (
                [
                    e(r["phase"]),
                    str(r["devices"]),
                    str(r["clean"]),
                    str(r["removed"]),
                    str(r["absent"]),
                    str(r["refused"]),
                    str(r["pending"]),
                    str(r["unreachable"]),
                    str(r["failed"]),
                ]
                for r in data.phases
            ),
            'id="phase-summary"',
        )
    )
    w("<h2>Outstanding: pending, unreachable, refused, failed</h2>")
    if data.outstanding:
        w(
            _table(
                ["Device", "Phase", "State", "Since", "Reason", "Run", "Evidence line"],
                (
                    [
                        e(o.host),
                        e(o.phase),
                        _state(o.state),
                        e(o.since),
                        e(o.reason),
                        e(o.run_id),
                        _ref(o.ref),
                    ]
                    for o in data.outstanding
                ),
                'id="outstanding"',
            )
        )
    else:
        w("<p>Nothing outstanding.</p>")

    w("<h2>Devices</h2>")
    w(
        _table(
            ["Device", "Status", "Removed", "Nothing found", "Outstanding", "Runs"],
            (
                [
                    e(d.host),
                    _state(d.status),
                    str(sum(ln.state == "removed" for ln in d.lines)),
                    str(sum(ln.state == "absent" for ln in d.lines)),
                    e(
                        "; ".join(f"{o.phase}: {o.state} since {o.since} ({o.reason})" for o in d.outstanding)
                        or "-"
                    ),
                    e(", ".join(d.runs)),
                ]
                for d in data.devices
            ),
            'id="device-table"',
        )
    )

    w("<h2>Checklist steps</h2>")
    w(f'<p class="muted">{e(data.steps_note)}</p>')
    if data.steps:
        w(
            _table(
                ["Step", "Title", "Phase", "Owner", "Due", "Status", "Evidence"],
                (
                    [e(s.id), e(s.title), e(s.phase), e(s.owner), e(s.due), _state(s.status), e(s.evidence)]
                    for s in data.steps
                ),
                'id="checklist"',
            )
        )

    w("<h2>Certificates of removal, per device</h2>")
    w(
        '<p class="muted">Modelled on the certificate of sanitization of NIST SP 800-88. Each line names the '
        "evidence record it comes from: the run, the line of that run's records.jsonl, and the sha256 of "
        "that "
        "line (check it with <code>sed -n 'LINEp' RUN/records.jsonl | sha256sum</code>).</p>"
    )
    for dev in data.devices:
        w(_certificate(dev, data.client))

    w("<h2>Runs</h2>")
    w(
        _table(
            ["Run", "Command", "Status", "Check mode", "Tags", "Operator", "Started", "Ended", "Tool"],
            (
                [
                    e(m.run_id),
                    e(m.command),
                    _state(m.status),
                    e("yes" if m.check_mode else "no"),
                    e(",".join(m.tags)),
                    e(m.operator),
                    e(m.started_at),
                    e(m.ended_at or ""),
                    e(_tool(m)),
                ]
                for m in data.runs
            ),
            'id="runs"',
        )
    )
    w("<h3>Signatures</h3>")
    w(
        "<ul>" + "".join(f"<li>{e(s)}</li>" for s in data.signature_lines) + "</ul>"
        if data.signature_lines
        else "<p>No sealed run.</p>"
    )
    w("<h2>How to verify this evidence without offboard</h2>")
    w(f"<pre>{e(verify_instructions(data.client))}</pre>")
    w("</body></html>\n")
    return "".join(out)


def _certificate(dev: Device, client: str) -> str:
    out = [f'<div class="cert" id="cert-{e(dev.host)}">']
    out.append(f"<h3>Certificate of removal: {e(dev.host)} {_state(dev.status)}</h3>")
    operators = sorted({ln.operator for ln in dev.lines if ln.operator})
    tools = sorted({ln.tool for ln in dev.lines if ln.tool})
    last = max((ln.when for ln in dev.lines), default="")
    verdict = {
        "clean": "Every item found was removed and the removal verified; nothing outstanding.",
        "pending": "NOT COMPLETE: work on this device is still outstanding (see below).",
        "failed": "NOT COMPLETE: a removal failed or could not be verified (see below).",
        "no evidence": "NOT COMPLETE: no run has recorded anything for this device yet.",
    }[dev.status]
    out.append(
        _kv(
            [
                ("Device", e(dev.host)),
                ("Client", e(client)),
                ("Result", f"{_state(dev.status)} {e(verdict)}"),
                ("Last recorded", e(last or "-")),
                ("Runs", e(", ".join(dev.runs) or "-")),
                ("Performed by", e(", ".join(operators) or "-")),
                ("Tool version", e("; ".join(tools) or "-")),
            ]
        )
    )
    if dev.outstanding:
        out.append(
            _table(
                ["Phase", "Outstanding", "Since", "Reason", "Run", "Evidence line"],
                (
                    [e(o.phase), _state(o.state), e(o.since), e(o.reason), e(o.run_id), _ref(o.ref)]
                    for o in dev.outstanding
                ),
            )
        )
    acted = [ln for ln in dev.lines if ln.state != "absent"]
    checked = [ln for ln in dev.lines if ln.state == "absent"]
    if acted:
        out.append("<h4>Found and acted on</h4>")
        out.append(
            _lines_table(
                [
                    "Phase / component / item",
                    "Found",
                    "Done",
                    "Method",
                    "Verified by",
                    "Result",
                    "When",
                    "By / tool",
                ],
                (
                    [
                        f"{e(ln.phase)} / {e(ln.component)} / <b>{e(ln.item)}</b>",
                        e(ln.found),
                        f"{e(ln.action)}{'<br>' + e(ln.reason) if ln.reason else ''}",
                        e(ln.method),
                        e(ln.verification),
                        f'{_state(ln.state)}<br><span class="muted">{e(ln.result)}</span>',
                        e(ln.when),
                        f'{e(ln.operator)}<br><span class="muted">{e(ln.tool)}</span>',
                    ]
                    for ln in acted
                ),
                [ln.ref for ln in acted],
            )
        )
    if checked:
        out.append("<h4>Looked for and not present (nothing to remove)</h4>")
        out.append(
            _lines_table(
                ["Phase / component / item", "Verified by", "Result", "When", "By"],
                (
                    [
                        f"{e(ln.phase)} / {e(ln.component)} / <b>{e(ln.item)}</b>",
                        e(ln.verification),
                        f'{_state(ln.state)} <span class="muted">{e(ln.result)}</span>',
                        e(ln.when),
                        e(ln.operator),
                    ]
                    for ln in checked
                ),
                [ln.ref for ln in checked],
            )
        )
    out.append("</div>")
    return "".join(out)


def _lines_table(headers: list[str], rows: Iterable[list[str]], refs: list[RecordRef]) -> str:
    """A certificate table: each line followed by the evidence record it comes from, full width."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for row, ref in zip(rows, refs, strict=True):
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
        body.append(
            f'<tr class="ref"><td colspan="{len(headers)}">evidence record: run {e(ref.run_id)}, '
            f'records.jsonl line {ref.line}, sha256 <span class="hash">{e(ref.sha256)}</span></td></tr>'
        )
    return f'<table class="lines"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _kv(rows: list[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def verify_instructions(client: str) -> str:
    """Commands a reviewer runs with standard tools only (also in the bundle's VERIFY.md)."""
    return f"""\
In the client's evidence folder (evidence/{client}/, or the bundle's data/evidence/{client}/):

1. Every run is unaltered and complete, and the chain is whole (sha256sum, GNU coreutils):
     sha256sum -c HEAD                         # the newest manifest is the one HEAD names
     for run in */; do
       ( cd "$run" && sha256sum --strict --quiet -c MANIFEST.sha256 &&
         {{ [ ! -f PREVIOUS.sha256 ] || sha256sum --quiet -c PREVIOUS.sha256; }} &&
         diff <(find . -type f ! -path './MANIFEST.sha256*' | sed 's|^\\./||' | sort) \\
              <(sed 's/^[0-9a-f]*  //' MANIFEST.sha256 | sort) ) || echo "FAILED: $run"
     done                                      # (bash; the diff finds files added after sealing)
   Walk the chain from HEAD through each run's PREVIOUS.sha256: every run is reached once, and only the
   first run has no PREVIOUS.sha256.

2. Signatures (OpenSSH ssh-keygen, 8.2 or newer), with an allowed_signers file you got from the signer
   yourself (not only the copy next to the evidence):
     for run in */; do
       [ -f "$run/SIGNER" ] || [ -f "$run/MANIFEST.sha256.sig" ] || {{ echo "unsigned: $run"; continue; }}
       who=$(ssh-keygen -Y find-principals -f allowed_signers -s "$run/MANIFEST.sha256.sig") &&
       ssh-keygen -Y verify -f allowed_signers -I "$who" -n {signing.NAMESPACE} \\
         -s "$run/MANIFEST.sha256.sig" < "$run/MANIFEST.sha256" || echo "BAD SIGNATURE: $run"
     done
   A run with SIGNER but no MANIFEST.sha256.sig had its signature removed.

3. Time-stamps (when present, RFC 3161), against the time-stamp authority's CA certificate:
     openssl ts -verify -in RUN/MANIFEST.sha256.sig.tsr -data RUN/MANIFEST.sha256.sig -CAfile tsa-ca.pem

4. One line of a certificate: its record is line N of RUN/records.jsonl, and
     sed -n 'Np' RUN/records.jsonl | sha256sum
   prints the sha256 the certificate shows.
"""


# --- PDF ----------------------------------------------------------------------------------------
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("headless Chromium is needed for the PDF: apt-get install chromium")


def browser_argv(profile: Path) -> list[str]:
    """Headless Chromium that fetches nothing: no network, no extensions, a throwaway profile."""
    return [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in containers and CI: Chromium's sandbox needs a user namespace
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--disable-background-networking",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
    ]


def render_pdf(html_file: Path, pdf_file: Path, timeout: int = 120) -> None:
    """Print the HTML to PDF with headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="offboard-chromium-") as profile:
        argv = [
            *browser_argv(Path(profile)),
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_file}",
            html_file.resolve().as_uri(),
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0 or not pdf_file.is_file() or pdf_file.stat().st_size == 0:
        raise RuntimeError(f"chromium could not print {html_file} to PDF: {out.stderr.strip()[-400:]}")


def write_report(data: ReportData, out_dir: Path, pdf: bool = True) -> tuple[Path, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    html_file = out_dir / f"{data.client}-report.html"
    html_file.write_text(render_html(data), encoding="utf-8")
    pdf_file = None
    if pdf:
        pdf_file = out_dir / f"{data.client}-report.pdf"
        render_pdf(html_file, pdf_file)
    return html_file, pdf_file


# --- command ------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="a reviewer's report: HTML and PDF, a certificate of removal per device",
        description="Write CLIENT's evidence report as one self-contained HTML file and a PDF of it: "
        "summary per phase and checklist step, outstanding work, a certificate of removal per device "
        "(each line with the sha256 of its evidence record), and how to verify without this tool.",
        epilog="Exit codes: 0 written and the evidence is intact, 1 written but the evidence check found "
        "problems (they are in the report) or the PDF failed, 2 usage.",
    )
    p.add_argument("client", metavar="CLIENT", help="client name: a folder under inventories/")
    p.add_argument("--evidence-dir", type=Path, metavar="DIR", help="evidence store root")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: reports/CLIENT/)")
    p.add_argument("--no-pdf", action="store_true", help="HTML only (no Chromium needed)")
    p.set_defaults(func=cmd_report)


def build(store: EvidenceStore, client: str) -> ReportData:
    from offboard import inventory, paths

    try:
        hosts = inventory.load(client, paths.project_root()).names
    except Exception:  # a client whose inventory is gone still has its evidence
        hosts = []
    return collect(store, client, hosts)


def cmd_report(args: argparse.Namespace) -> int:
    from offboard.commands import _client_known, _project, _store
    from offboard.errors import EXIT_ERROR, EXIT_OK, UsageError

    project = _project()
    store = _store(args)
    _client_known(args.client, project, store)
    if not store.run_ids(args.client):
        raise UsageError(f"no evidence for client {args.client} in {store.root}: nothing to report")
    data = build(store, args.client)
    out_dir = args.out or project / "reports" / args.client
    os.umask(0o077)
    try:
        html_file, pdf_file = write_report(data, out_dir, pdf=not args.no_pdf)
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
        print(f"offboard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"report: {html_file}")
    if pdf_file:
        print(f"pdf:    {pdf_file}")
    if not data.verify_ok:
        print("offboard: the evidence check found problems; they are listed in the report", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
