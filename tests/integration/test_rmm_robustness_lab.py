"""A hung vendor uninstaller fails that agent only, within its timeout; other agents and hosts go on."""

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


def test_hung_uninstaller_fails_only_that_agent_within_the_timeout(lab):
    srv01 = next(h for h in lab.online if h.name == "lab-srv01")
    # ConnectWise Automate's uninstaller on lab-srv01 now hangs.
    write = lab.exec(srv01, "sh", "-c", f"cat > /usr/local/ltechagent/uninstaller.sh <<'EOF'\n{HUNG}EOF")
    assert write.returncode == 0, write.stderr

    started = time.monotonic()
    proc = playbook("offboard.yml", "-l", "lab", "--tags", "agents", "-e", "rmm_agent_removal_timeout=5")
    elapsed = time.monotonic() - started
    out = proc.stdout

    # The run fails (ansible-playbook reports 4 when a host is also unreachable: the offline laptop),
    # lab-srv01 fails by name, and no other host fails.
    assert proc.returncode in (2, 4), out[-3000:]
    assert "Could not remove connectwise_automate on lab-srv01" in out
    recap = dict(re.findall(r"^(lab-\S+)\s+:.*failed=(\d+)", out.split("PLAY RECAP")[-1], re.M))
    assert recap.pop("lab-srv01") == "1"
    assert set(recap.values()) == {"0"}, recap
    # Bounded: one 5 s timeout (+10 s kill grace at most), not the uninstaller's hour.
    assert elapsed < 300

    run_dir = Path(re.search(r"offboard evidence: (\S+)", out).group(1))
    records = [json.loads(x) for x in (run_dir / "records.jsonl").read_text().splitlines() if x.strip()]
    by = {(r.get("host"), r.get("item")): r for r in records if r.get("component") == "rmm_agent"}
    failed = by[("lab-srv01", "connectwise_automate")]
    assert failed["action"] == "failed"
    assert "124" in failed["error"], failed["error"]  # coreutils timeout's exit code: timed out
    # The same host's other agent, and the other hosts, were processed.
    assert by[("lab-srv01", "datto_rmm")]["action"] == "removed"
    assert by[("lab-srv02", "tactical_rmm")]["action"] == "removed"
    assert by[("lab-ws01", "ninjaone")]["action"] == "removed"
    # Nothing of the hung uninstaller is left running on the host.
    assert "uninstaller.sh" not in lab.exec(srv01, "ps", "-eo", "args").stdout
