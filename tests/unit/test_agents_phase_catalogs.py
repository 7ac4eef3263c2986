"""The security-software and backup-agent catalogs: same format as the RMM catalog (docs/catalog.md), every
fact sourced, the products the issue asks for present, and every entry usable by offboard_agent_scope."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, load_module, walk

agents = load_module("agents_filter", "plugins/filter/agents.py")

CATALOGS = {
    "security_software_transition": {
        "category": "security",
        "required": {
            "sentinelone",
            "crowdstrike_falcon",
            "huntress",
            "bitdefender_gravityzone",
            "sophos",
            "webroot",
            "threatdown",
            "eset",
        },
    },
    "backup_agent_removal": {
        "category": "backup",
        "required": {
            "veeam_agent",
            "datto_backup_agent",
            "acronis_cyber_protect",
            "cove",
            "axcient_x360recover",
        },
    },
}
FACT_KEYS = {"name", "path", "label", "key", "display_name", "pattern", "command", "msi_from_uninstall_entry"}
CONFIDENCES = {"confirmed", "community", "inferred"}
URL = re.compile(r"^https?://\S+$")


def _dir(role: str) -> Path:
    return ROOT / "roles" / role / "vars" / "catalog"


def _products(role: str) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(_dir(role).glob("*.yml")):
        if path.name == "sources.yml":
            continue
        data = yaml.safe_load(path.read_text())
        assert list(data) == [path.stem], f"{path}: single top-level key equal to the file name"
        out[path.stem] = data[path.stem]
    return out


@pytest.mark.parametrize("role", sorted(CATALOGS))
def test_required_products_present_with_their_category(role):
    products = _products(role)
    assert CATALOGS[role]["required"] <= set(products)
    assert {p["category"] for p in products.values()} == {CATALOGS[role]["category"]}


@pytest.mark.parametrize("role", sorted(CATALOGS))
def test_every_fact_has_a_known_source_and_a_confidence(role):
    sources = set(yaml.safe_load((_dir(role) / "sources.yml").read_text())[f"{role}_catalog_sources"])
    errors = []
    for product, spec in _products(role).items():
        for os_name in ("linux", "macos", "windows"):
            section = spec.get(os_name)
            if section is None:
                continue
            if "unsupported" in section:
                if section.get("source") not in sources or section.get("confidence") not in CONFIDENCES:
                    errors.append(f"{product}.{os_name}: unsupported needs source and confidence")
                continue
            for where, value in walk(section, f"{product}.{os_name}"):
                if isinstance(value, dict) and (FACT_KEYS & value.keys() or where.endswith(".protection")):
                    src = value.get("source")
                    if not (src in sources or (isinstance(src, str) and URL.match(src))):
                        errors.append(f"{where}: source {src!r} unknown")
                    if value.get("confidence") not in CONFIDENCES:
                        errors.append(f"{where}: confidence {value.get('confidence')!r}")
                    if "command" in value and value["command"] is not None:
                        cmd = value["command"]
                        if not (isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd)):
                            errors.append(f"{where}: command must be an argv list of strings")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("role", sorted(CATALOGS))
def test_secret_placeholder_only_where_the_step_declares_it(role):
    """{secret} is replaced with the vault code only in no_log tasks: a step that takes it says so."""
    for product, spec in _products(role).items():
        for os_name in ("linux", "macos", "windows"):
            section = spec.get(os_name) or {}
            for step in section.get("uninstall") or []:
                if "{secret}" in repr(step):
                    assert step.get("needs_secret") is True, f"{product}.{os_name}: {step}"
                    assert role == "security_software_transition", "backup agents take no secrets"


@pytest.mark.parametrize("role", sorted(CATALOGS))
@pytest.mark.parametrize("os_key", ["linux", "macos", "windows"])
def test_scope_filter_builds_items_for_every_product(role, os_key):
    catalog = _products(role)
    items = agents.agent_scope(sorted(catalog), catalog, os_key, [CATALOGS[role]["category"]])
    assert {i["key"] for i in items} == set(catalog)
    for item in items:
        if item["supported"]:
            assert any(item[k] for k in ("packages", "services", "processes", "paths")) or item.get(
                "uninstall_entries"
            ), f"{item['key']} on {os_key}: nothing to detect it by"


def test_bare_product_ids_are_accepted_like_mappings():
    catalog = _products("security_software_transition")
    assert agents.agent_scope(["eset"], catalog, "linux") == agents.agent_scope(
        [{"product": "eset"}], catalog, "linux"
    )


def test_kernel_modules_reach_the_items():
    catalog = _products("backup_agent_removal")
    (item,) = agents.agent_scope(["veeam_agent"], catalog, "linux", ["backup"])
    assert {m["name"] for m in item["kernel_modules"]} == {"veeamsnap", "blksnap", "bdevfilter"}
