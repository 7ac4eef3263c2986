"""The Windows and macOS paths of rmm_agent_removal, checked without a Windows or macOS machine.

- The Jinja in windows_item.yml that builds uninstaller command lines is rendered with Ansible's own
  templar for every Windows uninstaller in the catalog.
- The role passes `ansible-playbook --syntax-check` for a Windows and a macOS host.
- windows.yml/windows_item.yml run for real with ansible-playbook on localhost, where stand-ins replace
  the three modules that need Windows (win_agent_footprint, ansible.windows.win_powershell,
  ansible.windows.win_service) and a JSON file plays the host. That pins what the task files decide:
  what runs in which order with which arguments, check mode, idempotence, failure records, the secret.
  What the real modules do on a real host is molecule/rmm_agent_removal_windows's job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.conftest import ROOT
from tests.unit.test_win_agent_footprint_static import windows_items

BIN = Path(sys.executable).parent
ITEM_TASKS = ROOT / "roles/rmm_agent_removal/tasks/windows_item.yml"
SILENT = {"/s", "/verysilent", "/qn", "/quiet", "/removequiet", "unattended", "/silent"}
# Catalog uninstallers without a known silent switch, and why that is accepted.
NO_SWITCH_KNOWN = {
    "C:\\Program Files\\SuperOps\\uninstall.exe": "superops notes: run without switches (community script)",
}
SECRET = "S3cr3t-uninstall-c0de-4242"


def _block_vars() -> dict[str, Any]:
    return yaml.safe_load(ITEM_TASKS.read_text())[0]["vars"]


def _task(name_part: str) -> dict[str, Any]:
    block = yaml.safe_load(ITEM_TASKS.read_text())[0]["block"]
    return next(t for t in block if name_part in t["name"])


def _render(expression: str, variables: dict[str, Any]) -> Any:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


def _arguments(variables: dict[str, Any]) -> str:
    """The Arguments parameter exactly as the tasks pass it to the bounded run."""
    parameter = _task("run the vendor uninstaller")["ansible.windows.win_powershell"]["parameters"][
        "Arguments"
    ]
    block = _block_vars()
    variables = {
        **variables,
        "__rmm_agent_removal_arguments": trust_as_template(block["__rmm_agent_removal_arguments"]),
    }
    return _render(parameter, variables)


def _uninstallers() -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for item in windows_items():
        for step in item["uninstall"]:
            steps.append((item["key"], step))
    return steps


@pytest.mark.parametrize(("key", "step"), _uninstallers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_catalog_windows_uninstaller_becomes_a_silent_bounded_command_line(
    key: str, step: dict
) -> None:
    block = _block_vars()
    found = {"uninstaller": {**step, "kind": "msi" if step.get("msi_from_uninstall_entry") else "command"}}
    variables: dict[str, Any] = {"__rmm_agent_removal_found": found, "rmm_agent_removal_timeout": 300}
    if step.get("msi_from_uninstall_entry"):
        argv_template = _task("uninstall the MSI products")["vars"]["__rmm_agent_removal_argv"]
        variables["__rmm_agent_removal_product_code"] = "{11111111-2222-3333-4444-555555555555}"
    else:
        argv_template = _task("run the vendor uninstaller")["vars"]["__rmm_agent_removal_argv"]
    # {install_dir} is resolved by the module on the host; stand in for it here.
    found["uninstaller"] = json.loads(
        json.dumps(found["uninstaller"]).replace("{install_dir}", "C:\\\\Ninja Agent")
    )
    argv = _render(argv_template, variables)
    variables["__rmm_agent_removal_argv"] = argv
    arguments = _arguments(variables)
    timeout = int(_render(block["__rmm_agent_removal_run_timeout"], variables))

    assert isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv), argv
    assert "{instance}" not in " ".join(argv)
    assert 0 < timeout <= 300 and timeout == min(step.get("timeout", 300), 300)
    lowered = {a.lower() for a in argv[1:]} | {arguments.lower().rsplit(" ", 1)[-1].strip('"')}
    if argv[0] not in NO_SWITCH_KNOWN:
        assert lowered & SILENT, f"{key}: no silent switch in {argv}"
    if step.get("msi_from_uninstall_entry"):
        assert argv[:5] == [
            "msiexec.exe",
            "/x",
            "{11111111-2222-3333-4444-555555555555}",
            "/qn",
            "/norestart",
        ]
        assert argv.count("/qn") == 1 and argv.count("/norestart") == 1
    # The command line quotes what has blanks, leaves msiexec's PROPERTY="a b" alone, and is argv[1:].
    for arg in argv[1:]:
        if '"' in arg or " " not in arg:
            assert arg in arguments.split(" ") or arg in arguments
        else:
            assert f'"{arg}"' in arguments
    if 'WRAPPED_ARGUMENTS="--mode unattended"' in argv:
        assert arguments.endswith('WRAPPED_ARGUMENTS="--mode unattended"')


def test_command_line_quoting_handles_blanks_and_trailing_backslashes() -> None:
    variables = {"__rmm_agent_removal_argv": ["x.exe", "/a", "C:\\Program Files\\X\\", 'P="a b"', "", "b c"]}
    assert _arguments(variables) == '/a "C:\\Program Files\\X\\\\" P="a b" "" "b c"'
    assert _arguments({"__rmm_agent_removal_argv": ["x.exe"]}) == ""


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
              tasks:
                - name: The per-OS task files parse too
                  ansible.builtin.include_role:
                    name: rmm_agent_removal
                    tasks_from: "{{ item }}"
                  loop: [windows, windows_item, macos, macos_item]
            """
        )
    )
    run = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory.yml", "site.yml"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# --- the Windows task files, run on localhost with stand-in modules ----------------------------------------
