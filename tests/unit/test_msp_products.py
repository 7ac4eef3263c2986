"""One input shape for the MSP's products: each agent role takes its share of offboard_msp_products, and an
inventory written with the old names gives every role the same products as one written with the new name."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from tests.conftest import BIN, ROOT, ansible_env, load_module, playbook, run_tool

products = load_module("offboard_products", "plugins/module_utils/offboard_products.py")

ROLES = ("rmm_agent_removal", "security_software_transition", "backup_agent_removal")
CATALOG = {role: str(ROOT / "roles" / role / "vars" / "catalog") for role in ROLES}
NEW = {
    "offboard_msp_products": [
        {"product": "screenconnect", "instances": ["5e0b1c2d3a4f6789"]},
        {"product": "sentinelone"},
        {"product": "ninjaone"},
        {"product": "veeam_agent"},
    ],
    "offboard_security": {"replacement_coverage_confirmed": False},
    "offboard_backup_terms": {"data_disposition": "delete"},
}
OLD = {
    "offboard_msp_agents": [
        {"product": "screenconnect", "instances": ["5e0b1c2d3a4f6789"]},
        {"product": "ninjaone"},
    ],
    "offboard_security": {"msp_products": ["sentinelone"], "replacement_coverage_confirmed": False},
    "offboard_backup_terms": {"msp_products": ["veeam_agent"], "data_disposition": "delete"},
}
EXPECTED = {
    "rmm_agent_removal": [
        {"product": "screenconnect", "instances": ["5e0b1c2d3a4f6789"]},
        {"product": "ninjaone"},
    ],
    "security_software_transition": [{"product": "sentinelone"}],
    "backup_agent_removal": [{"product": "veeam_agent"}],
}


def test_each_role_takes_the_products_of_its_own_catalog():
    for role, expected in EXPECTED.items():
        assert products.products_in(NEW["offboard_msp_products"], CATALOG[role]) == expected


def test_old_lists_of_names_become_the_one_shape_and_follow_the_new_list():
    got = products.products_in(
        [{"product": "crowdstrike_falcon"}], CATALOG["security_software_transition"], ["x"]
    )
    assert got == [{"product": "crowdstrike_falcon"}, {"product": "x"}]


def test_a_malformed_entry_reaches_every_role_so_that_its_argument_check_refuses_it():
    for role in ROLES:
        assert products.products_in([{"name": "ninjaone"}, "ninjaone"], CATALOG[role]) == [
            {"name": "ninjaone"},
            "ninjaone",
        ]


def test_a_role_says_where_its_catalog_is():
    for role in ROLES:
        assert products.role_catalog_dir(role, str(ROOT / "roles" / role)) == CATALOG[role]
    assert products.role_catalog_dir("gpo_cleanup", str(ROOT / "roles" / "gpo_cleanup")) is None


def test_the_roles_defaults_give_the_same_products_for_old_and_new_inventories(tmp_path: Path):
    """The roles' own defaults files, templated by Ansible for a host of each shape."""
    hosts = {"new": {"ansible_connection": "local", **NEW}, "old": {"ansible_connection": "local", **OLD}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    out = tmp_path / "out"
    play = {
        "name": "Show each agent role's products",
        "hosts": "all",
        "gather_facts": False,
        "vars_files": [str(ROOT / "roles" / role / "defaults" / "main.yml") for role in ROLES],
        # In a run each role sets this itself in vars/main.yml from role_path (tested above).
        "vars": {f"__{role}_catalog_dir": CATALOG[role] for role in ROLES},
        "tasks": [
            {
                "name": "Write them",
                "delegate_to": "localhost",
                "ansible.builtin.copy": {
                    "dest": f"{out}/{{{{ inventory_hostname }}}}.json",
                    "content": "{{ {"
                    + ", ".join(f"'{role}': {role}_products" for role in ROLES)
                    + "} | to_json }}",
                    "mode": "0600",
                },
            }
        ],
    }
    (tmp_path / "show.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    out.mkdir()
    env = ansible_env(
        ANSIBLE_CALLBACKS_ENABLED="offboard.msp.offboard_preload", ANSIBLE_VARS_ENABLED="host_group_vars"
    )
    done = playbook("-i", str(tmp_path / "hosts.yml"), str(tmp_path / "show.yml"), env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for host in hosts:
        assert json.loads((out / f"{host}.json").read_text()) == EXPECTED, host


def _old_shape_lab(inv: Path) -> set[str]:
    """Copy the lab inventory to inv, its products written with the old names; returns the product ids."""
    shutil.copytree(ROOT / "inventories" / "lab", inv)
    path = inv / "group_vars" / "lab.yml"
    facts = yaml.safe_load(path.read_text())
    kinds = {role: products.catalog_ids(CATALOG[role]) for role in ROLES}
    listed = facts.pop("offboard_msp_products")
    facts["offboard_msp_agents"] = [e for e in listed if e["product"] in kinds["rmm_agent_removal"]]
    for var, role in (
        ("offboard_security", "security_software_transition"),
        ("offboard_backup_terms", "backup_agent_removal"),
    ):
        facts[var]["msp_products"] = [e["product"] for e in listed if e["product"] in kinds[role]]
    path.write_text(yaml.safe_dump(facts))
    return {e["product"] for e in listed}


OLD_NAMES = ("offboard_msp_agents", "offboard_security.msp_products", "offboard_backup_terms.msp_products")


def test_a_lab_inventory_in_the_old_shape_still_passes_the_guard_with_a_warning_per_old_name(tmp_path: Path):
    """The preflight play alone (it contacts no host): old names are read, named, and give the same scope."""
    inv = tmp_path / "lab"
    listed = _old_shape_lab(inv)
    env = ansible_env(OFFBOARD_EVIDENCE_DIR=str(tmp_path / "evidence"))
    done = playbook("playbooks/preflight.yml", "-i", str(inv), "-l", "lab", "--tags", "agents", env=env)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, out[-3000:]
    for old in OLD_NAMES:
        assert f"{old} is the old name of the MSP's products" in out, old
    in_scope = re.search(r"MSP agents in scope: ([a-z0-9_, ]+)", out)
    assert in_scope and set(in_scope.group(1).split(", ")) == listed


def test_the_wrappers_guard_passes_the_old_shape_and_hands_on_the_warnings(tmp_path: Path):
    """`offboard run` checks before any host with the same preflight; its warnings reach the console."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("ansible.cfg", "collections", "playbooks", "plugins", "roles", "offboard.yml"):
        (project / name).symlink_to(ROOT / name)
    _old_shape_lab(project / "inventories" / "lab")
    code = (
        "import json, sys; from pathlib import Path; from offboard import guard, inventory; "
        "p = Path(sys.argv[1]); w = []; "
        "r = guard.validate(inventory.load('lab', p), p, None, ['agents'], True, warn=w.append); "
        "print(json.dumps({'refusal': r, 'warnings': w}))"
    )
    env = ansible_env(PYTHONPATH=str(ROOT / "wrapper"))
    done = run_tool([str(BIN / "python"), "-c", code, str(project)], cwd=project, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["refusal"] is None
    assert [w.split(" ", 1)[0] for w in got["warnings"]] == list(OLD_NAMES)
