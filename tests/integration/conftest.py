"""Fixtures that bring the lab up for real: docker daemon, locally built image, planted containers.

Nothing is skipped when a component is missing: the fixture starts it, or the test fails saying why.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from offboard import lab as lab_mod

# What the MSP planted, per lab host, as probes that must all come back empty after removal.
MSP_PROBES = {
    "packages": ["ninjarmm-agent", "centrastage", "teamviewer-host", "connectwisecontrol-5e0b1c2d3a4f6789"],
    "units": [
        "tacticalagent.service",
        "meshagent.service",
        "ninjarmm-agent.service",
        "ltechagent.service",
        "cagservice.service",
        "superops-agent.service",
        "teamviewerd.service",
        "connectwisecontrol-5e0b1c2d3a4f6789.service",
    ],
    "paths": [
        "/usr/local/bin/tacticalagent",
        "/etc/tacticalagent",
        "/opt/tacticalagent",
        "/opt/tacticalmesh",
        "/opt/NinjaRMMAgent",
        "/usr/local/ltechagent",
        "/opt/CentraStage",
        "/usr/local/share/CentraStage",
        "/opt/superopsrmm",
        "/opt/teamviewer",
        "/opt/connectwisecontrol-5e0b1c2d3a4f6789",
        "/etc/systemd/system/tacticalagent.service",
        "/lib/systemd/system/meshagent.service",
        "/usr/lib/systemd/system/ltechagent.service",
    ],
}
# The client's own software: must be exactly as planted after any run.
CLIENT_PROBES = {
    "packages": ["labclient-inventory", "connectwisecontrol-c0ffee00c11e0001"],
    "units": ["labclient-inventory.service", "connectwisecontrol-c0ffee00c11e0001.service"],
    "paths": [
        "/opt/labclient/inventory-agent",
        "/opt/labclient/config.ini",
        "/etc/cron.d/labclient-backup",
        "/opt/connectwisecontrol-c0ffee00c11e0001/connectwisecontrol",
    ],
}


def probed_state(snapshot: dict, probes: dict[str, list[str]]) -> dict[str, dict]:
    """A snapshot's packages, units and paths narrowed to the ones probes names (e.g. the client's own)."""
    kinds = ("packages", "units", "paths")
    return {kind: {name: snapshot[kind][name] for name in probes[kind]} for kind in kinds}


_SNAPSHOT_SCRIPT = r"""
import json, os, subprocess, sys
probes = json.loads(sys.argv[1])
def run(*a):
    return subprocess.run(a, capture_output=True, text=True).stdout.strip()
out = {"packages": {}, "units": {}, "paths": {}, "processes": []}
for p in probes["packages"]:
    out["packages"][p] = run("dpkg-query", "-W", "-f=${Status} ${Version}", p)
for u in probes["units"]:
    out["units"][u] = run("systemctl", "show", "-p", "LoadState,ActiveState,UnitFileState", "--value", u)
for p in probes["paths"]:
    out["paths"][p] = os.path.lexists(p)
out["processes"] = sorted(run("ps", "-eo", "args=").splitlines())
out["processes"] = [p for p in out["processes"] if not p.startswith(("ps ", "python3", "sleep"))]
print(json.dumps(out))
"""


@dataclass
class Lab:
    hosts: list[lab_mod.LabHost]

    @property
    def online(self) -> list[lab_mod.LabHost]:
        return [h for h in self.hosts if not h.offline]

    @property
    def offline(self) -> list[lab_mod.LabHost]:
        return [h for h in self.hosts if h.offline]

    def exec(self, host: lab_mod.LabHost, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", host.container, *cmd], text=True, capture_output=True, check=False, timeout=60
        )

    def snapshot(self, host: lab_mod.LabHost, probes: dict | None = None) -> dict:
        """Everything observable about the planted footprints on one running host."""
        probes = probes or {k: MSP_PROBES[k] + CLIENT_PROBES[k] for k in MSP_PROBES}
        proc = self.exec(host, "python3", "-c", _SNAPSHOT_SCRIPT, json.dumps(probes))
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    @property
    def endpoints(self) -> list[lab_mod.LabHost]:
        """Online servers and workstations: the machines agents are planted on. Not the network gear, not
        the domain controller (its planted state is directory content: tests/integration/test_gpo_lab.py)."""
        return [h for h in self.online if h.group != "lab_network" and not h.dc]

    def snapshot_all(self) -> dict[str, dict]:
        return {h.name: self.snapshot(h) for h in self.endpoints}

    def replant(self) -> None:
        """Put every footprint back (also on the offline laptop, which is stopped again)."""
        self.hosts = lab_mod.up(log=lambda _msg: None)


LAB_LOCK = "/tmp/offboard-lab.lock"


@pytest.fixture(scope="session", autouse=True)
def _one_lab_user_at_a_time() -> Iterator[None]:
    """The lab's containers are machine-wide: two test sessions (two checkouts) must not replant them
    under each other. Waits for the other session instead of failing."""
    with open(LAB_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def lab_session() -> Lab:
    return Lab(lab_mod.up(log=lambda _msg: None))


@pytest.fixture
def lab(lab_session: Lab) -> Iterator[Lab]:
    """A freshly planted lab for each test that takes it: tests may remove agents freely."""
    lab_session.replant()
    yield lab_session