FAKE_FOOTPRINT = """#!/usr/bin/python
import json, os
from ansible.module_utils.basic import AnsibleModule

def empty(key):
    return {"key": key, "found": False, "install_dir": None, "services": [], "processes": [], "paths": [],
            "registry": [], "uninstall_entries": [], "uninstaller": None, "protection": None, "refused": [],
            "leftovers": {"paths": [], "registry": [], "services": []}}

m = AnsibleModule({"items": {"type": "list", "elements": "dict", "required": True},
                   "state": {"default": "query", "choices": ["query", "absent"]},
                   "remove_leftovers": {"type": "bool", "default": True}}, supports_check_mode=True)
path = os.environ["FAKE_WIN_HOST"]
with open(path) as fh:
    host = json.load(fh)
out, changed = [], False
for item in m.params["items"]:
    found = host["agents"].get(item["key"]) or empty(item["key"])
    host.setdefault("calls", []).append({"module": "win_agent_footprint", "state": m.params["state"],
                                         "key": item["key"], "check_mode": m.check_mode})
    if m.params["state"] == "absent" and found["found"]:
        found = dict(found, removed={"services": [s["name"] for s in found["leftovers"]["services"]],
                                     "paths": found["paths"], "processes": [], "registry": [], "refused": [],
                                     "errors": []})
        changed = True
        if not m.check_mode and item["key"] not in host.get("sticky", []):
            host["agents"].pop(item["key"])
    out.append(found)
with open(path, "w") as fh:
    json.dump(host, fh)
m.exit_json(changed=changed, items=out)
"""

FAKE_POWERSHELL = """#!/usr/bin/python
import json, os
from ansible.module_utils.basic import AnsibleModule
m = AnsibleModule({"script": {"type": "str"}, "parameters": {"type": "dict"}}, supports_check_mode=True)
path = os.environ["FAKE_WIN_HOST"]
with open(path) as fh:
    host = json.load(fh)
params = m.params["parameters"]
call = {"module": "win_powershell", "parameters": params, "check_mode": m.check_mode}
call["bounded"] = "WaitForExit" in m.params["script"]
host.setdefault("calls", []).append(call)
with open(path, "w") as fh:
    json.dump(host, fh)
if m.check_mode:
    m.exit_json(changed=True, result={})
program = params["FilePath"]
hung = program in host.get("hang", [])
rc = None if hung else host.get("rc", {}).get(program, 0)
m.exit_json(changed=True, result={"rc": rc, "timed_out": hung, "seconds": 3})
"""

FAKE_SERVICE = """#!/usr/bin/python
import json, os
from ansible.module_utils.basic import AnsibleModule
m = AnsibleModule({"name": {"required": True}, "state": {}, "start_mode": {},
                   "force_dependent_services": {"type": "bool"}}, supports_check_mode=True)
path = os.environ["FAKE_WIN_HOST"]
with open(path) as fh:
    host = json.load(fh)
call = {"module": "win_service", "name": m.params["name"], "state": m.params["state"]}
call.update(start_mode=m.params["start_mode"], check_mode=m.check_mode)
host.setdefault("calls", []).append(call)
with open(path, "w") as fh:
    json.dump(host, fh)
m.exit_json(changed=True)
"""

PLAYBOOK = """\
- name: Run the Windows path of rmm_agent_removal against a fake host
  hosts: localhost
  gather_facts: false
  vars:
    rmm_agent_removal_nsight_uninstall_code: "{secret}"
    rmm_agent_removal_fail_on_error: false
  tasks:
    - name: Load the catalog as main.yml does
      ansible.builtin.include_vars:
        dir: "{root}/roles/rmm_agent_removal/vars/catalog"
        name: catalog
        files_matching: '^[a-z0-9_]+\\.yml$'
        ignore_files: [sources.yml]
    - name: Scope the products as main.yml does
      ansible.builtin.set_fact:
        __rmm_agent_removal_items: "{{{{ products | offboard_agent_scope(catalog, 'windows') }}}}"
        __rmm_agent_removal_failed: []
        __rmm_agent_removal_os: windows
    - name: Run the Windows steps
      ansible.builtin.include_role:
        name: rmm_agent_removal
        tasks_from: windows
    - name: Report the failed list
      ansible.builtin.debug:
        var: __rmm_agent_removal_failed
"""


