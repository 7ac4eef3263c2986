"""The footprint engine's verdicts and discovery by evidence, without a host.

- `verified_absent` can never be recorded while any derived footprint remains (engine and module).
- Discovery derives units, init scripts, rc.local and cron lines and processes from the vendor's paths,
  marks them `derived_from`, and leaves a client's own instance of the same tool alone.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_module

# The module imports ansible.module_utils.offboard_paths: make the project's module_utils importable.
_paths = load_module("offboard_paths", "plugins/module_utils/offboard_paths.py")
sys.modules.setdefault("ansible.module_utils.offboard_paths", _paths)
footprint = load_module("agent_footprint_engine_test", "plugins/modules/agent_footprint.py")
engine = load_module("offboard_agent_engine_test", "plugins/action/offboard_agent_engine.py")

EMPTY = {k: [] for k in ("packages", "services", "processes", "paths", "startup", "kernel_modules")}
DERIVED_LEFT = {
    "services": [{"name": "acme-helper.service", "derived_from": "ExecStart=/opt/Acme/bin/helper"}],
    "packages": [{"name": "acme-core", "version": "1", "manager": "dpkg", "derived_from": "owns /opt/Acme"}],
    "startup": [
        {"kind": "rc.local", "where": "/etc/rc.local", "entry": "/opt/Acme/agent &", "derived_from": "x"}
    ],
    "processes": [{"pid": 4242, "name": "agent", "exe": "/opt/Acme/agent", "derived_from": "runs /opt/Acme"}],
}


@pytest.mark.parametrize("kind", sorted(DERIVED_LEFT))
@pytest.mark.parametrize("module_says", [True, False])
def test_verified_absent_is_never_recorded_while_a_derived_footprint_remains(kind: str, module_says: bool):
    remaining = {**EMPTY, kind: DERIVED_LEFT[kind]}
    removal = {
        "attempts": [{"method": "vendor_uninstaller", "rc": 0}, {"method": "forced", "rc": None}],
        "method": "forced",
        "remaining": remaining,
        # Even a module that claims success is not believed while its own re-probe shows something.
        "verified_absent": module_says,
    }
    verdict = engine.outcome({"found": True}, removal, check_mode=False)
    assert verdict["action"] == "failed"
    assert verdict["result"] == "still_present"
    name = DERIVED_LEFT[kind][0].get("name") or DERIVED_LEFT[kind][0]["entry"]
    assert name in verdict["error"], verdict["error"]  # the record names what remains


def test_verified_absent_only_with_an_empty_reprobe_and_the_modules_word():
    clean = {
        "attempts": [{"method": "forced"}],
        "method": "forced",
        "remaining": EMPTY,
        "verified_absent": True,
    }
    assert engine.outcome({"found": True}, clean, False) == {
        "action": "removed",
        "result": "verified_absent",
        "error": None,
    }
    unsure = dict(clean, verified_absent=False)
    assert engine.outcome({"found": True}, unsure, False)["action"] == "failed"
    assert engine.outcome({"found": True}, None, False)["result"] == "not_verified"
    assert engine.outcome({"found": True}, None, True)["action"] == "would_remove"
    assert engine.outcome({"found": False}, None, False)["action"] == "none"


class FakeHost:
    """What the module sees of a host: nothing installed, nothing known to systemd."""

    def __init__(self, footprints: list[dict[str, Any]]):
        self.footprints = footprints

    def run(self, argv, timeout=None, env=None):
        return 0, "", ""


def test_module_removal_is_not_verified_while_the_reprobe_finds_a_derived_unit(monkeypatch):
    left = {**footprint.empty_footprint(), "services": DERIVED_LEFT["services"]}
    monkeypatch.setattr(footprint, "discover", lambda host, items, also=None: {items[0]["key"]: left})
    monkeypatch.setattr(footprint, "forced", lambda module, host, fp: ({"method": "forced", "rc": None}, []))
    monkeypatch.setattr(footprint, "uninstaller_for", lambda item: None)
    module = types.SimpleNamespace(params={"timeout": 5, "secrets": {}, "kill_timeout": 0})
    removal, _refused = footprint.remove(module, None, {"key": "acme"}, left)
    assert removal["verified_absent"] is False
    assert removal["method"] is None
    assert removal["remaining"]["services"][0]["derived_from"].startswith("ExecStart=")
    assert [a["method"] for a in removal["attempts"]] == ["forced"]
    assert engine.outcome({"found": True}, removal, False)["action"] == "failed"


# --- discovery by evidence on a fake file tree ---------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    units = tmp_path / "systemd"
    units.mkdir()
    vendor = tmp_path / "opt/connectwisecontrol-5e0b1c2d3a4f6789"
    client = tmp_path / "opt/connectwisecontrol-c0ffee00c11e0001"
    for folder in (vendor, client):
        folder.mkdir(parents=True)
    # A unit under a name the catalog does not know, running from the MSP's folder; and the client's own.
    (units / "remote-support.service").write_text(f"[Service]\nExecStart=-{vendor}/bin/client --svc\n")
    (units / "connectwisecontrol-c0ffee00c11e0001.service").write_text(
        f"[Service]\nExecStart={client}/bin/client\n"
    )
    (units / "unrelated.service").write_text("[Service]\nExecStart=/usr/bin/true\n")
    initd = {str(tmp_path / "init.d/rsupport"): f"#!/bin/sh\nstart() {{ {vendor}/bin/client & }}\n"}
    rclocal = [f"{client}/bin/client &", f"nohup {vendor}/bin/client --tray &", "exit 0"]
    cron = [
        ("/etc/cron.d/x", f"*/5 * * * * root {vendor}/bin/check"),
        ("/etc/cron.d/y", f"* * * * * root {client}/x"),
    ]
    procs = [
        {"pid": 11, "comm": "client", "argv": [f"{vendor}/bin/client"], "exe": f"{vendor}/bin/client"},
        {"pid": 12, "comm": "client", "argv": [f"{client}/bin/client"], "exe": f"{client}/bin/client"},
        {"pid": 13, "comm": "sh", "argv": ["/bin/sh", f"{vendor}/bin/watch.sh"], "exe": "/bin/dash"},
    ]
    monkeypatch.setattr(footprint, "UNIT_DIRS", (str(units),))
    monkeypatch.setattr(footprint.Host, "initd", lambda self: initd)
    monkeypatch.setattr(footprint.Host, "rclocal", lambda self: rclocal)
    monkeypatch.setattr(footprint.Host, "cron", lambda self: cron)
    monkeypatch.setattr(footprint.Host, "launchd", lambda self: {})
    monkeypatch.setattr(footprint.Host, "processes", lambda self: procs)
    monkeypatch.setattr(
        footprint.Host,
        "packages",
        lambda self, names: {
            n: {"name": n, "version": "1", "manager": "dpkg"} for n in names if n == "acme-remote"
        },
    )
    monkeypatch.setattr(footprint.Host, "owners", lambda self, paths: {"acme-remote": str(vendor)})
    monkeypatch.setattr(footprint.Host, "unit_states", lambda self, names: {})
    return tmp_path


def _discover(tree: Path) -> dict[str, Any]:
    vendor = str(tree / "opt/connectwisecontrol-5e0b1c2d3a4f6789")
    item = {
        "key": "screenconnect:5e0b1c2d3a4f6789",
        "product": "screenconnect",
        "instance": "5e0b1c2d3a4f6789",
        "packages": [],
        "services": [],
        "processes": ["client"],  # shared by every instance: never matched by name for an instance
        "paths": [vendor],
        "leftovers": {"paths": [vendor]},
    }
    module = types.SimpleNamespace(params={})
    return footprint.discover(footprint.Host(module), [item])[item["key"]]


def test_discovery_derives_units_startup_entries_processes_and_owners_from_the_vendor_paths(tree: Path):
    fp = _discover(tree)
    vendor = str(tree / "opt/connectwisecontrol-5e0b1c2d3a4f6789")
    assert [(s["name"], s["derived_from"]) for s in fp["services"]] == [
        ("remote-support.service", f"ExecStart=-{vendor}/bin/client --svc")
    ]
    kinds = sorted((e["kind"], e["where"]) for e in fp["startup"])
    assert kinds == [
        ("cron", "/etc/cron.d/x"),
        ("initd", str(tree / "init.d/rsupport")),
        ("rc.local", "/etc/rc.local"),
    ]
    assert all(e.get("derived_from") for e in fp["startup"])
    assert sorted(p["pid"] for p in fp["processes"]) == [11, 13]
    assert all(p["derived_from"].startswith("runs ") for p in fp["processes"])
    assert fp["paths"] == [vendor]
    # A package under a name the catalog does not know, owning the vendor's folder.
    assert fp["packages"] == [
        {"name": "acme-remote", "version": "1", "manager": "dpkg", "derived_from": f"owns {vendor}"}
    ]


def test_discovery_never_touches_the_clients_own_instance(tree: Path):
    text = repr(_discover(tree))
    assert "c0ffee00c11e0001" not in text


def test_references_are_whole_paths():
    ref = footprint.reference_re(["/opt/Acme"])
    assert ref.search("ExecStart=/opt/Acme/bin/x")
    assert ref.search('WorkingDirectory="/opt/Acme"')
    assert not ref.search("ExecStart=/opt/AcmeClient/bin/x")
    assert footprint.reference_re([]) is None
