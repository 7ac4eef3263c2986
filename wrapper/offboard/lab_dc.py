"""The lab's Samba AD domain controller (lab-dc01, realm lab.test, NetBIOS domain LAB).

Built once per content hash as the image `offboard-lab-dc:<hash>`: a Debian rootfs with the lab's base
packages plus Samba (mmdebstrap + docker import), started once in a throw-away container that runs
playbooks/lab/dc/provision.sh (domain provisioning, about 10 s), then committed. Every lab DC container
(and the gpo_cleanup molecule scenario) starts from that already provisioned image: Samba answers in
seconds, and `offboard lab up` never provisions again. The directory content (OUs, MSP and client
accounts, MSP and client GPOs with their links) is planted by playbooks/lab/dc/plant.py on every
`lab up`; it only repairs what changed. See docs/lab.md.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from offboard import lab_image
from offboard.paths import project_root

DC_IMAGE_REPO = "offboard-lab-dc"
# Samba as an AD DC with its tools; python3-samba for the plant script and the gpo_cleanup role.
DC_PACKAGES = (
    "samba",
    "samba-ad-dc",
    "samba-ad-provision",
    "samba-dsdb-modules",
    "samba-vfs-modules",
    "winbind",
    "krb5-user",
    "ldb-tools",
    "ldap-utils",
    "smbclient",
    "python3-samba",
)
# The DC's host name is part of the provisioned directory (NetBIOS name LAB-DC01).
DC_HOSTNAME = "lab-dc01"
PROVISION_TIMEOUT = 300
PLANT_TIMEOUT = 300


# systemd's bus appears a moment after the container starts; "degraded" still means booted.
_WAIT_BOOT = b"""
for i in $(seq 100); do
  case "$(systemctl is-system-running --wait 2>/dev/null)" in running|degraded) exit 0;; esac
  sleep 1
done
echo "systemd did not finish booting" >&2; exit 1
"""


def _dc_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "playbooks" / "lab" / "dc"


def dc_image_tag(root: Path | None = None) -> str:
    """Content-addressed: base packages, Samba packages and the provisioning script."""
    script = (_dc_dir(root) / "provision.sh").read_bytes()
    digest = hashlib.sha256(
        json.dumps(
            [
                lab_image.SUITE,
                sorted(lab_image.PACKAGES + DC_PACKAGES),
                sorted(lab_image.DISABLED_UNITS),
                DC_HOSTNAME,
            ]
        ).encode()
        + script
    ).hexdigest()[:12]
    return f"{DC_IMAGE_REPO}:{digest}"


def _exec(container: str, argv: list[str], stdin: bytes, timeout: float, what: str) -> str:
    try:
        proc = subprocess.run(
            ["docker", "exec", "-i", container, *argv], input=stdin, capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise lab_image.LabError(f"{what} on {container} did not finish within {timeout:.0f}s") from exc
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        detail = (proc.stderr.decode(errors="replace") + out).strip()[-1500:]
        raise lab_image.LabError(f"{what} on {container} failed (rc {proc.returncode}): {detail}")
    return out


def ensure_dc_image(log=print, root: Path | None = None) -> str:
    """Build and provision the DC image unless its tag exists; also tag it :latest (molecule)."""
    tag = dc_image_tag(root)
    if not lab_image.image_exists(tag):
        if shutil.which("mmdebstrap") is None:
            raise lab_image.LabError(
                "mmdebstrap is not installed: apt-get install -y mmdebstrap (make demo does this)"
            )
        digest = tag.split(":", 1)[1]
        build_tag = f"{DC_IMAGE_REPO}-build:{digest}"
        build_name = f"offboard-lab-dc-build-{digest}"
        log(f"building the lab DC image {tag}: Debian + Samba with mmdebstrap, then provisioning (~2 min)")
        lab_image.build_image(lab_image.PACKAGES + DC_PACKAGES, build_tag)
        lab_image.run(["docker", "rm", "-f", build_name], check=False)
        try:
            lab_image.run(
                [
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    build_name,
                    "--hostname",
                    DC_HOSTNAME,
                    *lab_image.RUN_ARGS,
                    build_tag,
                ]
            )
            _exec(build_name, ["/bin/sh", "-s"], _WAIT_BOOT, 120, "booting")
            script = (_dc_dir(root) / "provision.sh").read_bytes()
            out = _exec(build_name, ["/bin/sh", "-s"], script, PROVISION_TIMEOUT, "provisioning the Samba DC")
            if "PROVISIONED" not in out:
                raise lab_image.LabError(f"provisioning the Samba DC did not complete: {out[-800:]}")
            lab_image.run(["docker", "stop", build_name])
            lab_image.run(["docker", "commit", build_name, tag])
        finally:
            lab_image.run(["docker", "rm", "-f", build_name], check=False)
            lab_image.run(["docker", "rmi", build_tag], check=False)
    lab_image.run(["docker", "tag", tag, f"{DC_IMAGE_REPO}:latest"])
    return tag


def plant(host: lab_image.LabHost, root: Path | None = None) -> bool:
    """Plant (or repair) the DC's directory content; True when something had to change."""
    script = (_dc_dir(root) / "plant.py").read_bytes()
    out = _exec(host.container, ["python3", "-"], script, PLANT_TIMEOUT, "planting the directory")
    return "UNCHANGED" not in out.splitlines()[-1:]