def _found(key: str, **fields: Any) -> dict[str, Any]:
    record = {
        "key": key,
        "found": True,
        "install_dir": None,
        "services": [],
        "processes": [],
        "paths": [],
        "registry": [],
        "uninstall_entries": [],
        "uninstaller": None,
        "protection": None,
        "refused": [],
        "leftovers": {"paths": [], "registry": [], "services": []},
    }
    record.update(fields)
    return record


def _host() -> dict[str, Any]:
    ninja_code = "{0A1B2C3D-0000-1111-2222-333344445555}"
    return {
        "agents": {
            "ninjaone": _found(
                "ninjaone",
                install_dir="C:\\Program Files (x86)\\Ninja Agent",
                services=[{"name": "NinjaRMMAgent", "status": "Running", "image_path": "x", "pid": 42}],
                paths=["C:\\Program Files (x86)\\Ninja Agent"],
                uninstall_entries=[
                    {"display_name": "NinjaRMMAgent", "display_version": "5.9", "product_code": ninja_code}
                ],
                uninstaller={
                    "kind": "msi",
                    "product_codes": [ninja_code],
                    "timeout": 600,
                    "msi_args": [
                        "/quiet",
                        "/L*V",
                        "C:\\Windows\\Temp\\NinjaRMMAgent_uninstall.log",
                        'WRAPPED_ARGUMENTS="--mode unattended"',
                    ],
                },
                protection={
                    "command": [
                        "C:\\Program Files (x86)\\Ninja Agent\\NinjaRMMAgent.exe",
                        "-disableUninstallPrevention",
                        "NOUI",
                    ],
                    "secret_var": None,
                },
            ),
            "tactical_rmm": _found(
                "tactical_rmm",
                services=[{"name": "tacticalrmm"}, {"name": "Mesh Agent"}],
                paths=["C:\\Program Files\\TacticalAgent"],
                uninstaller={
                    "kind": "command",
                    "command": ["C:\\Program Files\\TacticalAgent\\unins001.exe", "/VERYSILENT"],
                    "timeout": 300,
                    "chdir": None,
                },
            ),
            # A code-protected agent whose (hypothetical) lift command takes the code on its command line.
            "nsight": _found(
                "nsight",
                paths=["C:\\Program Files (x86)\\Advanced Monitoring Agent"],
                protection={
                    "command": [
                        "C:\\Program Files (x86)\\Advanced Monitoring Agent\\winagent.exe",
                        "/unprotect",
                        "{secret}",
                    ],
                    "secret_var": "rmm_agent_removal_nsight_uninstall_code",
                },
                uninstaller={
                    "kind": "command",
                    "command": [
                        "C:\\Program Files (x86)\\Advanced Monitoring Agent\\winagent.exe",
                        "/removequiet",
                    ],
                    "timeout": 600,
                    "chdir": None,
                },
            ),
            "action1": _found("action1", paths=["C:\\Windows\\Action1"]),
        },
        "sticky": ["action1"],  # still there after removal: the verify step must catch it
        "rc": {},
    }


