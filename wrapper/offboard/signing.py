"""Signatures and time-stamps that anchor the evidence chain outside the store.

The hash chain (manifest.py) proves runs are unaltered up to HEAD, but whoever can write the store can
rewrite a run and re-seal every later one. A signature over each MANIFEST.sha256, made with a key that
lives outside the store, closes that gap: a re-sealed manifest no longer matches its signature.

Files a signed run holds (docs/evidence.md):
  SIGNER                    the signer's OpenSSH public key; written BEFORE the manifest, so the manifest
                            lists it and removing the signature later is detected (and named)
  MANIFEST.sha256.sig       `ssh-keygen -Y sign -n offboard-evidence` over MANIFEST.sha256
  MANIFEST.sha256.sig.tsr   optional RFC 3161 time-stamp token over the signature (or MANIFEST.sha256.tsr
                            over the manifest of an unsigned run), from the configured TSA
The .sig and .tsr files come after the manifest and are not listed in it.

Configuration, environment first, then the client's inventory (group_vars/<client>[.yml|/*.yml],
group_vars/all, or the client group's vars in hosts.yml; relative paths are relative to the inventory folder):
  OFFBOARD_SIGNING_KEY      offboard_signing_key       OpenSSH private key file (no passphrase, 0600)
  OFFBOARD_ALLOWED_SIGNERS  offboard_allowed_signers   allowed_signers for verify (ssh-keygen(1) format);
                                                       default <evidence>/<client>/allowed_signers
  OFFBOARD_TSA_URL          offboard_tsa_url           RFC 3161 time-stamp authority (HTTP POST)
  OFFBOARD_TSA_CA           offboard_tsa_ca            CA file to check time-stamp tokens against
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "offboard-evidence"
MANIFEST_NAME = "MANIFEST.sha256"  # same as manifest.MANIFEST; kept here so manifest.py can import us
SIGNER = "SIGNER"
SIG = MANIFEST_NAME + ".sig"
SIG_TSR = SIG + ".tsr"
MANIFEST_TSR = MANIFEST_NAME + ".tsr"
DETACHED = frozenset({SIG, SIG_TSR, MANIFEST_TSR})  # written after the manifest: never listed in it
ALLOWED_SIGNERS = "allowed_signers"
_TIMEOUT = 20


class SigningError(RuntimeError):
    """Signing or time-stamping could not be done; the message says what to fix."""


@dataclass(frozen=True)
class Config:
    key: Path | None = None
    allowed_signers: Path | None = None
    tsa_url: str | None = None
    tsa_ca: Path | None = None


# --- configuration ------------------------------------------------------------------------------
class _Lenient(yaml.SafeLoader):
    """Reads inventory YAML with vaulted values (!vault) as opaque strings: we only want plain settings."""


_Lenient.add_multi_constructor("!", lambda loader, suffix, node: None)


def _inventory_settings(client: str) -> tuple[dict[str, Any], Path | None]:
    try:
        from offboard import paths

        inv = paths.client_inventory(client)
    except (FileNotFoundError, ImportError):
        return {}, None
    found: dict[str, Any] = {}
    for name in ("hosts.yml", "hosts.yaml"):
        data = _load(inv / name)
        if isinstance(data, dict) and isinstance(data.get(client), dict):
            found.update(data[client].get("vars") or {})
    for group in ("all", client):  # group_vars/<group>.yml or every file of group_vars/<group>/
        base = inv / "group_vars"
        files = [base / f"{group}.yml", base / f"{group}.yaml"]
        if (base / group).is_dir():
            files += sorted(p for p in (base / group).iterdir() if p.suffix in (".yml", ".yaml"))
        for path in files:
            data = _load(path)
            if isinstance(data, dict):
                found.update(data)
    return found, inv


def _load(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Lenient)
    except (OSError, yaml.YAMLError):
        return None


def config_for(client: str, client_dir: Path | None = None, allowed_signers: Path | None = None) -> Config:
    """The signing settings of a client: environment first, then the client's inventory."""
    settings, inv = _inventory_settings(client)

    def pick(env: str, var: str) -> str | None:
        value = os.environ.get(env) or settings.get(var)
        return str(value) if value else None

    def as_path(value: str | None) -> Path | None:
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() or inv is None else inv / path

    signers = allowed_signers or as_path(pick("OFFBOARD_ALLOWED_SIGNERS", "offboard_allowed_signers"))
    if signers is None and client_dir is not None and (client_dir / ALLOWED_SIGNERS).is_file():
        signers = client_dir / ALLOWED_SIGNERS
    return Config(
        key=as_path(pick("OFFBOARD_SIGNING_KEY", "offboard_signing_key")),
        allowed_signers=signers,
        tsa_url=pick("OFFBOARD_TSA_URL", "offboard_tsa_url"),
        tsa_ca=as_path(pick("OFFBOARD_TSA_CA", "offboard_tsa_ca")),
    )


