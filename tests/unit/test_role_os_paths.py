"""The Windows and macOS paths of the agent roles, checked without a Windows or macOS machine.

- Every Windows uninstaller in the catalogs is silent and bounded (catalog data the engine hands to
  win_agent_footprint, which builds the command line on the host).
- The roles pass `ansible-playbook --syntax-check` for a Windows and a macOS host.
- The engine (plugins/action/offboard_agent_engine.py) runs for real with ansible-playbook on localhost
  for a Windows host: a stand-in win_agent_footprint implements the module contract
  (docs/agents-engine.md) against a JSON file that plays the host, and a stand-in setup says "Windows".
  That pins what the engine decides: one discovery, one removal call per product found, nothing for the
  others, check mode, idempotence, the records (method, uninstaller rc, derived items, what remains) and
  the secret. What the real module does on a real host is molecule/rmm_agent_removal_windows's job.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, playbook
from tests.unit.test_win_agent_footprint_static import windows_items

BIN = Path(sys.executable).parent
SILENT = {"/s", "/verysilent", "/qn", "/quiet", "/removequiet", "unattended", "/silent"}
# Catalog uninstallers without a known silent switch, and why that is accepted.
NO_SWITCH_KNOWN = {
    "C:\\Program Files\\SuperOps\\uninstall.exe": "superops notes: run without switches (community script)",
}
SECRET = "S3cr3t-uninstall-c0de-4242"


def _uninstallers() -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for item in windows_items():
        for step in item["uninstall"]:
            steps.append((item["key"], step))
    return steps


@pytest.mark.parametrize(("key", "step"), _uninstallers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_catalog_windows_uninstaller_is_silent_and_bounded(key: str, step: dict) -> None:
    assert 0 < int(step.get("timeout", 300)) <= 3600, key
    if step.get("msi_from_uninstall_entry"):
        # msiexec /x {ProductCode} /qn /norestart: the module adds the silent switches itself.
        assert all(a.lower() != "/x" for a in step.get("msi_args") or []), key
        return
    argv = step["command"]
    assert isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv), argv
    if argv[0] not in NO_SWITCH_KNOWN:
        assert {a.lower() for a in argv[1:]} & SILENT, f"{key}: no silent switch in {argv}"


# --- syntax ---------------------------------------------------------------------------------------------
def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\n")
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(cfg),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_ACTION_PLUGINS=str(ROOT / "plugins/action"),
        ANSIBLE_FILTER_PLUGINS=str(ROOT / "plugins/filter"),
        ANSIBLE_LIBRARY=str(ROOT / "plugins/modules"),
        # The roles call the project's plugins as offboard.msp.<name>: the repository's collection link.
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


@pytest.mark.parametrize("os_family", ["Windows", "Darwin"])
def test_role_passes_syntax_check_for_a_windows_and_a_macos_host(tmp_path: Path, os_family: str) -> None:
    (tmp_path / "inventory.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"device1": {"ansible_connection": "psrp" if os_family == "Windows" else "ssh"}}
                }
            }
        )
    )
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            """\
            - name: Offboard one device
              hosts: device1
              gather_facts: false
              roles:
                - role: rmm_agent_removal
                  rmm_agent_removal_products: [{product: ninjaone}]
                - role: backup_agent_removal
                  backup_agent_removal_products: [veeam_agent]
                - role: security_software_transition
                  security_software_transition_products: [sentinelone]
            """
        )
    )
    args = ["--syntax-check", "-i", "inventory.yml", "site.yml"]
    run = playbook(*args, env=_env(tmp_path), timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


# --- the engine for a Windows host, on localhost with a stand-in module --------------------------------
FAKE_SETUP = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
m = AnsibleModule({"gather_subset": {"type": "list"}}, supports_check_mode=True)
m.exit_json(changed=False, ansible_facts={"os_family": "Windows", "system": "Win32NT"})
"""

