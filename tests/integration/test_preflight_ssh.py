"""`offboard preflight` against a real sshd on 127.0.0.1: reachable, auth_failed and unreachable hosts.

The fixture starts its own sshd (own config, host key, authorized key, high port; killed at teardown)
and writes a throw-away client inventory; the test runs the real CLI. Nothing is skipped: without
/usr/sbin/sshd the test fails saying what to install. No docker, no address outside 127.0.0.0/8.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT, run_tool

SSHD = Path("/usr/sbin/sshd")
LOOPBACK = "127.0.0.1"
EXIT_ERROR = 1  # documented: 0 all reachable, 1 some auth failed, 2 usage, 75 some unreachable


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _wait_for_banner(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"sshd did not answer on {LOOPBACK}:{port} within 10 s: {log.read_text(errors='replace')}")


@dataclass
class Sshd:
    port: int
    good_key: Path
    bad_key: Path
    known_hosts: Path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if not SSHD.is_file():
        pytest.fail(
            f"{SSHD} not found: install the openssh-server package (apt-get install -y openssh-server; "
            "it is in the Makefile's APT_PACKAGES, so `make system` installs it)"
        )
    d = tmp_path / "sshd"
    d.mkdir()
    host_key, good_key, bad_key = d / "host_ed25519", d / "client_good", d / "client_bad"
    for key in (host_key, good_key, bad_key):
        _keygen(key)
    authorized = d / "authorized_keys"
    authorized.write_text(good_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[{LOOPBACK}]:{port} {host_key.with_suffix('.pub').read_text()}")
    config = d / "sshd_config"
    config.write_text(
        f"ListenAddress {LOOPBACK}\n"
        f"Port {port}\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "LogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        # sshd started as root insists on its privilege-separation directory (normally made by systemd).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = d / "sshd.log"
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config), "-E", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_banner(port, proc, log)
        yield Sshd(port, good_key, bad_key, known_hosts)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _project(tmp_path: Path, sshd: Sshd) -> Path:
    """A throw-away project: the repository's wiring and one client `acme` with three SSH hosts."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("offboard.yml", "ansible.cfg"):
        shutil.copy2(ROOT / name, project / name)
    for name in ("playbooks", "roles", "plugins", "collections"):
        if (ROOT / name).exists():
            (project / name).symlink_to(ROOT / name)
    client = project / "inventories" / "acme"
    (client / "group_vars").mkdir(parents=True)
    common_args = f"-o UserKnownHostsFile={sshd.known_hosts} -o StrictHostKeyChecking=yes"
    (client / "hosts.yml").write_text(
        f"""---
acme:
  vars:
    ansible_connection: ssh
    ansible_host: {LOOPBACK}
    ansible_user: {getpass.getuser()}
    ansible_ssh_common_args: "{common_args}"
  hosts:
    acme-up: {{ansible_port: {sshd.port}, ansible_ssh_private_key_file: {sshd.good_key}}}
    acme-badkey: {{ansible_port: {sshd.port}, ansible_ssh_private_key_file: {sshd.bad_key}}}
    acme-down: {{ansible_port: {_free_port()}, ansible_ssh_private_key_file: {sshd.good_key}}}
"""
    )
    (client / "group_vars" / "acme.yml").write_text(
        """---
offboard_client_id: acme
offboard_client_name: Acme Test Ltd (throw-away, preflight over SSH)
offboard_msp_name: Departing MSP Inc.
offboard_dates:
  start: "2026-11-02"
  contract_end: "2026-12-31"
  access_revocation: "2026-11-20"
offboard_msp_products: []
"""
    )
    return project


def test_preflight_classifies_ssh_hosts_for_real(tmp_path: Path, sshd: Sshd) -> None:
    project = _project(tmp_path, sshd)
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)  # only the inventory's keys count, not an agent's
    env.pop("ANSIBLE_CONFIG", None)
    env.update(
        OFFBOARD_PROJECT_DIR=str(project),
        OFFBOARD_EVIDENCE_DIR=str(tmp_path / "evidence"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    start = time.monotonic()
    out = run_tool([str(BIN / "offboard"), "preflight", "acme", "--json"], cwd=tmp_path, env=env, timeout=60)
    elapsed = time.monotonic() - start
    print(f"offboard preflight acme: exit {out.returncode} in {elapsed:.2f} s\n{out.stdout}")
    assert out.stdout.strip(), f"no output (exit {out.returncode}): {out.stderr}"
    rows = {row["host"]: row for row in json.loads(out.stdout)["hosts"]}
    detail = json.dumps(rows, indent=1) + "\n" + out.stderr
    assert {h: r["state"] for h, r in rows.items()} == {
        "acme-up": "reachable",
        "acme-badkey": "auth_failed",
        "acme-down": "unreachable",
    }, detail
    assert rows["acme-up"]["reason"] == "ssh login ok", detail
    assert "Permission denied" in rows["acme-badkey"]["reason"], detail
    assert "refused" in rows["acme-down"]["reason"].lower(), detail
    assert all(r["connection"] == "ssh" for r in rows.values()), detail
    assert all(r["seconds"] < 5 for r in rows.values()), detail
    assert elapsed < 20, f"preflight took {elapsed:.1f} s\n{detail}"
    # Documented: 1 when some host failed authentication (it wins over 75 for an unreachable host).
    assert out.returncode == EXIT_ERROR, detail
    # Changes nothing, keeps no evidence.
    assert not (tmp_path / "evidence" / "acme").exists()
    assert not (project / "evidence").exists()
