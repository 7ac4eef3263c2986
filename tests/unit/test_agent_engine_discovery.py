"""One discovery per host for the three agent roles (issue 13, controller CPU).

The first engine call on a host discovers the other agent roles' products too, each catalog in its own
round of the same module call, and learns the OS family there instead of a separate setup run. A later
call uses a cached result only for exactly its own items, in the same mode, once, and in a real run only
where nothing was found; anything else is discovered again. Pinned here without a host: the engine's run
with a fake module, and the module's grouped rounds and OS facts.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.plugins.action import ActionBase

from tests.conftest import load_module

_paths = load_module("offboard_paths", "plugins/module_utils/offboard_paths.py")
sys.modules.setdefault("ansible.module_utils.offboard_paths", _paths)
footprint = load_module("agent_footprint_discovery_test", "plugins/modules/agent_footprint.py")
engine = load_module("offboard_agent_engine_discovery_test", "plugins/action/offboard_agent_engine.py")

CATALOGS = {
    "security_software_transition": {"acmeav": {"category": "security", "linux": {"paths": ["/opt/AcmeAV"]}}},
    "backup_agent_removal": {
        "acmebackup": {
            "category": "backup",
            "linux": {"paths": ["/opt/AcmeBackup"]},
            "macos": {"paths": ["/x"]},
        }
    },
    "rmm_agent_removal": {"acmermm": {"category": "rmm", "linux": {"paths": ["/opt/AcmeRMM"]}}},
}
COMPONENT = {v: k for k, v in engine.ROLES.items()}


class Templar:
    """Stands in for Ansible's templar: the test's variables are already plain values."""

    def copy_with_new_env(self, available_variables=None):
        return self

    def template(self, value):
        return value


@pytest.fixture
def play(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Three roles with one-product catalogs, the run's temp folder, and the role variables a play has."""
    run_tmp = tmp_path / "ansible-local-run"
    run_tmp.mkdir()
    monkeypatch.setattr(engine.C, "DEFAULT_LOCAL_TMP", str(run_tmp), raising=False)
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    roles = []
    task_vars: dict[str, Any] = {"inventory_hostname": "ws01", "ansible_facts": {}}
    for role, catalog in CATALOGS.items():
        folder = tmp_path / role / "vars" / "catalog"
        folder.mkdir(parents=True)
        (folder / f"{next(iter(catalog))}.yml").write_text(yaml.safe_dump(catalog))
        roles.append(types.SimpleNamespace(_role_name=role, _role_path=str(tmp_path / role)))
        task_vars[f"{role}_products"] = [{"product": next(iter(catalog))}]
        task_vars[f"__{role}_catalog_dir"] = str(folder)
    return {"roles": roles, "vars": task_vars, "tmp": run_tmp}


def action(play: dict[str, Any], role: str, calls: list[dict[str, Any]], found: set[str], check_mode: bool):
    """The engine's action for one role's task, with a fake module that records its calls."""
    act = engine.ActionModule.__new__(engine.ActionModule)
    act._task = types.SimpleNamespace(
        args={
            "component": COMPONENT[role],
            "catalog_dir": play["vars"][f"__{role}_catalog_dir"],
            "products": play["vars"][f"{role}_products"],
        },
        check_mode=check_mode,
        _role=types.SimpleNamespace(_role_name=role, _play=types.SimpleNamespace(roles=play["roles"])),
    )
    act._connection = types.SimpleNamespace(_shell=types.SimpleNamespace(SHELL_FAMILY="sh"))
    act._templar = Templar()

    def execute(module_name, module_args, task_vars):
        calls.append({"module": module_name, **module_args})
        if module_args["state"] == "absent":
            item = module_args["items"][0]
            empty = {k: [] for k in footprint.FOOTPRINT_KEYS}
            removal = {"attempts": [{"method": "forced"}], "method": "forced", "remaining": empty}
            return {
                "items": [
                    {"key": item["key"], "found": True, "removal": {**removal, "verified_absent": True}}
                ]
            }
        items = module_args["items"]
        out = {
            "items": [{"key": i["key"], "found": i["key"] in found, "footprint": {}} for i in items],
            "os": "linux",
        }
        if module_args.get("os_facts"):
            out["ansible_facts"] = {"os_family": "Debian", "system": "Linux"}
        return out

    act._execute_module = execute
    return act


def run(play, role, calls, found=frozenset(), check_mode=True):
    result = action(play, role, calls, set(found), check_mode).run(task_vars=dict(play["vars"]))
    if "ansible_facts" in result:
        play["vars"]["ansible_facts"] = {**play["vars"]["ansible_facts"], **result["ansible_facts"]}
    return result