# The module contract (docs/agents-engine.md), played against a JSON host. host["behaviour"][key]:
# "clean" (the uninstaller works), "uninstaller_fails" (rc 1603, then forced cleanup works) or "sticky"
# (nothing helps: the re-probe still finds it).
FAKE_FOOTPRINT = """#!/usr/bin/python
import json, os
from ansible.module_utils.basic import AnsibleModule

KINDS = ("packages", "services", "processes", "paths", "startup", "registry", "uninstall_entries")

def empty():
    return {k: [] for k in KINDS}

m = AnsibleModule({"items": {"type": "list", "elements": "dict", "required": True},
                   "state": {"default": "query", "choices": ["query", "absent"]},
                   "timeout": {"type": "int", "default": 300},
                   "secrets": {"type": "dict", "default": {}, "no_log": True}},
                  supports_check_mode=True)  # exactly the contract's options
path = os.environ["FAKE_WIN_HOST"]
with open(path) as fh:
    host = json.load(fh)
out, changed = [], False
host.setdefault("invocations", []).append(
    {"state": m.params["state"], "keys": [i["key"] for i in m.params["items"]]})
for item in m.params["items"]:
    key = item["key"]
    fp = host["agents"].get(key) or empty()
    found = any(fp[k] for k in KINDS)
    call = {"module": "win_agent_footprint", "state": m.params["state"], "key": key,
            "check_mode": m.check_mode, "timeout": m.params["timeout"],
            "secrets_for": sorted(m.params["secrets"])}
    host.setdefault("calls", []).append(call)
    if m.params["secrets"]:
        host.setdefault("secrets_seen", {}).update(m.params["secrets"])
    result = {"key": key, "product": item["product"], "instance": item.get("instance"), "found": found,
              "footprint": fp, "refused": []}
    if m.params["state"] == "absent" and found:
        changed = True
        if m.check_mode:
            result["removal"] = {"attempts": [], "method": None, "remaining": fp, "verified_absent": False}
        else:
            how = host.get("behaviour", {}).get(key, "clean")
            rc = 1603 if how == "uninstaller_fails" else 0
            attempts = [{"method": "vendor_uninstaller", "rc": rc, "timed_out": False, "detail": "x"}]
            if how == "sticky":
                attempts.append({"method": "forced", "rc": None, "timed_out": False, "detail": "forced"})
                remaining, method = fp, None
            else:
                if rc:
                    attempts.append({"method": "forced", "rc": None, "timed_out": False, "detail": "forced"})
                host["agents"].pop(key)
                remaining, method = empty(), "forced" if rc else "vendor_uninstaller"
            result["removal"] = {"attempts": attempts, "method": method, "remaining": remaining,
                                 "verified_absent": not any(remaining[k] for k in KINDS)}
    out.append(result)
with open(path, "w") as fh:
    json.dump(host, fh)
m.exit_json(changed=changed, items=out)
"""

PLAYBOOK = """\
- name: Run rmm_agent_removal for a Windows host, against a fake host
  hosts: localhost
  gather_facts: false
  vars:
    rmm_agent_removal_nsight_uninstall_code: "{secret}"
    rmm_agent_removal_fail_on_error: false
  # The engine recognises a Windows host by its PowerShell connection (and then runs setup itself); a
  # local connection plays the host here, so its facts come first, from the stand-in setup, as when an
  # earlier role of the phase gathered them.
  pre_tasks:
    - name: Learn the OS from the stand-in setup
      ansible.legacy.setup:
        gather_subset: ['!all', '!min', distribution]
  roles:
    - role: rmm_agent_removal
  tasks:
    - name: Report the failed list
      ansible.builtin.debug:
        var: __rmm_agent_removal_engine.failed_items
"""


def _fp(**fields: Any) -> dict[str, Any]:
    fp = {
        k: []
        for k in ("packages", "services", "processes", "paths", "startup", "registry", "uninstall_entries")
    }
    fp.update(fields)
    return fp


