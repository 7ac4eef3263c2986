"""offboard_agent_scope: inventory products x catalog -> footprint items, scoped to the MSP's instances."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from tests.conftest import ROOT, load_module

agents = load_module("agents_filter", "plugins/filter/agents.py")


@pytest.fixture(scope="module")
def catalog():
    data = {}
    for path in (ROOT / "roles/rmm_agent_removal/vars/catalog").glob("*.yml"):
        if path.stem != "sources":
            data.update(yaml.safe_load(path.read_text()))
    return data


def test_only_the_msps_instance_is_in_scope(catalog):
    items = agents.agent_scope(
        [{"product": "screenconnect", "instances": ["5e0b1c2d3a4f6789"]}], catalog, "linux"
    )
    assert [i["key"] for i in items] == ["screenconnect:5e0b1c2d3a4f6789"]
    text = repr(items)
    assert "{instance}" not in text
    assert "/opt/connectwisecontrol-5e0b1c2d3a4f6789" in items[0]["paths"]
    assert "c0ffee00c11e0001" not in text


def test_remote_access_tools_come_before_the_rmm_agent(catalog):
    products = [{"product": "tactical_rmm"}, {"product": "teamviewer"}, {"product": "ninjaone"}]
    items = agents.agent_scope(products, catalog, "linux")
    assert [i["category"] for i in items] == ["remote_access", "rmm", "rmm"]


def test_a_product_without_linux_support_is_kept_as_unsupported(catalog):
    (item,) = agents.agent_scope([{"product": "atera"}], catalog, "linux")
    assert item["supported"] is False and item["unsupported_reason"]


def test_facts_lose_their_source_annotations_but_keep_their_values(catalog):
    (item,) = agents.agent_scope([{"product": "tactical_rmm"}], catalog, "linux")
    assert "tacticalagent.service" in item["services"]
    assert item["uninstall"][0]["command"] == ["/opt/tacticalmesh/meshagent", "-uninstall"]
    assert "source" not in item["uninstall"][0]


def test_unknown_product_is_an_error(catalog):
    with pytest.raises(AnsibleFilterError, match="unknown product"):
        agents.agent_scope([{"product": "nope"}], catalog, "linux")
