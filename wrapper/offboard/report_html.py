"""The HTML of `offboard report`: one self-contained document, inline style only, nothing fetched.

Every value from a record is escaped: records may hold hostile strings (a file name, a service name).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from offboard import signing
from offboard.report_data import Device, RecordRef, ReportData, tool_text


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
                    e(tool_text(m)),
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
