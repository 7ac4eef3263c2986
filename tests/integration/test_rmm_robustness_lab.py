"""A hung vendor uninstaller is bounded: killed with its whole process tree at its timeout, recorded as
timed out, and the next layers (package manager, forced cleanup) still remove that agent; the other agents
and hosts go on. (Before the layered engine, a hung uninstaller failed its agent outright: issue 13.)"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import playbook

pytestmark = pytest.mark.lab

HUNG = (
    "#!/bin/sh\n# stands in for a vendor uninstaller waiting forever for a dialog nobody sees\nsleep 3600\n"
)


def test_hung_uninstaller_is_killed_at_its_timeout_and_the_agent_still_removed(lab):
    srv01 = next(h for h in lab.online if h.name == "lab-srv01")
    # ConnectWise Automate's uninstaller on lab-srv01 now hangs, and starts a child that hangs too.
    write = lab.exec(srv01, "sh", "-c", f"cat > /usr/local/ltechagent/uninstaller.sh <<'EOF'\n{HUNG}EOF")
    assert write.returncode == 0, write.stderr

    started = time.monotonic()
    proc = playbook("offboard.yml", "-l", "lab", "--tags", "agents", "-e", "rmm_agent_removal_timeout=5")
    elapsed = time.monotonic() - started
    out = proc.stdout

    # Nothing failed (4: the offline laptop is unreachable), in bounded time: one 5 s timeout, not an hour.
    assert proc.returncode == 4, out[-3000:]
    recap = dict(re.findall(r"^(lab-\S+)\s+:.*failed=(\d+)", out.split("PLAY RECAP")[-1], re.M))
    assert set(recap.values()) == {"0"}, recap
    assert elapsed < 300

    run_dir = Path(re.search(r"offboard evidence: (\S+)", out).group(1))
    records = [json.loads(x) for x in (run_dir / "records.jsonl").read_text().splitlines() if x.strip()]
    by = {(r.get("host"), r.get("item")): r for r in records if r.get("component") == "rmm_agent"}
    automate = by[("lab-srv01", "connectwise_automate")]
    first = automate["after"]["attempts"][0]
    assert first["method"] == "vendor_uninstaller" and first["timed_out"] is True and first["rc"] is None
    assert "timed out after 5 s" in first["detail"]
    assert automate["action"] == "removed" and automate["verification"]["result"] == "verified_absent"
    assert automate["after"]["method"] in ("package_manager", "forced")
    # The same host's other agent, and the other hosts, were processed.
    assert by[("lab-srv01", "datto_rmm")]["action"] == "removed"
    assert by[("lab-srv02", "tactical_rmm")]["action"] == "removed"
    assert by[("lab-ws01", "ninjaone")]["action"] == "removed"
    # Nothing of the hung uninstaller is left running on the host.
    assert "uninstaller.sh" not in lab.exec(srv01, "ps", "-eo", "args").stdout