def _host() -> dict[str, Any]:
    ninja_dir = "C:\\Program Files (x86)\\Ninja Agent"
    return {
        "agents": {
            "ninjaone": _fp(
                services=[
                    {
                        "name": "NinjaRMMAgent",
                        "state": "running",
                        "image_path": f"{ninja_dir}\\NinjaRMMAgent.exe",
                    },
                    # A service the catalog does not name, running from the vendor's folder.
                    {
                        "name": "NinjaHelper",
                        "state": "running",
                        "image_path": f"{ninja_dir}\\helper.exe",
                        "derived_from": f"ImagePath={ninja_dir}\\helper.exe",
                    },
                ],
                paths=[ninja_dir],
                uninstall_entries=[{"display_name": "NinjaRMMAgent", "product_code": "{0A1B2C3D}"}],
            ),
            "tactical_rmm": _fp(
                services=[{"name": "tacticalrmm"}], paths=["C:\\Program Files\\TacticalAgent"]
            ),
            "nsight": _fp(paths=["C:\\Program Files (x86)\\Advanced Monitoring Agent"]),
            "action1": _fp(paths=["C:\\Windows\\Action1"]),
        },
        "behaviour": {"nsight": "uninstaller_fails", "action1": "sticky"},
    }


PRODUCTS = ["teamviewer", "ninjaone", "tactical_rmm", "nsight", "action1", "level"]


def _run(
    tmp_path: Path, host: dict, products: list[str], check: bool = False, fail_on_error: bool = False
) -> tuple[dict, dict, str]:
    library = tmp_path / "library"
    library.mkdir(exist_ok=True)
    (library / "win_agent_footprint.py").write_text(FAKE_FOOTPRINT)
    (library / "setup.py").write_text(FAKE_SETUP)
    state = tmp_path / "host.json"
    state.write_text(json.dumps(host))
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(secret=SECRET))
    extra = json.dumps(
        {
            "rmm_agent_removal_products": [{"product": p} for p in products],
            "ansible_python_interpreter": sys.executable,
            "rmm_agent_removal_fail_on_error": fail_on_error,
        }
    )
    env = _env(
        tmp_path,
        ANSIBLE_LIBRARY=str(library),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        FAKE_WIN_HOST=str(state),
    )
    args = ["-i", "localhost,", "-c", "local", "-e", extra, "play.yml"]
    run = playbook(*args, *(["--check"] if check else []), env=env, timeout=300, cwd=tmp_path)
    assert (run.returncode != 0) == fail_on_error, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(run.stdout), json.loads(state.read_text()), run.stdout + run.stderr


def _records(output: dict) -> dict[str, dict]:
    records = {}
    for play in output["plays"]:
        for task in play["tasks"]:
            for result in task["hosts"].values():
                for one in result.get("results", [result]):
                    if isinstance(one, dict) and "offboard_record" in one:
                        records[one["offboard_record"]["item"]] = one["offboard_record"]
    return records


