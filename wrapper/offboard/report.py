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
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from offboard import cmdshared, jsonout
from offboard.evidence import EvidenceStore
from offboard.helptext import add_command
from offboard.report_data import (
    CertLine,
    Device,
    Outstanding,
    RecordRef,
    ReportData,
    StepRow,
    collect,
    found_text,
    iter_lines,
    method_text,
)
from offboard.report_html import e, render_html, verify_instructions

__all__ = [
    "CertLine",
    "Device",
    "Outstanding",
    "RecordRef",
    "ReportData",
    "StepRow",
    "browser_argv",
    "build",
    "collect",
    "e",
    "found_text",
    "iter_lines",
    "method_text",
    "render_html",
    "render_pdf",
    "verify_instructions",
    "write_report",
]


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
    p = add_command(sub, "report")
    add_evidence_arguments(
        p,
        out=("DIR", "output folder (default: reports/CLIENT/)"),
        no_pdf="HTML only (no Chromium needed)",
    )
    p.set_defaults(func=cmd_report)


def add_evidence_arguments(p: argparse.ArgumentParser, out: tuple[str, str], no_pdf: str) -> None:
    """The arguments of a command that writes from a client's sealed evidence (report, bundle)."""
    p.add_argument("client", metavar="CLIENT", help="client name: a folder under inventories/")
    cmdshared.add_evidence_dir(p)
    p.add_argument("--out", type=Path, metavar=out[0], help=out[1])
    p.add_argument("--no-pdf", action="store_true", help=no_pdf)
    jsonout.add_flag(p)


def build(store: EvidenceStore, client: str) -> ReportData:
    """The report's data for CLIENT, over the hosts its inventory names (if it still has one)."""
    from offboard import inventory, paths

    try:
        hosts = inventory.load(client, paths.project_root()).names
    except Exception:  # a client whose inventory is gone still has its evidence
        hosts = []
    return collect(store, client, hosts)


def client_evidence(args: argparse.Namespace, what: str) -> tuple[Path, EvidenceStore]:
    """The project and store of a command that reads a client's sealed evidence (report, bundle).

    Raises UsageError for an unknown client or one without evidence ("nothing to <what>").
    """
    from offboard.errors import UsageError

    project = cmdshared.project()
    store = cmdshared.store(args)
    cmdshared.client_known(args.client, project, store)
    if not store.run_ids(args.client):
        raise UsageError(f"no evidence for client {args.client} in {store.root}: nothing to {what}")
    return project, store


def cmd_report(args: argparse.Namespace) -> int:
    from offboard.errors import EXIT_ERROR, EXIT_OK

    project, store = client_evidence(args, "report")
    data = build(store, args.client)
    out_dir = args.out or project / "reports" / args.client
    os.umask(0o077)
    fields: dict[str, Any] = {"client": args.client, "html": None, "pdf": None}
    try:
        html_file, pdf_file = write_report(data, out_dir, pdf=not args.no_pdf)
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
        print(f"offboard: {exc}", file=sys.stderr)
        if args.json:
            return jsonout.emit("report", EXIT_ERROR, {**fields, "error": str(exc)})
        return EXIT_ERROR
    code = EXIT_OK if data.verify_ok else EXIT_ERROR
    if not args.json:
        print(f"report: {html_file}")
        if pdf_file:
            print(f"pdf:    {pdf_file}")
    if not data.verify_ok:
        print("offboard: the evidence check found problems; they are listed in the report", file=sys.stderr)
    if args.json:
        outstanding = [d.host for d in data.devices if d.status != "clean"]
        fields.update(
            html=str(html_file),
            pdf=str(pdf_file) if pdf_file else None,
            evidence_intact=data.verify_ok,
            evidence_problems=data.verify_problems,
            head=data.head,
            runs=len(data.runs),
            devices=len(data.devices),
            devices_outstanding=outstanding,
        )
        return jsonout.emit("report", code, fields)
    return code