# --- sealing ------------------------------------------------------------------------------------
def public_key(key: Path) -> str:
    """The OpenSSH public key line of a private key file, read from the key itself: this also proves
    ssh-keygen can load it (permissions, no passphrase) before the run commits to a signature."""
    out = _run(["ssh-keygen", "-y", "-f", str(key)])
    if out.returncode != 0:
        why = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "ssh-keygen -y failed"
        raise SigningError(f"cannot use signing key {key}: {why}")
    return out.stdout.strip()


def before_manifest(run_dir: Path, cfg: Config) -> bool:
    """Write SIGNER when a key is configured (so the manifest commits to a signature); True if written."""
    if cfg.key is None:
        return False
    try:
        if not cfg.key.is_file():
            raise SigningError(f"signing key {cfg.key} does not exist (OFFBOARD_SIGNING_KEY)")
        line = public_key(cfg.key)
    except SigningError as exc:
        _warn(f"{exc}; run {run_dir.name} is sealed UNSIGNED")
        return False
    _write(run_dir / SIGNER, line + "\n")
    return True


def after_manifest(run_dir: Path, cfg: Config, signed: bool) -> None:
    """Sign MANIFEST.sha256 (when before_manifest wrote SIGNER) and time-stamp it (when a TSA is set)."""
    manifest = run_dir / MANIFEST_NAME
    if signed and cfg.key is not None:
        try:
            sign_file(manifest, cfg.key)
        except SigningError as exc:
            _warn(f"{exc}; run {run_dir.name} has no signature and `offboard verify` will fail it")
    if cfg.tsa_url:
        target = run_dir / SIG if (run_dir / SIG).is_file() else manifest
        try:
            timestamp(target, cfg.tsa_url)
        except SigningError as exc:
            _warn(f"{exc}; run {run_dir.name} is not time-stamped")


def sign_file(path: Path, key: Path) -> Path:
    """`ssh-keygen -Y sign` over path into path.sig; returns the signature's path."""
    sig = path.with_name(path.name + ".sig")
    sig.unlink(missing_ok=True)
    out = _run(["ssh-keygen", "-q", "-Y", "sign", "-n", NAMESPACE, "-f", str(key), str(path)])
    if out.returncode != 0 or not sig.is_file():
        raise SigningError(f"ssh-keygen -Y sign failed for {path.name}: {out.stderr.strip()}")
    os.chmod(sig, 0o600)
    return sig


def timestamp(path: Path, url: str) -> Path:
    """Ask an RFC 3161 TSA for a token over path's sha256; stored as path.tsr."""
    with tempfile.TemporaryDirectory(prefix="offboard-tsq-") as tmp:
        query = Path(tmp) / "request.tsq"
        out = _run(["openssl", "ts", "-query", "-data", str(path), "-sha256", "-cert", "-out", str(query)])
        if out.returncode != 0:
            raise SigningError(f"openssl ts -query failed: {out.stderr.strip()}")
        request = urllib.request.Request(
            url, data=query.read_bytes(), headers={"Content-Type": "application/timestamp-query"}
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                body = response.read()
        except OSError as exc:
            raise SigningError(f"time-stamp authority {url} did not answer: {exc}") from None
        reply = Path(tmp) / "reply.tsr"
        reply.write_bytes(body)
        text = _run(["openssl", "ts", "-reply", "-in", str(reply), "-text"])
        if text.returncode != 0 or "Status: Granted" not in text.stdout:
            raise SigningError(f"time-stamp authority {url} did not grant a token")
        tsr = path.with_name(path.name + ".tsr")
        _write_bytes(tsr, body)
    return tsr


# --- verifying ----------------------------------------------------------------------------------
@dataclass
class RunSignature:
    run_id: str
    state: str  # signed | unsigned | bad | missing | unchecked
    principal: str = ""
    detail: str = ""
    timestamp: str = ""  # genTime of the RFC 3161 token, when there is one


@dataclass
class SignatureReport:
    allowed_signers: Path | None
    runs: list[RunSignature] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path relative to client dir, what)
    notes: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for r in self.runs if r.state == state)


def find_principals(sig: Path, allowed: Path) -> list[str]:
    out = _run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(allowed)])
    return out.stdout.split() if out.returncode == 0 else []


