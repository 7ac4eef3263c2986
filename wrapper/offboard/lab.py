"""The built-in demo client: docker containers that act as the `lab` client's machines.

`offboard lab up` builds a Debian systemd image locally (mmdebstrap + docker import; no registry is
needed), starts the docker daemon with its bridge disabled if it is not running, creates one container
per host of inventories/lab/, plants the MSP's footprints and the client's own software, and stops the
hosts marked `lab_offline` (the laptop in a desk drawer). Containers run with `--network none` and are
reached through the docker API, so no lab traffic ever leaves the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

from offboard import jsonout, lab_dc
from offboard.lab_image import (
    DISABLED_UNITS,
    DOCKERD_ARGS,
    IMAGE_REPO,
    PACKAGES,
    RUN_ARGS,
    SUITE,
    LabError,
    LabHost,
    build_image,
    docker_ready,
    ensure_docker,
    ensure_image,
    image_exists,
    image_tag,
)
from offboard.lab_image import run as _run
from offboard.paths import project_root

__all__ = [
    "DISABLED_UNITS",
    "DOCKERD_ARGS",
    "IMAGE_REPO",
    "LABEL",
    "PACKAGES",
    "RUN_ARGS",
    "SUITE",
    "LabError",
    "LabHost",
    "build_image",
    "container_state",
    "docker_ready",
    "down",
    "ensure_container",
    "ensure_docker",
    "ensure_image",
    "image_exists",
    "image_tag",
    "lab_hosts",
    "plant",
    "plant_digest",
    "project_root",
    "start_host",
    "status_rows",
    "stop_host",
    "up",
]

LABEL = "io.offboard.lab"


def lab_hosts(root: Path | None = None) -> list[LabHost]:
    """Hosts of inventories/lab/hosts.yml with their container names."""
    root = root or project_root()
    data = yaml.safe_load((root / "inventories" / "lab" / "hosts.yml").read_text(encoding="utf-8"))
    hosts: list[LabHost] = []

    def walk(group: dict, group_name: str = "lab") -> None:
        for name, hvars in (group.get("hosts") or {}).items():
            hvars = hvars or {}
            hosts.append(
                LabHost(
                    name,
                    hvars.get("ansible_host", name),
                    bool(hvars.get("lab_offline")),
                    network=str(hvars.get("lab_network") or "none"),
                    sshd_listen=str(hvars.get("lab_sshd_listen") or ""),
                    dc=hvars.get("lab_role") == "domain_controller",
                    caps=tuple(hvars.get("lab_caps") or ()),
                    group=group_name,
                )
            )
        for child_name, child in (group.get("children") or {}).items():
            walk(child or {}, child_name)

    walk(data["lab"])
    return hosts


def plant_digest(root: Path) -> str:
    """Fingerprint of what the lab plants (playbooks/lab and the lab inventory). Containers carry it as a
    label: a container planted from other definitions is recreated, since planting over an older lab
    keeps what a replant cannot see (a package of the same version with other contents)."""
    digest = hashlib.sha256()
    for base in (root / "playbooks" / "lab", root / "inventories" / "lab"):
        for path in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def container_state(name: str) -> dict | None:
    proc = _run(["docker", "inspect", name], check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def ensure_container(host: LabHost, tag: str, plant_id: str = "") -> None:
    """Create (or recreate) and start the host's container.

    Recreated: a container built from another image or planted from other lab definitions (plant_id,
    see plant_digest), and a stopped one: a container whose daemon was killed under it (a reboot, the
    end of a CI job) can come back half-booted, and planting puts every footprint back anyway."""
    state = container_state(host.container)
    if state is not None:
        labels = state["Config"].get("Labels") or {}
        if labels.get(LABEL) != "1":
            raise LabError(f"a container named {host.container} exists and is not a lab container: remove it")
        stale = labels.get(f"{LABEL}.plant", "") != plant_id
        if stale or state["Config"]["Image"] != tag or not state["State"]["Running"]:
            _run(["docker", "rm", "-f", host.container])
            state = None
    if state is None:
        _run(
            [
                "docker",
                "create",
                "--name",
                host.container,
                "--label",
                f"{LABEL}=1",
                "--label",
                f"{LABEL}.host={host.name}",
                "--label",
                f"{LABEL}.plant={plant_id}",
                *_run_args(host),
                tag,
            ]
        )
        if host.network == "host":
            _restrict_sshd(host)
    if state is None:
        _run(["docker", "start", host.container])


def _run_args(host: LabHost) -> list[str]:
    if host.network not in ("none", "host"):
        raise LabError(f"{host.name}: lab_network must be none or host, not {host.network!r}")
    if host.sshd_listen and not host.sshd_listen.startswith("127."):
        raise LabError(f"{host.name}: lab_sshd_listen must be a 127.x.y.z:port address")
    args = ["--network", host.network, *RUN_ARGS]
    for cap in host.caps:
        args += ["--cap-add", cap]
    return [*args, "--hostname", host.name]


def _restrict_sshd(host: LabHost) -> None:
    """Before the first boot of a host-network container: its sshd binds only its own loopback address
    (sshd_config.d is included first, and the first ListenAddress/Port given wins), or, without one, is
    masked, so that no lab container ever listens on the host's port 22."""
    if not host.sshd_listen:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for unit in ("ssh.service", "ssh.socket", "sshd.service"):
                link = tarfile.TarInfo(unit)
                link.type, link.linkname = tarfile.SYMTYPE, "/dev/null"
                tar.addfile(link)
        cmd = ["docker", "cp", "-", f"{host.container}:/etc/systemd/system/"]
        proc = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"{host.name}: cannot mask sshd: {proc.stderr.decode(errors='replace')[-400:]}")
        return
    with tempfile.TemporaryDirectory(prefix="offboard-lab-") as tmp:
        conf = Path(tmp) / "00-offboard-lab-listen.conf"
        conf.write_text(
            f"# offboard lab: this container shares the host's network; listen on its own address only\n"
            f"ListenAddress {host.sshd_listen}\n",
            encoding="utf-8",
        )
        _run(["docker", "cp", str(conf), f"{host.container}:/etc/ssh/sshd_config.d/"])