def _changed_tasks(output: dict) -> list[str]:
    return [
        task["task"]["name"]
        for play in output["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("changed")
    ]


def test_windows_host_one_discovery_one_removal_per_product_found_and_honest_records(tmp_path: Path) -> None:
    output, after, text = _run(tmp_path, _host(), PRODUCTS)
    records = _records(output)
    calls = after["calls"]

    # One discovery for all products; one removal call per product found, none for the others.
    assert [i["state"] for i in after["invocations"]].count("query") == 1
    assert all(len(i["keys"]) == 1 for i in after["invocations"] if i["state"] == "absent")
    assert sorted(c["key"] for c in calls if c["state"] == "absent") == [
        "action1",
        "ninjaone",
        "nsight",
        "tactical_rmm",
    ]
    assert all(c["timeout"] == 300 for c in calls)
    # Not installed: recorded as absent, nothing run for it.
    assert records["teamviewer"]["action"] == "none"
    assert records["teamviewer"]["verification"]["result"] == "verified_absent"
    assert records["level"]["action"] == "none"
    # NinjaOne: the uninstaller worked; the record lists the derived service and what pointed to it.
    ninja = records["ninjaone"]
    assert ninja["action"] == "removed" and ninja["verification"]["result"] == "verified_absent"
    assert ninja["after"]["method"] == "vendor_uninstaller" and ninja["after"]["uninstaller_rc"] == 0
    assert ninja["before"]["derived"] == [
        {
            "kind": "services",
            "name": "NinjaHelper",
            "derived_from": "ImagePath=C:\\Program Files (x86)\\Ninja Agent\\helper.exe",
        }
    ]
    assert ninja["before"]["uninstall_entries"] == ["NinjaRMMAgent"]
    assert records["tactical_rmm"]["action"] == "removed"
    # N-sight: the uninstaller fails (rc 1603), the forced layer removes it: removed, and the record says how.
    nsight = records["nsight"]
    assert nsight["action"] == "removed"
    assert nsight["after"]["uninstaller_rc"] == 1603 and nsight["after"]["method"] == "forced"
    assert [a["method"] for a in nsight["after"]["attempts"]] == ["vendor_uninstaller", "forced"]
    # Action1: still there after every layer -> failed, still_present, naming what remains.
    action1 = records["action1"]
    assert action1["action"] == "failed" and action1["verification"]["result"] == "still_present"
    assert "C:\\Windows\\Action1" in action1["error"]
    assert action1["after"]["remaining"] == {"paths": ["C:\\Windows\\Action1"]}
    assert output["plays"][0]["tasks"][-1]["hosts"]["localhost"][
        "__rmm_agent_removal_engine.failed_items"
    ] == ["action1"]
    # The uninstall code reached the module for the product that needs it, and nothing else.
    assert after["secrets_seen"] == {"nsight": SECRET}
    assert [c["key"] for c in calls if c["secrets_for"]] == ["nsight"]
    assert SECRET not in text
    assert SECRET not in json.dumps(records)


def test_windows_host_in_check_mode_changes_nothing_and_says_what_it_would_remove(tmp_path: Path) -> None:
    host = _host()
    output, after, _ = _run(tmp_path, host, PRODUCTS, check=True)
    records = _records(output)
    assert after["agents"] == host["agents"]  # nothing removed
    assert [i["state"] for i in after["invocations"]] == ["query"]  # discovery only
    for key in ("ninjaone", "tactical_rmm", "nsight", "action1"):
        assert records[key]["action"] == "would_remove", key
        assert records[key]["verification"]["result"] == "not_verified"
        assert records[key]["check_mode"] is True
    assert records["teamviewer"]["action"] == "none"


def test_windows_host_second_run_changes_nothing(tmp_path: Path) -> None:
    host = _host()
    products = ["ninjaone", "tactical_rmm", "teamviewer"]
    _run(tmp_path, host, products)
    host_after = json.loads((tmp_path / "host.json").read_text())
    output, after, _ = _run(tmp_path, host_after, products)
    assert _changed_tasks(output) == []
    assert {r["action"] for r in _records(output).values()} == {"none"}
    assert [c["state"] for c in after["calls"]].count("absent") == 2  # only the first run removed anything


def test_an_agent_that_stays_fails_the_host_after_every_product_was_processed_and_recorded(
    tmp_path: Path,
) -> None:
    # fail_on_error: the engine task itself fails (no separate report task), with every record in its result.
    output, _after, _text = _run(tmp_path, _host(), PRODUCTS, fail_on_error=True)
    records = _records(output)
    assert records["action1"]["action"] == "failed"
    assert records["ninjaone"]["action"] == "removed" and records["teamviewer"]["action"] == "none"
    engine = next(
        task["hosts"]["localhost"]
        for play in output["plays"]
        for task in play["tasks"]
        if "RMM | remove" in task["task"]["name"]
    )
    assert engine["failed"] and engine["msg"].startswith("Could not remove action1 on localhost")
