"""Preflight of the agents phase's security, backup and footprint terms: bad input refused with what to fix,
before any host is touched; the lab's and the example client's variables pass. (The MSP's products are
checked against the catalogs by offboard_preflight: tests/unit/test_preflight.py.)"""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT, load_module

ap = load_module("ap", "plugins/action/offboard_agents_preflight.py")


@pytest.mark.parametrize(
    "path", ["inventories/lab/group_vars/lab.yml", "inventories/example/group_vars/example/main.yml"]
)
def test_shipped_inventories_pass(path):
    hostvars = yaml.safe_load((ROOT / path).read_text())
    assert hostvars["offboard_security"] and hostvars["offboard_backup_terms"]
    ap.check(hostvars)


@pytest.mark.parametrize(
    ("hostvars", "message"),
    [
        ({"offboard_security": {"replacement_confirmed_on": "18.11.2026"}}, "is not a date"),
        ({"offboard_security_uninstall_codes": "x"}, "must map product ids"),
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
        ap.check(hostvars)
    assert message in str(err.value)


def test_nothing_set_is_fine():
    assert ap.check({}) is None