def verify_file(path: Path, sig: Path, allowed: Path, principal: str) -> bool:
    with path.open("rb") as handle:
        out = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(allowed),
                "-I",
                principal,
                "-n",
                NAMESPACE,
                "-s",
                str(sig),
            ],
            stdin=handle,
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    return out.returncode == 0


def timestamp_time(tsr: Path) -> str:
    out = _run(["openssl", "ts", "-reply", "-in", str(tsr), "-text"])
    for line in out.stdout.splitlines():
        if line.startswith("Time stamp:"):
            return line.split(":", 1)[1].strip()
    return ""


def verify_timestamp(tsr: Path, data: Path, ca: Path) -> bool:
    out = _run(["openssl", "ts", "-verify", "-in", str(tsr), "-data", str(data), "-CAfile", str(ca)])
    return out.returncode == 0


def verify_runs(client_dir: Path, run_ids: list[str], cfg: Config, require: bool = False) -> SignatureReport:
    """Check every sealed run's signature and time-stamp, oldest first.

    Fails: a bad signature, a signer not in allowed_signers, a signature missing where the run's SIGNER
    says one was made, an unsigned run after a signed one (signature and SIGNER stripped, run re-sealed),
    any unsigned run when `require`. An unsigned run otherwise is reported as unsigned, not failed.
    """
    report = SignatureReport(cfg.allowed_signers)
    allowed = cfg.allowed_signers
    if allowed is not None and not allowed.is_file():
        report.problems.append((str(allowed), "allowed_signers file does not exist"))
        allowed = None
    first_signed = ""
    for run_id in sorted(run_ids):
        run_dir = client_dir / run_id
        if not (run_dir / MANIFEST_NAME).is_file():
            continue
        sig, manifest = run_dir / SIG, run_dir / MANIFEST_NAME
        entry = RunSignature(run_id, "unsigned")
        if sig.is_file():
            first_signed = first_signed or run_id
            if allowed is None:
                entry.state = "unchecked"
            else:
                principals = find_principals(sig, allowed)
                if not principals:
                    entry.state, entry.detail = "bad", "signed by a key that is not in allowed_signers"
                elif not verify_file(manifest, sig, allowed, principals[0]):
                    entry.state = "bad"
                    entry.detail = (
                        "bad signature: MANIFEST.sha256 was changed (re-sealed?) after it was signed"
                    )
                else:
                    entry.state, entry.principal = "signed", principals[0]
            if entry.state == "bad":
                report.problems.append((f"{run_id}/{SIG}", entry.detail))
        elif (run_dir / SIGNER).is_file():
            entry.state, entry.detail = (
                "missing",
                "missing: the run was sealed to be signed (SIGNER); removed?",
            )
            report.problems.append((f"{run_id}/{SIG}", entry.detail))
        elif first_signed:
            entry.detail = f"unsigned, after signed run {first_signed}: signature stripped and run re-sealed?"
            report.problems.append((f"{run_id}/{SIG}", entry.detail))
        elif require:
            entry.detail = "unsigned (signatures are required)"
            report.problems.append((f"{run_id}/{SIG}", entry.detail))
        _check_timestamp(run_dir, run_id, entry, cfg, report)
        report.runs.append(entry)
    unchecked = report.count("unchecked")
    if unchecked:
        report.notes.append(
            f"{unchecked} signed run(s) not checked: no allowed_signers (give --allowed-signers, "
            f"OFFBOARD_ALLOWED_SIGNERS, or put one at {client_dir / ALLOWED_SIGNERS})"
        )
    unsigned = [r.run_id for r in report.runs if r.state == "unsigned" and not r.detail]
    if unsigned:
        report.notes.append(f"{len(unsigned)} run(s) unsigned: {', '.join(unsigned)}")
    return report


def _check_timestamp(
    run_dir: Path, run_id: str, entry: RunSignature, cfg: Config, report: SignatureReport
) -> None:
    for tsr_name, data_name in ((SIG_TSR, SIG), (MANIFEST_TSR, MANIFEST_NAME)):
        tsr = run_dir / tsr_name
        if not tsr.is_file():
            continue
        entry.timestamp = timestamp_time(tsr)
        if cfg.tsa_ca is None:
            report.notes.append(f"{run_id}/{tsr_name}: time-stamp present, not checked (set OFFBOARD_TSA_CA)")
        elif not (run_dir / data_name).is_file() or not verify_timestamp(
            tsr, run_dir / data_name, cfg.tsa_ca
        ):
            report.problems.append((f"{run_id}/{tsr_name}", f"time-stamp does not match {data_name}"))


# --- helpers ------------------------------------------------------------------------------------
def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def _write(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _warn(message: str) -> None:
    print(f"offboard: warning: {message}", file=sys.stderr)
