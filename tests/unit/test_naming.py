"""The naming scheme (docs: /work NAMING, issue 19): the project's own modules, action plugins, filters and
lookups are called by their FQCN offboard.msp.<name> in every task file, playbook, template and molecule
file, so the content runs the same from the repository root and installed as a collection."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

PLUGINS = ROOT / "plugins"
CONTENT = ("offboard.yml", "playbooks", "roles", "molecule")


def _stems(folder: str, *suffixes: str) -> set[str]:
    return {p.stem for p in (PLUGINS / folder).iterdir() if p.suffix in suffixes and p.stem != "__init__"}


def _filter_names() -> set[str]:
    names: set[str] = set()
    for path in (PLUGINS / "filter").glob("*.py"):
        body = re.search(r"def filters\(self\).*?return\s*(\{.*?\})", path.read_text(), re.S)
        if body:
            names |= set(re.findall(r"[\"'](\w+)[\"']\s*:", body[1]))
    return names


MODULES = _stems("modules", ".py", ".ps1") | _stems("action", ".py")
FILTERS = _filter_names()
LOOKUPS = _stems("lookup", ".py")
_FILTER_RE = re.compile(r"\|\s*(" + "|".join(sorted(FILTERS, key=len, reverse=True)) + r")\b")
_LOOKUP_RE = re.compile(r"\b(?:lookup|query)\(\s*['\"](" + "|".join(sorted(LOOKUPS)) + r")['\"]")


def _content_files() -> list[Path]:
    files: list[Path] = []
    for top in CONTENT:
        path = ROOT / top
        if path.is_file():
            files.append(path)
        else:
            files.extend(p for p in sorted(path.rglob("*")) if p.suffix in (".yml", ".yaml", ".j2"))
    return files


def _task_keys(node: Any, in_list: bool = False) -> Iterator[str]:
    """Every key of a mapping that sits in a list (tasks, blocks, handlers, plays), walked recursively."""
    if isinstance(node, dict):
        if in_list:
            yield from (str(k) for k in node)
        for value in node.values():
            yield from _task_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _task_keys(item, in_list=True)


def short_names(path: Path) -> list[str]:
    """The project's plugins that the file calls by their short name."""
    text = path.read_text(encoding="utf-8")
    found = [f"filter {m[1]}" for m in _FILTER_RE.finditer(text)]
    found += [f"lookup {m[1]}" for m in _LOOKUP_RE.finditer(text)]
    if path.suffix != ".j2":
        for doc in yaml.safe_load_all(text):
            found += [f"module {key}" for key in _task_keys(doc) if key in MODULES]
    return found


def test_the_scan_knows_the_projects_plugins() -> None:
    assert {"offboard_record", "local_access", "samba_gpo", "dns_zone_fetch"} <= MODULES
    assert {"offboard_access_scope", "win_dns_records"} <= FILTERS
    assert {"offboard_preflight_hosts"} == LOOKUPS


def test_a_short_name_is_found_where_it_is_written(tmp_path: Path) -> None:
    task = tmp_path / "task.yml"
    task.write_text(
        "- name: T\n  offboard_record: {phase: docs}\n"
        '- name: U\n  ansible.builtin.debug: {msg: "{{ x | offboard_access_scope }}"}\n'
        "- name: V\n  ansible.builtin.debug: {msg: \"{{ lookup('offboard_preflight_hosts') }}\"}\n"
        "- name: W\n  offboard.msp.offboard_record: {phase: docs}\n"
    )
    assert short_names(task) == [
        "filter offboard_access_scope",
        "lookup offboard_preflight_hosts",
        "module offboard_record",
    ]


def test_every_task_playbook_and_molecule_file_calls_the_projects_plugins_by_fqcn() -> None:
    offenders = {
        str(path.relative_to(ROOT)): names for path in _content_files() if (names := short_names(path))
    }
    assert not offenders, f"call these by offboard.msp.<name>: {offenders}"
