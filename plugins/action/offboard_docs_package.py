# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: build the client's hand-over documentation package (tar.gz with index and SHA256SUMS).

Runs once on the controller. Every host of the client is listed: hosts reached in this run with their
facts (hostname, OS, serial, IPs, MACs), hosts that were not reached as unreachable/pending with the
reason. What MSP software was found on each device comes from the client's evidence (every run's item
records of the agents phase). Configuration backups (firewall) and DNS zone exports are the newest copy
of each file under exports/ in the client's evidence runs. The package is re-opened and checked against
its SHA256SUMS before the task returns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import ipaddress
import json
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:  # the secrets this run knows (vault, environment, generated), shared by the offboard_evidence callback
    from offboard.records import iter_raw as _iter_raw
    from offboard.scrub import active as _active_redactor
    from offboard.scrub import redact_bytes as _redact_bytes
except ImportError:  # pragma: no cover - only without the offboard package
    _active_redactor = None
    _iter_raw = None

DOCUMENTATION = r"""
module: offboard_docs_package
short_description: Build and verify the client's hand-over documentation package in the run's evidence
options:
  client: {description: Client id., type: str, required: true}
  hosts: {description: Every host of the client (the inventory group)., type: list, required: true}
  reached: {description: Hosts whose facts were gathered in this run., type: list, required: true}
  targeted: {description: Hosts this run targeted (ansible_play_hosts_all)., type: list, required: true}
"""

RETURN = r"""
path: {description: Absolute path of the archive., type: str}
relpath: {description: Archive path relative to the run's evidence folder., type: str}
sha256: {description: sha256 of the archive., type: str}
devices: {description: Per host - status, reason, configs and dns exports included., type: dict}
verified: {description: The archive re-read matches SHA256SUMS and lists every host., type: bool}
"""

MSP_COMPONENTS = (
    "rmm_agent",
    "security_agent",
    "backup_agent",
    "monitoring_agent",
    "scheduled_task",
    "startup_script",
    "gpo",
)
FOUND_ACTIONS = {"removed", "would_remove", "failed", "disabled", "would_change", "refused"}