def test_one_module_call_per_host_discovers_for_all_three_roles_and_learns_the_os(play):
    calls: list[dict[str, Any]] = []
    first = run(play, "security_software_transition", calls)
    assert len(calls) == 1
    query = calls[0]
    assert query["module"] == "agent_footprint" and query["os_facts"] is True
    # Each catalog its own round; the macOS specs ride along until the host says which OS it is.
    assert [i["key"] for i in query["items"]] == ["acmeav", "acmebackup", "acmermm"]
    assert query["groups"] == [1, 1, 1]
    assert [i["key"] for i in query["macos_items"]] == ["acmebackup"]
    assert first["ansible_facts"] == {"os_family": "Debian", "system": "Linux"}  # no setup run needed
    backup = run(play, "backup_agent_removal", calls)
    rmm = run(play, "rmm_agent_removal", calls)
    assert len(calls) == 1, "the later roles reuse the first call's discovery"
    for result, key in ((first, "acmeav"), (backup, "acmebackup"), (rmm, "acmermm")):
        (record,) = [r["offboard_record"] for r in result["results"]]
        assert (record["item"], record["action"], record["verification"]["result"]) == (
            key,
            "none",
            "verified_absent",
        )


def test_each_cached_result_is_used_once(play):
    calls: list[dict[str, Any]] = []
    run(play, "security_software_transition", calls)
    run(play, "backup_agent_removal", calls)
    run(play, "backup_agent_removal", calls)
    assert len(calls) == 2
    assert [i["key"] for i in calls[1]["items"]] == ["acmebackup", "acmermm"]  # and prefetches the later


def test_check_mode_reuses_a_found_product_and_records_would_remove(play):
    calls: list[dict[str, Any]] = []
    run(play, "security_software_transition", calls, found={"acmermm"})
    rmm = run(play, "rmm_agent_removal", calls, found={"acmermm"})
    assert len(calls) == 1
    assert rmm["results"][0]["offboard_record"]["action"] == "would_remove"
    assert rmm["changed"] is True


def test_a_real_run_discovers_a_found_product_again_before_removing_it(play):
    calls: list[dict[str, Any]] = []
    run(play, "security_software_transition", calls, found={"acmermm"}, check_mode=False)
    backup = run(play, "backup_agent_removal", calls, found={"acmermm"}, check_mode=False)
    assert len(calls) == 1, "not found in the first discovery: cannot have appeared since"
    assert backup["results"][0]["offboard_record"]["action"] == "none"
    rmm = run(play, "rmm_agent_removal", calls, found={"acmermm"}, check_mode=False)
    assert [c["state"] for c in calls] == ["query", "query", "absent"]
    assert [i["key"] for i in calls[1]["items"]] == ["acmermm"]
    assert rmm["results"][0]["offboard_record"]["action"] == "removed"


def test_a_result_is_never_used_for_other_items_or_another_mode(play):
    calls: list[dict[str, Any]] = []
    run(play, "security_software_transition", calls)
    play["vars"]["rmm_agent_removal_products"] = [{"product": "acmermm"}, {"product": "acmermm"}]
    run(play, "rmm_agent_removal", calls)
    assert len(calls) == 2  # another item list than the one discovered: discovered again
    run(play, "backup_agent_removal", calls, check_mode=False)
    assert len(calls) == 3  # discovered in check mode, asked for in a real run


def test_the_cache_lives_in_the_runs_temp_folder(play):
    calls: list[dict[str, Any]] = []
    run(play, "security_software_transition", calls)
    files = sorted(p.name for p in play["tmp"].iterdir())
    assert any(n.startswith(engine.CACHE_PREFIX) for n in files)
    assert engine.cache_path("ws01", str(play["tmp"] / "gone")) is None  # no run folder: no cache


def test_cached_found_rules():
    spec = {"key": "a", "paths": ["/opt/A"]}
    entry = engine.cache_entry("linux", True, [spec], [{"key": "a", "found": True}])
    assert engine.cached_found(entry, "linux", True, [spec]) == [{"key": "a", "found": True}]
    assert engine.cached_found(entry, "macos", True, [spec]) is None
    assert engine.cached_found(entry, "linux", False, [spec]) is None
    assert engine.cached_found(entry, "linux", True, [{**spec, "paths": ["/opt/B"]}]) is None
    assert engine.cached_found(entry, "linux", True, []) is None
    real = engine.cache_entry("linux", False, [spec], [{"key": "a", "found": True}])
    assert engine.cached_found(real, "linux", False, [spec]) is None  # found: discover before removing
    absent = engine.cache_entry("linux", False, [spec], [{"key": "a", "found": False}])
    assert engine.cached_found(absent, "linux", False, [spec]) == [{"key": "a", "found": False}]


