"""`offboard bundle CLIENT`: one tar.gz a third party checks with standard tools only.

Layout: a BagIt bag (RFC 8493), so archivists' tools validate it too, and its manifest-sha256.txt is
also plain `sha256sum -c` input:
  <client>-evidence-<UTC time>/
    bagit.txt  bag-info.txt  manifest-sha256.txt  tagmanifest-sha256.txt  VERIFY.md
    data/report/<client>-report.html (+ .pdf)
    data/evidence/<client>/HEAD, allowed_signers, <run-id>/... (every sealed run, as stored)
VERIFY.md holds the exact commands (sha256sum, ssh-keygen, openssl), one block a reviewer can paste.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from offboard import jsonout, manifest, report, signing
from offboard.evidence import EvidenceStore
from offboard.helptext import add_command

BAGIT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
# Run ids go into shell commands a reviewer pastes: only names a shell takes literally are bundled.
_PUBKEY = re.compile(r"\A(?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}(?=\s|\Z)")
_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")


class BundleError(RuntimeError):
    """The bundle cannot be made as asked; the message says why."""


def _sha256(path: Path) -> str:
    return manifest.sha256_file(path)


def _copy_client(store: EvidenceStore, client: str, dest: Path) -> list[str]:
    """Copy HEAD and every sealed run (no locks, no work folders, no symlinks); returns the run ids."""
    src = store.client_dir(client)
    dest.mkdir(parents=True)
    runs = [r for r in store.run_ids(client) if (src / r / manifest.MANIFEST).is_file()]
    unsafe = [r for r in runs if not _SAFE_RUN_ID.match(r)]
    if unsafe:
        raise BundleError(
            f"run folder(s) with names no run id has: {unsafe!r}; check the store (offboard verify)"
        )
    if (src / manifest.HEAD).is_file():
        shutil.copy2(src / manifest.HEAD, dest / manifest.HEAD)
    for run_id in runs:
        for root, dirs, files in os.walk(src / run_id):
            rel = Path(root).relative_to(src)
            dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
            (dest / rel).mkdir(parents=True, exist_ok=True)
            for name in files:
                path = Path(root) / name
                if path.is_symlink() or not path.is_file():
                    continue
                if any(c in str(rel / name) for c in "\n\r\\%"):
                    raise BundleError(f"{rel / name}: a file name sha256sum and BagIt cannot both carry")
                shutil.copy2(path, dest / rel / name)
    return runs


def _allowed_signers(cfg: signing.Config, client_dir: Path, runs: list[str], dest: Path) -> str:
    """Put an allowed_signers into the bundle; returns where it came from (for VERIFY.md)."""
    if cfg.allowed_signers and cfg.allowed_signers.is_file():
        shutil.copyfile(cfg.allowed_signers, dest)
        return "the allowed_signers configured for this client when the bundle was made"
    keys = []
    for run_id in runs:
        signer = client_dir / run_id / signing.SIGNER
        if signer.is_file():
            match = _PUBKEY.match(signer.read_text(encoding="utf-8", errors="replace").strip())
            if match and match.group(0) not in keys:  # type and base64 only: nothing else reaches the file
                keys.append(match.group(0))
    if not keys:
        return ""
    dest.write_text(
        "".join(f'offboard-signer-{n} namespaces="{signing.NAMESPACE}" {k}\n' for n, k in enumerate(keys, 1)),
        encoding="utf-8",
    )
    return (
        "DERIVED FROM THE EVIDENCE ITSELF (the SIGNER files): it proves only that the runs were signed by "
        "these keys; compare the keys with ones you obtained from the signer"
    )


def verify_md(client: str, runs: list[str], signed: dict[str, str], signers_from: str, bag: str) -> str:
    ev = f"data/evidence/{client}"
    q = shlex.quote  # every name in a command is quoted: principals come from allowed_signers
    lines = [
        f"# Verifying the offboarding evidence of client `{client}`",
        "",
        "Everything below uses standard tools only: `sha256sum` (GNU coreutils), `ssh-keygen` (OpenSSH 8.2",
        "or newer), optionally `openssl`. No offboard installation is needed. The report is",
        f"`data/report/{client}-report.html` (and `.pdf`); it was generated from the evidence in `{ev}/`.",
        "",
        "This folder is also a BagIt bag (RFC 8493): `bagit.py --validate .` checks step 1 the same way.",
        "",
        "Run these commands with bash in this folder (the one holding this file). Every command exits",
        "non-zero and names the file when something does not match:",
        "",
        "```sh",
        "set -e",
        "# 1. The bag: every file is the one that was bundled, none is missing",
        "sha256sum --strict --quiet -c manifest-sha256.txt",
        "sha256sum --strict --quiet -c tagmanifest-sha256.txt",
        "# 2. The evidence chain: HEAD names the newest manifest; each run's files match its manifest;",
        "#    each PREVIOUS.sha256 names the previous run's manifest (a deleted run breaks it)",
        f"cd {q(ev)}",
        "sha256sum --strict --quiet -c HEAD",
    ]
    for run_id in runs:
        lines.append(
            f"( cd {q(run_id)} && sha256sum --strict --quiet -c MANIFEST.sha256"
            + (" && sha256sum --strict --quiet -c PREVIOUS.sha256 )" if run_id != runs[0] else " )")
        )
        # files added to a run after sealing: present but not listed (bash process substitution)
        lines.append(
            f"diff <(cd {q(run_id)} && find . -type f ! -path './MANIFEST.sha256*' | sed 's|^\\./||' | sort) "
            f"<(sed 's/^[0-9a-f]*  //' {q(run_id + '/MANIFEST.sha256')} | sort)"
        )
    if signed:
        lines += ["# 3. Signatures over each manifest (namespace offboard-evidence)"]
        for run_id, principal in signed.items():
            lines.append(
                f"ssh-keygen -Y verify -f allowed_signers -I {q(principal)} -n {signing.NAMESPACE} "
                f"-s {q(f'{run_id}/{signing.SIG}')} < {q(f'{run_id}/{manifest.MANIFEST}')}"
            )
    lines += ["echo 'all checks passed'", "```", ""]
    unsigned = [r for r in runs if r not in signed]
    lines += [
        "## What the checks prove",
        "",
        "- Step 1: the bundle is complete and unaltered since it was made.",
        "- Step 2: every run is unaltered since it was sealed (no file changed, missing or added), and the",
        "  chain from HEAD back to the first run is whole. Every run folder in",
        f"  `{ev}/` must appear above; the first run ({runs[0] if runs else '-'}) is the only one",
        "  without PREVIOUS.sha256.",
    ]
    if signed:
        lines += [
            "- Step 3: each signed manifest was signed by a key in `allowed_signers`, so nobody without that",
            "  key rewrote the run and re-sealed the chain. A run holding a `SIGNER` file but no",
            "  `MANIFEST.sha256.sig` had its signature removed.",
            f"- `allowed_signers` in `{ev}/` is {signers_from}.",
            "  Prefer your own copy of the signer's public key: replace the file, then rerun step 3.",
        ]
    if unsigned:
        lines += [f"- Unsigned runs (no signature to check): {', '.join(unsigned)}."]
    lines += [
        "",
        "## Time-stamps (optional)",
        "",
        "Where a run holds `MANIFEST.sha256.sig.tsr` (RFC 3161), check it against your copy of the",
        "time-stamp authority's CA certificate:",
        "",
        "```",
        f"openssl ts -verify -in {ev}/RUN/MANIFEST.sha256.sig.tsr -data {ev}/RUN/MANIFEST.sha256.sig "
        "-CAfile tsa-ca.pem",
        "```",
        "",
        "## One line of a certificate",
        "",
        "Each certificate line in the report names its evidence record: a run, a line number N and a sha256.",
        "",
        "```",
        f"sed -n 'Np' {ev}/RUN/records.jsonl | sha256sum",
        "```",
        "",
        f"prints that sha256. ({len(runs)} run(s) in this bundle; made as `{bag}`.)",
        "",
    ]
    return "\n".join(lines)


def _write_manifest(bag: Path, files: list[Path], name: str) -> None:
    lines = [f"{_sha256(bag / f)}  {f.as_posix()}\n" for f in files]
    (bag / name).write_text("".join(lines), encoding="utf-8")


def make_bundle(store: EvidenceStore, client: str, out: Path, pdf: bool = True) -> Path:
    """Build the bag in a temporary folder and pack it into out (a .tar.gz); returns out."""
    client_dir = store.client_dir(client)
    if not store.run_ids(client):
        raise BundleError(f"no evidence for client {client} in {store.root}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{client}-evidence-{stamp}"
    with tempfile.TemporaryDirectory(prefix="offboard-bundle-") as tmp:
        bag = Path(tmp) / name
        ev = bag / "data" / "evidence" / client
        runs = _copy_client(store, client, ev)
        cfg = signing.config_for(client, client_dir)
        signers_from = _allowed_signers(cfg, client_dir, runs, ev / signing.ALLOWED_SIGNERS)
        signed: dict[str, str] = {}
        for run_id in runs:
            sig = ev / run_id / signing.SIG
            if sig.is_file() and signers_from:
                principals = signing.find_principals(sig, ev / signing.ALLOWED_SIGNERS)
                signed[run_id] = principals[0] if principals else "UNKNOWN-SIGNER"
        data = report.build(store, client)
        report.write_report(data, bag / "data" / "report", pdf=pdf)
        payload = sorted(p.relative_to(bag) for p in (bag / "data").rglob("*") if p.is_file())
        _write_manifest(bag, payload, "manifest-sha256.txt")
        octets = sum((bag / p).stat().st_size for p in payload)
        (bag / "bagit.txt").write_text(BAGIT, encoding="utf-8")
        (bag / "bag-info.txt").write_text(
            f"Bagging-Date: {stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}\n"
            f"Payload-Oxum: {octets}.{len(payload)}\n"
            f"External-Identifier: {name}\n"
            f"External-Description: offboarding evidence of client {client}: {len(runs)} sealed run(s), "
            "report, signatures. See VERIFY.md.\n"
            "Bag-Software-Agent: offboard bundle\n",
            encoding="utf-8",
        )
        (bag / "VERIFY.md").write_text(verify_md(client, runs, signed, signers_from, name), encoding="utf-8")
        tags = [Path(n) for n in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt", "VERIFY.md")]
        _write_manifest(bag, tags, "tagmanifest-sha256.txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(bag, arcname=name, filter=_tar_filter)
        partial.replace(out)
    return out


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owner and group of the evidence machine mean nothing to the reviewer; readable to whoever unpacks.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def bundle_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- command ------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "bundle")
    report.add_evidence_arguments(
        p,
        out=("FILE", "the tar.gz (default: reports/CLIENT/<name>.tar.gz)"),
        no_pdf="leave the report's PDF out (no Chromium needed)",
    )
    p.set_defaults(func=cmd_bundle)


def cmd_bundle(args: argparse.Namespace) -> int:
    from offboard.errors import EXIT_ERROR, EXIT_OK

    project, store = report.client_evidence(args, "bundle")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or project / "reports" / args.client / f"{args.client}-evidence-{stamp}.tar.gz"
    os.umask(0o077)
    try:
        make_bundle(store, args.client, out, pdf=not args.no_pdf)
    except (BundleError, RuntimeError, FileNotFoundError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"offboard: bundle not written: {exc}", file=sys.stderr)
        if args.json:
            return jsonout.emit(
                "bundle", EXIT_ERROR, {"client": args.client, "bundle": None, "error": str(exc)}
            )
        return EXIT_ERROR
    digest = bundle_digest(out)
    if args.json:
        print("offboard: send the sha256 to the reviewer separately", file=sys.stderr)
        return jsonout.emit("bundle", EXIT_OK, {"client": args.client, "bundle": str(out), "sha256": digest})
    print(f"bundle: {out}\nsha256: {digest}  (send this digest to the reviewer separately)")
    return EXIT_OK
