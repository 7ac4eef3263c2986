"""A planted lab machine survives a reboot: every boot job it carries returns, so systemd finishes
booting. (A planted rc.local line that never returned once kept a restarted machine "starting" for an
hour, and the plant's boot wait with it: CI ran out of time.)"""

from __future__ import annotations

import subprocess
import time

import pytest

pytestmark = pytest.mark.lab


def test_a_planted_machine_reboots_to_a_finished_boot(lab):
    with_rc_local = [h for h in lab.endpoints if lab.exec(h, "test", "-x", "/etc/rc.local").returncode == 0]
    assert with_rc_local, "no lab endpoint carries the planted /etc/rc.local any more: adjust this test"
    host = with_rc_local[0]
    subprocess.run(["docker", "restart", "-t", "2", host.container], check=True, capture_output=True)
    # Right after the restart systemd may not answer yet: ask again until the boot is over or 90 s passed.
    deadline = time.monotonic() + 90
    state = ""
    while time.monotonic() < deadline and state not in ("running", "degraded"):
        proc = lab.exec(host, "timeout", "30", "systemctl", "is-system-running", "--wait")
        state = proc.stdout.strip()
        if state not in ("running", "degraded"):
            time.sleep(1)
    jobs = lab.exec(host, "systemctl", "list-jobs", "--no-pager").stdout
    assert state in ("running", "degraded"), f"{host.name} did not finish booting ({state!r}):\n{jobs}"