def test_the_catalog_copy_follows_its_files(tmp_path, monkeypatch):
    run_tmp = tmp_path / "run"
    run_tmp.mkdir()
    monkeypatch.setattr(engine.C, "DEFAULT_LOCAL_TMP", str(run_tmp), raising=False)
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "acme.yml").write_text("acme: {name: Acme, linux: {paths: [/opt/Acme]}}\n")
    act = engine.ActionModule.__new__(engine.ActionModule)
    assert act._catalog(str(folder))["acme"]["name"] == "Acme"
    assert act._catalog(str(folder))["acme"]["name"] == "Acme"  # from the copy
    (folder / "acme.yml").write_text("acme: {name: Acme Two, linux: {paths: [/opt/Acme]}}\n")
    assert act._catalog(str(folder))["acme"]["name"] == "Acme Two"
    (folder / "dated.yml").write_text("dated: {name: D, reviewed: 2026-01-02}\n")  # not JSON-plain
    assert str(act._catalog(str(folder))["dated"]["reviewed"]) == "2026-01-02"


# --- the module side -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("system", "release", "family"),
    [
        ("Darwin", "", "Darwin"),
        ("Linux", "debian", "Debian"),
        ("Linux", "ubuntu", "Debian"),
        ("Linux", "rhel", "RedHat"),
        ("Linux", "rocky", "RedHat"),
        ("Linux", "sles", "Suse"),
        ("Linux", "linuxmint", None),  # setup has its own rules there: the caller gathers facts
        ("FreeBSD", "", None),
    ],
)
def test_module_os_facts_only_where_setup_would_say_the_same(system, release, family):
    facts = footprint.host_os_facts(system=system, release_id=release)
    assert facts.get("os_family") == family


def test_module_groups_discover_each_catalog_as_separate_calls_would(monkeypatch):
    rounds: list[list[str]] = []
    resets: list[bool] = []

    def discover(host, items, also=None, reset=True):
        rounds.append([i["key"] for i in items])
        resets.append(reset)
        return {i["key"]: footprint.empty_footprint() for i in items}

    monkeypatch.setattr(footprint, "discover", discover)
    monkeypatch.setattr(footprint, "Host", lambda module: object())
    module = types.SimpleNamespace(
        params={
            "items": [{"key": "a"}, {"key": "b"}, {"key": "a"}],
            "groups": [1, 2],
            "macos_items": None,
            "macos_groups": None,
            "state": "query",
            "os_facts": False,
        },
        check_mode=True,
    )
    out: dict[str, Any] = {}
    module.exit_json = lambda **kw: out.update(kw)
    module.fail_json = lambda **kw: pytest.fail(kw["msg"])
    monkeypatch.setattr(footprint, "AnsibleModule", lambda **kw: module)
    footprint.main()
    assert rounds == [["a"], ["b", "a"]]
    assert resets == [True, False]  # the host is read once; nothing changes between query rounds
    assert [r["key"] for r in out["items"]] == ["a", "b", "a"]
    assert out["os"] in ("linux", "macos")


def test_a_windows_connection_gathers_its_facts_and_keeps_one_call_per_role(play):
    calls: list[dict[str, Any]] = []
    act = action(play, "security_software_transition", calls, set(), True)
    act._connection._shell.SHELL_FAMILY = "powershell"
    windows = {"category": "security", "windows": {"paths": ["C:\\\\Program Files\\\\AcmeAV"]}}
    (Path(play["vars"]["__security_software_transition_catalog_dir"]) / "acmeav.yml").write_text(
        yaml.safe_dump({"acmeav": windows})
    )
    inner = act._execute_module

    def execute(module_name, module_args, task_vars):
        if module_name == "ansible.legacy.setup":
            calls.append({"module": module_name, "state": "setup"})
            return {"ansible_facts": {"os_family": "Windows"}}
        return inner(module_name, module_args, task_vars)

    act._execute_module = execute
    result = act.run(task_vars=dict(play["vars"]))
    assert [c["module"] for c in calls] == ["ansible.legacy.setup", "win_agent_footprint"]
    assert [i["key"] for i in calls[1]["items"]] == ["acmeav"]  # the Windows module takes no groups
    assert "groups" not in calls[1] and "os_facts" not in calls[1]
    assert result["ansible_facts"] == {"os_family": "Windows"}