def _run(tmp_path: Path, host: dict, products: list[str], check: bool = False) -> tuple[dict, dict, str]:
    library = tmp_path / "library"
    windows = tmp_path / "collections/ansible_collections/ansible/windows/plugins/modules"
    for folder in (library, windows):
        folder.mkdir(parents=True, exist_ok=True)
    (library / "win_agent_footprint.py").write_text(FAKE_FOOTPRINT)
    (windows / "win_powershell.py").write_text(FAKE_POWERSHELL)
    (windows / "win_service.py").write_text(FAKE_SERVICE)
    state = tmp_path / "host.json"
    state.write_text(json.dumps(host))
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(secret=SECRET, root=ROOT))
    extra = json.dumps(
        {"products": [{"product": p} for p in products], "ansible_python_interpreter": sys.executable}
    )
    env = _env(
        tmp_path,
        ANSIBLE_LIBRARY=str(library),
        ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        FAKE_WIN_HOST=str(state),
    )
    args = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", extra, "play.yml"]
    run = subprocess.run(
        [*args, "--check"] if check else args,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
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


PRODUCTS = ["teamviewer", "ninjaone", "tactical_rmm", "nsight", "action1", "level"]


def test_windows_path_removes_verifies_and_records_each_agent(tmp_path: Path) -> None:
    host = _host()
    host["rc"]["C:\\Program Files (x86)\\Advanced Monitoring Agent\\winagent.exe"] = 1603
    output, after, text = _run(tmp_path, host, PRODUCTS)
    records = _records(output)
    calls = after["calls"]
    runs = [c["parameters"] for c in calls if c["module"] == "win_powershell"]

    # Not installed: recorded as absent, nothing run for it.
    assert records["teamviewer"]["action"] == "none"
    assert records["teamviewer"]["verification"]["result"] == "verified_absent"
    # NinjaOne: protection lifted, then services stopped, then msiexec by product code, bounded, verified.
    ninja = [c for c in calls if "Ninja" in json.dumps(c) or c.get("key") == "ninjaone"]
    assert [c["module"] for c in ninja][:4] == [
        "win_agent_footprint",
        "win_powershell",
        "win_service",
        "win_powershell",
    ]
    assert runs[0] == {
        "FilePath": "C:\\Program Files (x86)\\Ninja Agent\\NinjaRMMAgent.exe",
        "Arguments": "-disableUninstallPrevention NOUI",
        "TimeoutSeconds": 60,
    }
    assert runs[1]["FilePath"] == "msiexec.exe"
    assert runs[1]["Arguments"] == (
        "/x {0A1B2C3D-0000-1111-2222-333344445555} /qn /norestart /quiet /L*V "
        'C:\\Windows\\Temp\\NinjaRMMAgent_uninstall.log WRAPPED_ARGUMENTS="--mode unattended"'
    )
    assert runs[1]["TimeoutSeconds"] == 300  # catalog 600, capped by rmm_agent_removal_timeout
    assert all(c["bounded"] for c in calls if c["module"] == "win_powershell")
    assert {
        "module": "win_service",
        "name": "NinjaRMMAgent",
        "state": "stopped",
        "start_mode": "disabled",
        "check_mode": False,
    } in calls
    assert records["ninjaone"]["action"] == "removed"
    assert records["ninjaone"]["verification"]["result"] == "verified_absent"
    assert records["ninjaone"]["before"]["product_codes"] == ["{0A1B2C3D-0000-1111-2222-333344445555}"]
    assert records["ninjaone"]["after"]["uninstaller_rc"] == [0]
    # Tactical: the Inno Setup uninstaller runs with its switch; the blank in its path is the FilePath's.
    assert {
        "FilePath": "C:\\Program Files\\TacticalAgent\\unins001.exe",
        "Arguments": "/VERYSILENT",
        "WorkingDirectory": "",
        "TimeoutSeconds": 300,
    } in runs
    assert records["tactical_rmm"]["action"] == "removed"
    # N-sight: the uninstaller fails (rc 1603) -> this agent fails, recorded with the rc; the others go on.
    assert records["nsight"]["action"] == "failed"
    assert "rc 1603" in records["nsight"]["error"]
    assert "rmm_agent_removal_nsight_uninstall_code is set" in records["nsight"]["error"]
    # Action1: the cleanup ran but the agent is still there -> still_present, failed.
    assert records["action1"]["action"] == "failed"
    assert records["action1"]["verification"]["result"] == "still_present"
    assert "level" in records and records["level"]["action"] == "none"
    assert set(output["plays"][0]["tasks"][-1]["hosts"]["localhost"]["__rmm_agent_removal_failed"]) == {
        "nsight",
        "action1",
    }
    # The uninstall code reached the program that needs it, and nothing else: not the output, not a record.
    assert any(SECRET in r.get("Arguments", "") for r in runs)
    assert SECRET not in text
    assert SECRET not in json.dumps(records)


def test_windows_path_in_check_mode_changes_nothing_and_says_what_it_would_remove(tmp_path: Path) -> None:
    host = _host()
    output, after, _ = _run(tmp_path, host, PRODUCTS, check=True)
    records = _records(output)
    assert set(after["agents"]) == set(host["agents"])  # nothing removed
    assert all(
        c["check_mode"]
        for c in after["calls"]
        if c["module"] != "win_agent_footprint" or c["state"] == "absent"
    )
    for key in ("ninjaone", "tactical_rmm", "nsight", "action1"):
        assert records[key]["action"] == "would_remove", key
        assert records[key]["verification"]["result"] == "not_verified"
        assert records[key]["check_mode"] is True
    assert records["teamviewer"]["action"] == "none"


def test_windows_path_second_run_changes_nothing(tmp_path: Path) -> None:
    host = _host()
    products = ["ninjaone", "tactical_rmm", "teamviewer"]
    _run(tmp_path, host, products)
    host_after = json.loads((tmp_path / "host.json").read_text())
    output, _, _ = _run(tmp_path, host_after, products)
    assert _changed_tasks(output) == []
    assert {r["action"] for r in _records(output).values()} == {"none"}
