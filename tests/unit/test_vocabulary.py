"""The record vocabulary is written once (plugins/module_utils/offboard_vocabulary.py): the published record
schema, the offboard_record module documentation, the wrapper and the plugins all agree with it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.offboard.msp.plugins.module_utils import offboard_vocabulary as vocabulary
from offboard import records

from tests.conftest import ROOT

SCHEMA = json.loads((ROOT / "docs" / "record.schema.json").read_text(encoding="utf-8"))


def _enums(node: Any, path: str = "") -> dict[str, list[str]]:
    """Every enum of the schema by its JSON path."""
    found: dict[str, list[str]] = {}
    if isinstance(node, dict):
        if "enum" in node:
            found[path] = node["enum"]
        for key, sub in node.items():
            found.update(_enums(sub, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            found.update(_enums(sub, f"{path}[{index}]"))
    return found


def _ending(enums: dict[str, list[str]], suffix: str) -> list[list[str]]:
    return [values for path, values in enums.items() if path.endswith(suffix)]


def test_the_record_schema_enums_equal_the_vocabulary() -> None:
    enums = _enums(SCHEMA)
    assert enums["/properties/kind"] == list(vocabulary.KINDS)
    kinds = _ending(enums, "/if/properties/kind")
    assert list(vocabulary.RUN_KINDS) in kinds and list(vocabulary.CHECKLIST_KINDS) in kinds
    assert _ending(enums, "/then/properties/phase") == [list(vocabulary.PHASES)]
    assert _ending(enums, "/then/properties/action") == [list(vocabulary.ACTIONS)]
    assert _ending(enums, "/verification/properties/result") == [list(vocabulary.VERIFICATION_RESULTS)]
    assert _ending(enums, "/then/properties/outcome") == [list(vocabulary.OUTCOMES)]


def test_the_offboard_record_documentation_offers_exactly_the_vocabulary() -> None:
    source = (ROOT / "plugins" / "action" / "offboard_record.py").read_text(encoding="utf-8")
    doc = yaml.safe_load(re.search(r'DOCUMENTATION = r"""(.*?)"""', source, re.S)[1])
    options = doc["options"]
    assert options["phase"]["choices"] == list(vocabulary.PHASES)
    assert options["action"]["choices"] == list(vocabulary.ACTIONS)
    result = options["verification"]["suboptions"]["result"]
    assert result["choices"] == list(vocabulary.VERIFICATION_RESULTS)


def test_the_wrapper_reads_the_collections_vocabulary_file() -> None:
    assert Path(records.names_secret.__code__.co_filename).resolve() == Path(vocabulary.__file__).resolve()
    assert records.PHASES == vocabulary.PHASES and records.ACTIONS == vocabulary.ACTIONS
    assert records.VERIFICATION_RESULTS == vocabulary.VERIFICATION_RESULTS


def test_the_phase_list_is_written_only_in_the_vocabulary() -> None:
    phases = re.compile(r"""["']docs["'],\s*["']access["'],\s*["']agents["'],\s*["']infra["']""")
    written = [
        str(path.relative_to(ROOT))
        for top in ("plugins", "wrapper")
        for path in sorted((ROOT / top).rglob("*.py"))
        if phases.search(path.read_text(encoding="utf-8"))
    ]
    assert written == ["plugins/module_utils/offboard_vocabulary.py"]
