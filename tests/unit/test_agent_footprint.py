"""agent_footprint's safety rules: never delete system folders, whatever the catalog says."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("agent_footprint", ROOT / "plugins/modules/agent_footprint.py")
module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(module)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/opt",
        "/opt/",
        "/usr/local/bin",
        "/etc/systemd/system",
        "/Library/LaunchDaemons",
        "relative/path",
        "/opt/*",
        "/opt/../etc",
        "/etc",
        "/var/lib",
    ],
)
def test_protected_or_unsafe_paths_are_never_deleted(path):
    assert not module.safe_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "/opt/NinjaRMMAgent",
        "/usr/local/bin/tacticalagent",
        "/etc/systemd/system/tacticalagent.service",
        "/Library/LaunchDaemons/tacticalagent.plist",
    ],
)
def test_agent_paths_may_be_deleted(path):
    assert module.safe_path(path)


def test_a_script_run_by_a_shell_is_matched_by_its_path():
    proc = {
        "pid": 1,
        "comm": "ninjarmm-linage",
        "argv": ["/bin/sh", "/opt/NinjaRMMAgent/x"],
        "exe": "/usr/bin/dash",
    }
    assert "/opt/NinjaRMMAgent/x" in module.program_paths(proc)
    assert module.within("/opt/NinjaRMMAgent/x", ["/opt/NinjaRMMAgent"])
    assert not module.within("/opt/NinjaRMMAgentOther/x", ["/opt/NinjaRMMAgent"])
