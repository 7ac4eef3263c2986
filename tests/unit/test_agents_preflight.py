"""Preflight of the agents phase's security, backup and footprint variables: bad input refused with what
to fix, before any host is touched; the lab's and the example client's variables pass."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("ap", ROOT / "plugins/action/offboard_agents_preflight.py")
ap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ap)

SEC = str(ROOT / "roles/security_software_transition/vars/catalog")
BAK = str(ROOT / "roles/backup_agent_removal/vars/catalog")


@pytest.mark.parametrize(
    "path", ["inventories/lab/group_vars/lab.yml", "inventories/example/group_vars/example/main.yml"]
)
def test_shipped_inventories_pass(path):
    out = ap.check(yaml.safe_load((ROOT / path).read_text()), SEC, BAK)
    assert out["security_products"] and out["backup_products"]


@pytest.mark.parametrize(
    ("hostvars", "message"),
    [
        ({"offboard_security": {"msp_products": ["sentinelOne"]}}, "unknown product 'sentinelOne'"),
        ({"offboard_security": {"msp_products": "sentinelone"}}, "must be a list"),
        ({"offboard_security": {"replacement_confirmed_on": "18.11.2026"}}, "is not a date"),
        ({"offboard_security_uninstall_codes": "x"}, "must map product ids"),
        ({"offboard_backup_terms": {"msp_products": ["veeam"]}}, "unknown product 'veeam'"),
        ({"offboard_backup_terms": {"data_disposition": "keep"}}, "use one of handover, transfer, delete"),
        ({"offboard_backup_terms": {"retention_until": "soon"}}, "retention_until: 'soon' is not a date"),
        (
            {"offboard_backup_terms": {"msp_data": [{"path": "backups"}]}},
            "msp_data[0] needs an absolute 'path'",
        ),
        ({"offboard_msp_footprint": {"name_patterns": ["(msp"]}}, "is not a regular expression"),
        ({"offboard_msp_footprint": {"script_dirs": ["/opt"]}}, "script_dirs[0] '/opt'"),
        ({"offboard_msp_footprint": {"script_dirs": ["/opt/msp-*"]}}, "without wildcards"),
        ({"offboard_msp_footprint": {"script_dirs": ["scripts"]}}, "absolute path"),
    ],
)
def test_bad_input_is_refused_with_what_to_fix(hostvars, message):
    with pytest.raises(ap.PreflightError) as err:
        ap.check(hostvars, SEC, BAK)
    assert message in str(err.value)


def test_nothing_set_is_fine():
    assert ap.check({}, SEC, BAK) == {"security_products": [], "backup_products": []}