def device_from_facts(host: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """Inventory row from gathered facts (Linux, macOS and Windows setup share these names)."""
    interfaces = []
    for name in facts.get("interfaces") or []:
        data = facts.get(name.replace("-", "_")) or facts.get(name) or {}
        if not isinstance(data, Mapping):
            continue
        v4 = data.get("ipv4")
        v4_list = v4 if isinstance(v4, list) else [v4] if isinstance(v4, Mapping) else []
        v4_list += data.get("ipv4_secondaries") or []
        addrs = [
            f"{a.get('address')}/{a.get('prefix') or a.get('netmask')}" for a in v4_list if a.get("address")
        ]
        addrs += [f"{a.get('address')}/{a.get('prefix')}" for a in data.get("ipv6") or [] if a.get("address")]
        interfaces.append({"name": name, "mac": data.get("macaddress") or "", "addresses": addrs})
    for adapter in facts.get("interfaces_windows") or facts.get("windows_interfaces") or []:
        interfaces.append(
            {
                "name": adapter.get("connection_name") or adapter.get("interface_name", ""),
                "mac": adapter.get("macaddress", ""),
                "addresses": [],
            }
        )
    serial = facts.get("product_serial") or ""
    return {
        "host": host,
        "hostname": facts.get("hostname") or facts.get("nodename") or "",
        "fqdn": facts.get("fqdn") or "",
        "os": " ".join(
            str(x) for x in (facts.get("distribution"), facts.get("distribution_version")) if x
        ).strip()
        or str(facts.get("os_family") or facts.get("system") or ""),
        "kernel": facts.get("kernel") or "",
        "architecture": facts.get("architecture") or "",
        "serial": serial if serial not in ("NA", "None", "To be filled by O.E.M.") else "",
        "vendor": facts.get("system_vendor") or "",
        "model": facts.get("product_name") or "",
        "virtualization": facts.get("virtualization_type") or "",
        "default_ipv4": (facts.get("default_ipv4") or {}).get("address", ""),
        "all_ipv4": sorted(facts.get("all_ipv4_addresses") or facts.get("ip_addresses") or []),
        "interfaces": interfaces,
    }


def ip_schema(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Networks seen on the devices' interfaces (loopback left out) and who sits in each."""
    nets: dict[str, list[str]] = {}
    for dev in devices:
        for iface in dev.get("interfaces", []):
            for addr in iface.get("addresses", []):
                try:
                    iface_ip = ipaddress.ip_interface(addr)
                except ValueError:
                    continue
                if iface_ip.ip.is_loopback or iface_ip.ip.is_link_local:
                    continue
                nets.setdefault(str(iface_ip.network), []).append(
                    f"{dev['host']} {iface_ip.ip} ({iface['name']})"
                )
    return [{"network": n, "members": sorted(m)} for n, m in sorted(nets.items())]


def msp_software(records: list[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Per host, per component:item, the latest action recorded for MSP software that was found."""
    found: dict[str, dict[str, str]] = {}
    for rec in records:
        if rec.get("kind") != "item" or rec.get("component") not in MSP_COMPONENTS:
            continue
        key = f"{rec['component']}:{rec['item']}"
        action = str(rec.get("action") or "")
        if action in FOUND_ACTIONS or (rec.get("before") or {}).get("found"):
            suffix = " (rehearsal)" if rec.get("check_mode") else ""
            found.setdefault(str(rec.get("host")), {})[key] = f"{action}{suffix}"
    return found


def newest_exports(client_dir: Path | None, current_run: Path | None) -> dict[str, tuple[Path, str]]:
    """exports/<host>/<...> relative path -> (newest file, run id), across the client's runs."""
    runs = _sealed_runs(client_dir)
    if current_run is not None and current_run not in runs:
        runs.append(current_run)
    newest: dict[str, tuple[Path, str]] = {}
    for run in runs:  # run ids sort by start time: later runs win
        base = run / "exports"
        if not base.is_dir():
            continue
        for root, _dirs, files in os.walk(base):
            for name in files:
                path = Path(root) / name
                if path.is_symlink():
                    continue  # the store follows no symlink
                rel = path.relative_to(base).as_posix()
                if rel.startswith("_client/") or name.startswith("."):
                    continue  # earlier packages are not packed into packages
                newest[rel] = (path, run.name)
    return newest


def _sealed_runs(client_dir: Path | None) -> list[Path]:
    """The client's sealed run folders (real folders with a manifest), oldest first: unsealed ones are
    not evidence, and a symlink is never followed."""
    if client_dir is None or client_dir.is_symlink() or not client_dir.is_dir():
        return []
    return sorted(
        p
        for p in client_dir.iterdir()
        if not p.name.startswith(".")
        and not p.is_symlink()
        and p.is_dir()
        and (p / "MANIFEST.sha256").is_file()
        and not (p / "MANIFEST.sha256").is_symlink()
    )


def load_records(client_dir: Path | None) -> list[dict[str, Any]]:
    """Records of the client's sealed runs, each checked against the record schema (bad lines skipped)."""
    out: list[dict[str, Any]] = []
    for run in _sealed_runs(client_dir):
        path = run / "records.jsonl"
        if path.is_symlink() or not path.is_file():
            continue
        if _iter_raw is not None:
            out.extend(_iter_raw(path, lambda *_: None))
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    out.append(data)
    return out


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_index(package: dict[str, Any]) -> str:
    lines = [
        f"# Hand-over documentation: {package['client_name']}",
        "",
        f"Client id `{package['client']}`, departing MSP {package['msp']}, built {package['built_at']} "
        f"(run {package['run_id']}). Checksums of every file: `SHA256SUMS` (`sha256sum -c SHA256SUMS`).",
        "",
        "## Devices",
        "",
        "| host | status | hostname | OS | serial | IPv4 | MAC | MSP software found |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dev in package["devices"]:
        macs = ", ".join(sorted({i["mac"] for i in dev.get("interfaces", []) if i.get("mac")}))
        soft = (
            ", ".join(f"{k} ({v})" for k, v in sorted(dev.get("msp_software", {}).items())) or "none recorded"
        )
        status = dev["status"] + (f": {dev['reason']}" if dev.get("reason") else "")
        lines.append(
            "| "
            + " | ".join(
                _md_escape(x)
                for x in (
                    dev["host"],
                    status,
                    dev.get("hostname", ""),
                    dev.get("os", ""),
                    dev.get("serial", "") or "n/a",
                    ", ".join(dev.get("all_ipv4", [])) or "-",
                    macs or "-",
                    soft,
                )
            )
            + " |"
        )
    lines += ["", "## IP schema", ""]
    if package["ip_schema"]:
        lines += ["| network | members |", "|---|---|"]
        lines += [f"| {n['network']} | {_md_escape(', '.join(n['members']))} |" for n in package["ip_schema"]]
    else:
        lines.append("No routable addresses were seen on the reached devices.")
    lines += ["", "## Configuration backups and DNS exports", ""]
    if package["files"]:
        lines += ["| file | device | from run | sha256 |", "|---|---|---|---|"]
        lines += [
            f"| {f['path']} | {f['host']} | {f['run_id']} | `{f['sha256']}` |" for f in package["files"]
        ]
    else:
        lines.append("None in the evidence yet (run the infra phase, then this phase again).")
    pending = [d for d in package["devices"] if d["status"] != "reached"]
    lines += ["", "## Not documented in this run", ""]
    lines += [
        f"- {d['host']}: {d['status']} ({d.get('reason') or 'no reason recorded'})" for d in pending
    ] or ["- none"]
    return "\n".join(lines) + "\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def build_archive(package: dict[str, Any], files: dict[str, bytes], top: str) -> tuple[bytes, dict[str, str]]:
    """tar.gz bytes and the sha256 of every member (SHA256SUMS is a member too)."""
    members = dict(files)
    members["inventory.json"] = (json.dumps(package, indent=1, sort_keys=True) + "\n").encode()
    members["INDEX.md"] = render_index(package).encode()
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(members.items())}
    members["SHA256SUMS"] = "".join(f"{digest}  {name}\n" for name, digest in sums.items()).encode()
    mtime = int(dt.datetime.now(dt.UTC).timestamp())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            _add(tar, f"{top}/{name}", members[name], mtime)
    return buf.getvalue(), sums


def verify_archive(path: Path, top: str, hosts: list[str]) -> list[str]:
    """Problems found re-reading the archive: checksum mismatches, missing files, missing hosts."""
    problems = []
    with tarfile.open(path, "r:gz") as tar:
        data = {m.name[len(top) + 1 :]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    sums = {}
    for line in data.get("SHA256SUMS", b"").decode().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    for name, digest in sums.items():
        if name not in data:
            problems.append(f"{name} listed in SHA256SUMS but missing")
        elif hashlib.sha256(data[name]).hexdigest() != digest:
            problems.append(f"{name} does not match its checksum")
    extra = set(data) - set(sums) - {"SHA256SUMS"}
    problems += [f"{name} not in SHA256SUMS" for name in sorted(extra)]
    listed = {d["host"] for d in json.loads(data.get("inventory.json", b"{}")).get("devices", [])}
    problems += [f"device {h} missing from inventory.json" for h in hosts if h not in listed]
    return problems


def run_dirs(task_vars: Mapping[str, Any]) -> tuple[Path, Path | None, Path | None]:
    """(folder to write into, the client's evidence folder, the current run folder)."""
    run_dir = os.environ.get("OFFBOARD_EVIDENCE_RUN_DIR")
    if run_dir:
        return Path(run_dir), Path(run_dir).parent, Path(run_dir)
    fallback = task_vars.get("offboard_export_dir")
    if fallback:
        return Path(str(fallback)), None, None
    raise AnsibleActionFail(
        "offboard_docs_package: this run has no evidence folder: run through `offboard run` or with the "
        "offboard_evidence callback enabled, or set offboard_export_dir for a run that is not an offboarding"
    )


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        client = str(args.get("client") or "")
        hosts = [str(h) for h in args.get("hosts") or []]
        reached = {str(h) for h in args.get("reached") or []}
        targeted = {str(h) for h in args.get("targeted") or []}
        if not client or not hosts:
            raise AnsibleActionFail("offboard_docs_package: 'client' and 'hosts' are required")
        out_dir, client_dir, current = run_dirs(task_vars)
        try:
            preflight_down = json.loads(os.environ.get("OFFBOARD_PREFLIGHT_DOWN") or "{}")
        except ValueError:
            preflight_down = {}
        # The package leaves the MSP: every text member is scrubbed of what this run knows is secret.
        redactor = _active_redactor() if _active_redactor is not None else None
        records = load_records(client_dir)
        software = msp_software(records)
        hostvars = task_vars.get("hostvars") or {}
        exports = newest_exports(client_dir, current)
        devices, files, listed_files = [], {}, []
        per_host: dict[str, dict[str, Any]] = {}
        for host in hosts:
            hv = hostvars.get(host) or {}
            facts = hv.get("ansible_facts") or {}
            if host in reached and facts:
                dev = device_from_facts(host, facts)
                dev.update(status="reached", reason="")
            else:
                dev = {"host": host, "interfaces": [], "all_ipv4": []}
                if host in preflight_down:
                    dev.update(
                        status="unreachable", reason=f"preflight: {preflight_down[host].get('reason', '')}"
                    )
                elif host in targeted:
                    dev.update(status="unreachable", reason="not reachable in this run (retry pending)")
                else:
                    dev.update(status="not_targeted", reason="outside this run's limit")
            dev["msp_software"] = software.get(host, {})
            configs, zones = [], []
            for rel, (path, run_id) in sorted(exports.items()):
                if not rel.startswith(f"{host}/"):
                    continue
                inner = rel[len(host) + 1 :]
                if inner.startswith("dns/"):
                    target = f"dns/{inner[4:]}"
                    zones.append(target)
                else:
                    target = f"configs/{host}/{inner}"
                    configs.append(target)
                data = path.read_bytes()
                if redactor is not None:
                    data = _redact_bytes(data, redactor)
                files[target] = data
                listed_files.append(
                    {
                        "path": target,
                        "host": host,
                        "run_id": run_id,
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
            dev["configs"], dev["dns_exports"] = configs, zones
            per_host[host] = {
                "status": dev["status"],
                "reason": dev["reason"],
                "configs": configs,
                "dns": zones,
            }
            devices.append(dev)
        run_id = current.name if current is not None else "no-evidence-run"
        package = {
            "schema": 1,
            "client": client,
            "client_name": str(task_vars.get("offboard_client_name") or client),
            "msp": str(task_vars.get("offboard_msp_name") or "the departing MSP"),
            "built_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "run_id": run_id,
            "devices": devices,
            "ip_schema": ip_schema([d for d in devices if d["status"] == "reached"]),
            "files": listed_files,
        }
        top = f"{client}-handover"
        if redactor is not None:
            package = redactor.data(package)
        blob, _sums = build_archive(package, files, top)
        folder = out_dir / "exports" / "_client"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest = folder / f"{client}-handover.tar.gz"
        tmp_path = folder / f".{dest.name}.tmp"
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.replace(tmp_path, dest)
        problems = verify_archive(dest, top, hosts)
        result.update(
            changed=False,
            path=str(dest),
            relpath=str(dest.relative_to(out_dir)),
            sha256=hashlib.sha256(dest.read_bytes()).hexdigest(),
            devices=per_host,
            verified=not problems,
            problems=problems,
        )
        return result