def _ansible_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(root / "ansible.cfg")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    # Planting is not an offboarding run: it leaves no evidence.
    env["OFFBOARD_NO_EVIDENCE"] = "1"
    return env


def plant(root: Path, verbose: bool = False, stdout: Any = None) -> None:
    """Run playbooks/lab/plant.yml against the lab (once more after a failure: planting is idempotent).

    Verbose: the playbook's output goes to `stdout` (default: this process's stdout)."""
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(root / "inventories" / "lab"),
        str(root / "playbooks" / "lab" / "plant.yml"),
    ]
    output: dict[str, Any] = {"stdout": stdout} if verbose else {"capture_output": True}
    proc = subprocess.run(cmd, cwd=root, env=_ansible_env(root), text=True, check=False, **output)
    if proc.returncode != 0:
        # docker_api occasionally returns an empty exec output under load; planting is idempotent, so
        # one more pass tells a transport hiccup from a real error (which fails again).
        proc = subprocess.run(cmd, cwd=root, env=_ansible_env(root), text=True, check=False, **output)
    if proc.returncode != 0:
        tail = "" if verbose else (proc.stdout or "")[-3000:]
        raise LabError(f"planting the lab failed (rc {proc.returncode}):\n{tail}")


def up(verbose: bool = False, log=print, plant_output: Any = None) -> list[LabHost]:
    """Bring the lab to its defined state: image, running containers, planted, offline host stopped."""
    root = project_root()
    ensure_docker()
    tag = ensure_image(log)
    hosts = lab_hosts(root)
    dc_tag = lab_dc.ensure_dc_image(log, root) if any(h.dc for h in hosts) else ""
    plant_id = plant_digest(root)
    for host in hosts:
        ensure_container(host, dc_tag if host.dc else tag, plant_id)
    log(f"planting footprints on {len(hosts)} lab machines")
    plant(root, verbose=verbose, stdout=plant_output)
    for host in hosts:
        if host.dc:
            log(f"{host.name}: planting the directory (OUs, accounts, GPOs)")
            lab_dc.plant(host, root)
    for host in hosts:
        if host.offline:
            _run(["docker", "stop", host.container])
            log(f"{host.name}: stopped after planting (offline device)")
    return hosts


