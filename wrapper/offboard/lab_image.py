"""The lab's base: the Debian systemd image, the docker daemon, and the types both lab.py and lab_dc.py use.

The image is built locally (mmdebstrap + docker import; no registry is needed) and content-addressed:
the same package list and suite give the same tag, built once. The docker daemon is started with its
bridge disabled, so no lab container gets a network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

IMAGE_REPO = "offboard-lab"
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
    """One lab machine of inventories/lab/ and the container that plays it."""

    name: str
    container: str
    offline: bool = False  # lab_offline: stopped after planting (the laptop in a desk drawer)
    # "none" (default: docker_api only) or "host": the container shares the host's network namespace.
    # With `sshd_listen` its sshd listens only there (its own 127.x address), for real SSH logins (access
    # phase); without it sshd is masked before the first boot (a lab service must never bind the host's :22).
    network: str = "none"
    sshd_listen: str = ""
    # The lab's Samba AD domain controller (host var `lab_role: domain_controller`; see lab_dc.py).
    dc: bool = False
    caps: tuple[str, ...] = ()  # lab_caps: extra capabilities, e.g. NET_ADMIN for nftables
    group: str = ""  # the inventory group the host sits in (lab_network: firewall and DNS server)


def run(cmd: list[str], *, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (docker, mmdebstrap); LabError with the end of its output when it fails."""
    proc = subprocess.run(cmd, text=True, capture_output=quiet, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip() if quiet else ""
        raise LabError(f"{' '.join(cmd[:3])} ... failed (rc {proc.returncode}): {detail[-800:]}")
    return proc


def image_tag() -> str:
    """Content-addressed tag: same package list and suite -> same image, built once."""
    digest = hashlib.sha256(
        json.dumps([SUITE, sorted(PACKAGES), sorted(DISABLED_UNITS)]).encode()
    ).hexdigest()[:12]
    return f"{IMAGE_REPO}:{digest}"


def docker_ready() -> bool:
    """A docker CLI is installed and its daemon answers."""
    return shutil.which("docker") is not None and run(["docker", "info"], check=False).returncode == 0


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
    """The image is in the local docker store."""
    return run(["docker", "image", "inspect", tag], check=False).returncode == 0


def build_image(packages: tuple[str, ...], tag: str) -> None:
    """Debian rootfs with mmdebstrap, imported as a systemd image. Services that would listen on the
    host's interfaces in a host-network container (DISABLED_UNITS) start only where a plant enables
    them: in every image built from the lab's packages, the DC's too (its named would take port 53
    from Samba's DNS)."""
    with tempfile.TemporaryDirectory(prefix="offboard-lab-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                f'--customize-hook=chroot "$1" systemctl disable {" ".join(DISABLED_UNITS)}',
                SUITE,
                str(tar),
            ]
        )
        run(["docker", "import", "--change", 'CMD ["/lib/systemd/systemd"]', str(tar), tag])


def ensure_image(log=print) -> str:
    """Build the lab image unless the content-addressed tag exists; also tag it :latest (molecule)."""
    tag = image_tag()
    if not image_exists(tag):
        if shutil.which("mmdebstrap") is None:
            raise LabError("mmdebstrap is not installed: apt-get install -y mmdebstrap (make demo does this)")
        log(f"building lab image {tag} with mmdebstrap (about 30 s)")
        build_image(PACKAGES, tag)
    run(["docker", "tag", tag, f"{IMAGE_REPO}:latest"])
    return tag
