"""The catalogs agree with the researched reference (shared/reference/agent_footprints.yaml) on every Linux
fact the reference has - package names, install paths, systemd units - or cite a better source of their
own (issue 13, point 4: a Linux package name had drifted from its source).

Reference values are free text; the facts are read out of them with the same few patterns everywhere:
absolute paths, `*.service` names, and package names where the reference names a package. Debian package
names are lowercase (dpkg lowercases `Package: NinjaRMMAgent`), so names compare lowercased.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

REFERENCE = Path("/work/shared/reference/agent_footprints.yaml")
CATALOGS = [ROOT / "roles/rmm_agent_removal/vars/catalog", ROOT / "roles/backup_agent_removal/vars/catalog"]
# catalog id -> the reference product (substring of its `product`).
PAIRS = {
    "connectwise_automate": "ConnectWise Automate",
    "screenconnect": "ScreenConnect",
    "datto_rmm": "Datto RMM",
    "ninjaone": "NinjaOne",
    "tactical_rmm": "Tactical RMM",
    "superops": "SuperOps",
    "veeam_agent": "Veeam Agent for Linux",
    "cove": "Cove Data Protection",
    "acronis_cyber_protect": "Acronis",
}
PATH_FIELDS = ("install_path", "install_paths", "binary", "config", "dirs")
UNIT_FIELDS = ("systemd_unit", "systemd_units")
# Where the catalog knowingly differs, and the better source it cites (reason kept next to the fact).
DIFFERS: dict[tuple[str, str, str], str] = {
    # The reference's path is "unclear" (a LOLRMM log path): the catalog marks Linux unsupported instead.
}


@functools.cache
def _catalog() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for folder in CATALOGS:
        for path in sorted(folder.glob("*.yml")):
            if path.name != "sources.yml":
                out.update(yaml.safe_load(path.read_text()) or {})
    return out


@functools.cache
def _products() -> list[dict[str, Any]]:
    return yaml.safe_load(REFERENCE.read_text())["products"]


def _reference(name: str) -> dict[str, Any]:
    return next(p for p in _products() if name in p["product"])


def _text(field: Any) -> str:
    if isinstance(field, dict):
        field = field.get("value", "")
    return " ".join(map(str, field)) if isinstance(field, list) else str(field)


def _values(entries: list[Any] | None, key: str) -> list[str]:
    return [e[key] if isinstance(e, dict) else e for e in entries or []]


def _paths(text: str) -> list[str]:
    # Absolute paths only: "transport/deployment" is prose, not a path.
    found = re.findall(r"(?<![\w.])(/[A-Za-z0-9_.<>{}\-]+(?:/[A-Za-z0-9_.<>{}\-]+)*)", text)
    return [p.rstrip("/.").replace("<thumbprint>", "{instance}") for p in found]


def _covered(path: str, catalog_paths: list[str]) -> bool:
    """The path is in the catalog, or inside a folder the catalog removes."""
    return any(path == c or path.startswith(c.rstrip("/") + "/") for c in catalog_paths)


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for cid, ref_name in PAIRS.items():
        linux = _reference(ref_name).get("linux")
        if not isinstance(linux, dict):
            continue
        for field in PATH_FIELDS + UNIT_FIELDS + ("packages",):
            if field in linux:
                cases.append((cid, ref_name, field))
    return cases


@pytest.mark.parametrize(("cid", "ref_name", "field"), _cases(), ids=lambda v: str(v))
def test_catalog_agrees_with_the_reference_on_linux_facts(cid: str, ref_name: str, field: str) -> None:
    linux = _reference(ref_name)["linux"]
    section = _catalog()[cid].get("linux") or {}
    text = _text(linux[field])
    if "unclear" in text or "not found" in text:
        return  # the reference has no fact here
    if (cid, field, text) in DIFFERS:
        return
    if field in PATH_FIELDS:
        paths = _values(section.get("paths"), "path") + _values(
            (section.get("leftovers") or {}).get("paths"), "path"
        )
        # "/opt/CentraStage (service); /usr/local/share/.../AEMAgent (agent process)": every path counts.
        missing = [p for p in _paths(text) if not _covered(p, paths)]
        assert not missing, f"{cid}: reference {field} {missing} not in the catalog's paths {paths}"
    elif field in UNIT_FIELDS:
        services = _values(section.get("services"), "name")
        units = _values((section.get("leftovers") or {}).get("units"), "path")
        for unit in re.findall(r"([\w@.-]+\.service)\b", text):
            if unit.startswith("/"):
                continue
            assert unit in services, f"{cid}: reference unit {unit} not in the catalog's services {services}"
        for path in _paths(text):
            assert path in units, f"{cid}: reference unit file {path} not in the catalog's leftover units"
    else:  # packages
        names = [n.lower() for n in _values(section.get("packages"), "name")]
        if text.startswith("none"):
            assert names == [], f"{cid}: the reference says no package ({text}); the catalog lists {names}"
            return
        ref_names = (
            re.findall(r"deb package (\S+)", text)
            or re.findall(r"--purge (\S+?)\)?$", text)
            or [v.split()[0] for v in (linux[field].get("value") if isinstance(linux[field], dict) else [])]
        )
        assert ref_names, f"{cid}: no package name read from {text!r}"
        for name in ref_names:
            assert name.lower() in names, f"{cid}: reference package {name} is not in the catalog ({names})"


def test_every_pair_names_a_real_catalog_entry_and_reference_product() -> None:
    catalog = _catalog()
    for cid, ref_name in PAIRS.items():
        assert cid in catalog, cid
        assert _reference(ref_name), ref_name