def down(log=print) -> int:
    """Remove every lab container (and only those: selected by label)."""
    if not docker_ready():
        return 0
    ids = _run(["docker", "ps", "-aq", "--filter", f"label={LABEL}=1"]).stdout.split()
    if ids:
        _run(["docker", "rm", "-f", *ids])
    log(f"removed {len(ids)} lab container(s)")
    return len(ids)


def status_rows() -> list[tuple[str, str, str]]:
    rows = []
    ready = docker_ready()
    for host in lab_hosts():
        state = container_state(host.container) if ready else None
        status = state["State"]["Status"] if state else ("absent" if ready else "docker not running")
        expected = "stopped (offline device)" if host.offline else "running"
        rows.append((host.name, status, expected))
    return rows


def _host(name: str) -> LabHost:
    for host in lab_hosts():
        if host.name == name:
            return host
    raise LabError(f"no lab host named {name}; see `offboard lab status`")


def start_host(name: str) -> None:
    """Start one lab machine (e.g. the offline laptop coming back)."""
    _run(["docker", "start", _host(name).container])


def stop_host(name: str) -> None:
    """Stop one lab machine: it becomes an offline device."""
    _run(["docker", "stop", _host(name).container])


# --- CLI ------------------------------------------------------------------------------------------


def _err(*parts: object) -> None:
    print(*parts, file=sys.stderr)


def _fail(args: argparse.Namespace, exc: LabError) -> int:
    _err(f"offboard lab {args.lab_command}: {exc}")
    if getattr(args, "json", False):
        return jsonout.emit(f"lab {args.lab_command}", 1, {"error": str(exc)})
    return 1


def _cmd_up(args: argparse.Namespace) -> int:
    try:
        if args.json:  # progress and the plant playbook's output go to stderr: stdout is the JSON document
            up(verbose=args.verbose, log=_err, plant_output=sys.stderr)
        else:
            up(verbose=args.verbose)
    except LabError as exc:
        return _fail(args, exc)
    return _cmd_status(args)


def _cmd_down(args: argparse.Namespace) -> int:
    try:
        removed = down(log=_err if args.json else print)
    except LabError as exc:
        return _fail(args, exc)
    if args.json:
        return jsonout.emit("lab down", 0, {"removed": removed})
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    rows = status_rows()
    ok = all(_as_expected(status, expected) for _, status, expected in rows)
    if args.json:
        hosts = [
            {
                "host": name,
                "container": status,
                "expected": expected,
                "as_expected": _as_expected(status, expected),
            }
            for name, status, expected in rows
        ]
        return jsonout.emit(f"lab {args.lab_command}", 0 if ok else 1, {"hosts": hosts})
    width = max(len(r[0]) for r in rows)
    print(f"{'HOST':<{width}}  {'CONTAINER':<10}  EXPECTED")
    for name, status, expected in rows:
        print(f"{name:<{width}}  {status:<10}  {expected}")
    return 0 if ok else 1


def _as_expected(status: str, expected: str) -> bool:
    return status == ("exited" if expected.startswith("stopped") else "running")


def _cmd_power(args: argparse.Namespace) -> int:
    action = start_host if args.lab_command == "start" else stop_host
    try:
        action(args.host)
    except LabError as exc:
        return _fail(args, exc)
    if args.json:
        return jsonout.emit(f"lab {args.lab_command}", 0, {"host": args.host})
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    lab = subparsers.add_parser(
        "lab",
        help="the built-in demo client: containers that play the lab client's machines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    sub.required = True
    p_up = sub.add_parser("up", help="build the image if needed, create, plant, stop the offline laptop")
    p_up.add_argument("-v", "--verbose", action="store_true", help="show the plant playbook's output")
    p_up.set_defaults(func=_cmd_up)
    p_down = sub.add_parser("down", help="remove the lab's containers (only those)")
    p_down.set_defaults(func=_cmd_down)
    p_status = sub.add_parser("status", help="one line per lab machine: container state")
    p_status.set_defaults(func=_cmd_status)
    p_start = sub.add_parser("start", help="start one lab machine, e.g. the offline laptop coming back")
    p_start.add_argument("host")
    p_start.set_defaults(func=_cmd_power)
    p_stop = sub.add_parser("stop", help="stop one lab machine (take it offline)")
    p_stop.add_argument("host")
    p_stop.set_defaults(func=_cmd_power)
    for parser in (p_up, p_down, p_status, p_start, p_stop):
        jsonout.add_flag(parser)
