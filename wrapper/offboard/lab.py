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
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from offboard.paths import project_root

IMAGE_REPO = "offboard-lab"
LABEL = "io.offboard.lab"
SUITE = "bookworm"
# Everything the lab hosts and the molecule scenarios need on a target. Part of the image's content
# hash: changing this list builds a new image.
PACKAGES = (
    "python3",
    "python3-apt",
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "cron",
    "sudo",
    "procps",
    # The network lab machines (issue 7): lab-fw01 (nftables firewall with SNMP and syslog) and lab-dns01
    # (BIND serving the client's zones on 127.0.0.1:5300).
    "nftables",
    "snmpd",
    "rsyslog",
    "bind9",
)
# Services that come with those packages start only where the plant script enables them: named with
# Debian's defaults would listen on port 53 of the host's interfaces in lab-dns01 (--network host).
DISABLED_UNITS = ("named.service", "snmpd.service", "rsyslog.service", "nftables.service")
DOCKERD_ARGS = ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")
RUN_ARGS = (
    "--cap-add",
    "SYS_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    # systemd shuts down cleanly and fast on SIGRTMIN+3 (0.2 s instead of a 10 s kill).
    "--stop-signal",
    "SIGRTMIN+3",
)


class LabError(RuntimeError):
    """The lab could not be brought to the asked state; the message says why and what to do."""


@dataclass(frozen=True)
class LabHost:
    name: str
    container: str
    offline: bool
    # "none" (default: docker_api only) or "host": the container shares the host's network namespace.
    # With `sshd_listen` its sshd listens only there (its own 127.x address), for real SSH logins (access
    # phase); without it sshd is masked before the first boot (a lab service must never bind the host's :22).
    network: str = "none"
    sshd_listen: str = ""
    # The lab's Samba AD domain controller (host var `lab_role: domain_controller`; see lab_dc.py).
    dc: bool = False
    caps: tuple[str, ...] = ()  # lab_caps: extra capabilities, e.g. NET_ADMIN for nftables
    group: str = ""  # the inventory group the host sits in (lab_network: firewall and DNS server)


def _run(cmd: list[str], *, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, text=True, capture_output=quiet, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip() if quiet else ""
        raise LabError(f"{' '.join(cmd[:3])} ... failed (rc {proc.returncode}): {detail[-800:]}")
    return proc


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


def image_tag() -> str:
    """Content-addressed tag: same package list and suite -> same image, built once."""
    digest = hashlib.sha256(
        json.dumps([SUITE, sorted(PACKAGES), sorted(DISABLED_UNITS)]).encode()
    ).hexdigest()[:12]
    return f"{IMAGE_REPO}:{digest}"


def plant_digest(root: Path) -> str:
    """Fingerprint of what the lab plants (playbooks/lab and the lab inventory). Containers carry it as a
    label: a container planted from other definitions is recreated, since planting over an older lab
    keeps what a replant cannot see (a package of the same version with other contents)."""
    digest = hashlib.sha256()
    for base in (root / "playbooks" / "lab", root / "inventories" / "lab"):
        for path in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def docker_ready() -> bool:
    return shutil.which("docker") is not None and _run(["docker", "info"], check=False).returncode == 0


def ensure_docker(timeout: float = 60.0) -> None:
    """Start dockerd (bridge off: containers get no network) unless a daemon already answers."""
    if docker_ready():
        return
    if shutil.which("dockerd") is None:
        raise LabError("dockerd is not installed: apt-get install -y docker.io (make demo does this)")
    log = Path(os.environ.get("OFFBOARD_DOCKERD_LOG", "/var/log/offboard-dockerd.log"))
    with log.open("ab") as handle:
        subprocess.Popen(
            ["dockerd", *DOCKERD_ARGS],
            stdout=handle,
            stderr=handle,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_ready():
            return
        time.sleep(0.5)
    raise LabError(f"dockerd did not answer within {timeout:.0f}s; see {log}")


def image_exists(tag: str) -> bool:
    return _run(["docker", "image", "inspect", tag], check=False).returncode == 0


def build_image(packages: tuple[str, ...], tag: str) -> None:
    """Debian rootfs with mmdebstrap, imported as a systemd image. Services that would listen on the
    host's interfaces in a host-network container (DISABLED_UNITS) start only where a plant enables
    them: in every image built from the lab's packages, the DC's too (its named would take port 53
    from Samba's DNS)."""
    with tempfile.TemporaryDirectory(prefix="offboard-lab-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                f'--customize-hook=chroot "$1" systemctl disable {" ".join(DISABLED_UNITS)}',
                SUITE,
                str(tar),
            ]
        )
        _run(["docker", "import", "--change", 'CMD ["/lib/systemd/systemd"]', str(tar), tag])


def ensure_image(log=print) -> str:
    """Build the lab image unless the content-addressed tag exists; also tag it :latest (molecule)."""
    tag = image_tag()
    if not image_exists(tag):
        if shutil.which("mmdebstrap") is None:
            raise LabError("mmdebstrap is not installed: apt-get install -y mmdebstrap (make demo does this)")
        log(f"building lab image {tag} with mmdebstrap (about 30 s)")
        build_image(PACKAGES, tag)
    _run(["docker", "tag", tag, f"{IMAGE_REPO}:latest"])
    return tag


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


def plant(root: Path, verbose: bool = False) -> None:
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(root / "inventories" / "lab"),
        str(root / "playbooks" / "lab" / "plant.yml"),
    ]
    proc = subprocess.run(cmd, cwd=root, env=_ansible_env(root), text=True, capture_output=not verbose)
    if proc.returncode != 0:
        # docker_api occasionally returns an empty exec output under load; planting is idempotent, so
        # one more pass tells a transport hiccup from a real error (which fails again).
        proc = subprocess.run(cmd, cwd=root, env=_ansible_env(root), text=True, capture_output=not verbose)
    if proc.returncode != 0:
        tail = "" if verbose else (proc.stdout or "")[-3000:]
        raise LabError(f"planting the lab failed (rc {proc.returncode}):\n{tail}")


def up(verbose: bool = False, log=print) -> list[LabHost]:
    """Bring the lab to its defined state: image, running containers, planted, offline host stopped."""
    from offboard import lab_dc  # imports this module

    root = project_root()
    ensure_docker()
    tag = ensure_image(log)
    hosts = lab_hosts(root)
    dc_tag = lab_dc.ensure_dc_image(log, root) if any(h.dc for h in hosts) else ""
    plant_id = plant_digest(root)
    for host in hosts:
        ensure_container(host, dc_tag if host.dc else tag, plant_id)
    log(f"planting footprints on {len(hosts)} lab machines")
    plant(root, verbose=verbose)
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


def _cmd_up(args: argparse.Namespace) -> int:
    try:
        up(verbose=args.verbose)
    except LabError as exc:
        print(f"offboard lab up: {exc}", file=sys.stderr)
        return 1
    return _cmd_status(args)


def _cmd_down(args: argparse.Namespace) -> int:
    try:
        down()
    except LabError as exc:
        print(f"offboard lab down: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    rows = status_rows()
    width = max(len(r[0]) for r in rows)
    print(f"{'HOST':<{width}}  {'CONTAINER':<10}  EXPECTED")
    for name, status, expected in rows:
        print(f"{name:<{width}}  {status:<10}  {expected}")
    ok = all(
        status == ("exited" if expected.startswith("stopped") else "running") for _, status, expected in rows
    )
    return 0 if ok else 1


def _cmd_power(args: argparse.Namespace) -> int:
    action = start_host if args.lab_command == "start" else stop_host
    try:
        action(args.host)
    except LabError as exc:
        print(f"offboard lab {args.lab_command}: {exc}", file=sys.stderr)
        return 1
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
    sub.add_parser("down", help="remove the lab's containers (only those)").set_defaults(func=_cmd_down)
    sub.add_parser("status", help="one line per lab machine: container state").set_defaults(func=_cmd_status)
    p_start = sub.add_parser("start", help="start one lab machine, e.g. the offline laptop coming back")
    p_start.add_argument("host")
    p_start.set_defaults(func=_cmd_power)
    p_stop = sub.add_parser("stop", help="stop one lab machine (take it offline)")
    p_stop.add_argument("host")
    p_stop.set_defaults(func=_cmd_power)
