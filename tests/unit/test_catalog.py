"""Rules for the agent catalog (docs/catalog.md) of roles/rmm_agent_removal.

Every product the tool removes is one YAML file in roles/rmm_agent_removal/vars/catalog/; sources.yml in the
same folder names the sources the facts cite. These tests keep the data loadable by the role and honest
about where each fact comes from. Every failure names the file and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import walk

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG_DIR = REPO_ROOT / "roles" / "rmm_agent_removal" / "vars" / "catalog"
SOURCES_FILE = "sources.yml"
SOURCES_KEY = "rmm_agent_removal_catalog_sources"

REQUIRED_PRODUCTS = frozenset(
    {
        "connectwise_automate",
        "screenconnect",
        "datto_rmm",
        "ninjaone",
        "ncentral",
        "nsight",
        "kaseya_vsa",
        "atera",
        "syncro",
        "tactical_rmm",
        "action1",
        "pulseway",
        "level",
        "superops",
        "teamviewer",
    }
)
OSES = ("windows", "linux", "macos")
CATEGORIES = frozenset({"rmm", "remote_access"})
CONFIDENCES = frozenset({"confirmed", "community", "inferred"})
# A dict holding any of these keys states a fact and must say where it comes from and how sure we are.
FACT_KEYS = frozenset(
    {"name", "path", "label", "key", "display_name", "pattern", "command", "msi_from_uninstall_entry"}
)
PRODUCT_FIELDS = frozenset({"name", "vendor", "category", "instanced", "notes", *OSES})
UNSUPPORTED_FIELDS = frozenset({"unsupported", "source", "confidence"})
SECTION_FIELDS: dict[str, frozenset[str]] = {
    "linux": frozenset({"packages", "services", "processes", "paths", "uninstall", "leftovers"}),
    "macos": frozenset({"launchd", "processes", "paths", "uninstall", "leftovers"}),
    "windows": frozenset(
        {
            "install_dir_from",
            "services",
            "processes",
            "paths",
            "registry",
            "uninstall_entries",
            "protection",
            "uninstall",
            "leftovers",
        }
    ),
}
LEFTOVER_FIELDS: dict[str, frozenset[str]] = {
    "linux": frozenset({"paths", "units", "cron"}),
    "macos": frozenset({"paths"}),
    "windows": frozenset({"paths", "registry", "services"}),
}
# Fields of a fact section that let the role find out whether the product is installed.
DETECTION_FIELDS = frozenset(
    {"packages", "services", "processes", "paths", "registry", "uninstall_entries", "launchd"}
)
# Lists of facts and the field each of their items must carry.
FACT_LIST_FIELDS: dict[str, str] = {
    "packages": "name",
    "services": "name",
    "processes": "name",
    "paths": "path",
    "units": "path",
    "registry": "key",
    "uninstall_entries": "display_name",
    "launchd": "label",
    "cron": "pattern",
}
UNINSTALL_STEP_FIELDS = frozenset(
    {
        "command",
        "msi_from_uninstall_entry",
        "msi_args",
        "when_exists",
        "chdir",
        "timeout",
        "source",
        "confidence",
    }
)
PROTECTION_FIELDS = frozenset({"how", "command", "secret_var", "source", "confidence"})
MATCH_MODES = frozenset({"exact", "prefix", "regex"})
PLACEHOLDERS = frozenset({"{instance}", "{install_dir}"})
PLACEHOLDER_RE = re.compile(r"\{[a-z_]+\}")
URL_RE = re.compile(r"^https?://\S+$")
REGISTRY_KEY_RE = re.compile(r"^(HKLM|HKCU|HKCR|HKU|HKCC):\\")
WINDOWS_PATH_RE = re.compile(r"^([A-Za-z]:\\|\{install_dir\})")
# Fields whose value is a filesystem path on the target.
PATH_FIELDS = frozenset({"path", "plist", "when_exists", "chdir"})


def _catalog_files() -> list[Path]:
    return sorted(p for p in CATALOG_DIR.iterdir() if p.is_file()) if CATALOG_DIR.is_dir() else []


def _product_files() -> list[Path]:
    return [p for p in _catalog_files() if p.name != SOURCES_FILE]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


@cache
def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        error = f"{_rel(path)}: does not parse as YAML: {exc}"
    pytest.fail(error, pytrace=False)


def _product(path: Path) -> dict[str, Any]:
    data = _load(path)
    if not isinstance(data, dict) or list(data) != [path.stem] or not isinstance(data[path.stem], dict):
        pytest.fail(f"{_rel(path)}: expected a single top-level key '{path.stem}' holding a mapping")
    return data[path.stem]


@cache
def _source_keys() -> frozenset[str]:
    path = CATALOG_DIR / SOURCES_FILE
    if not path.is_file():
        pytest.fail(f"{_rel(path)}: missing")
    data = _load(path)
    if not isinstance(data, dict) or not isinstance(data.get(SOURCES_KEY), dict):
        pytest.fail(f"{_rel(path)}: expected a top-level mapping '{SOURCES_KEY}'")
    return frozenset(data[SOURCES_KEY])


def _os_sections(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (os, location, section) for each fact section (not the unsupported ones) of a product."""
    product = _product(path)
    for os_name in OSES:
        section = product.get(os_name)
        if isinstance(section, dict) and "unsupported" not in section:
            yield os_name, f"{path.stem}.{os_name}", section


def _mappings(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (os, location, mapping) for every mapping inside the product's fact sections."""
    for os_name, where, section in _os_sections(path):
        for location, value in walk(section, where):
            if isinstance(value, dict):
                yield os_name, location, value


def _facts(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for _os_name, location, value in _mappings(path):
        if FACT_KEYS & value.keys() or location.endswith(".protection"):
            yield location, value


def _source_problem(source: Any, known: frozenset[str]) -> str | None:
    items = source if isinstance(source, list) else [source]
    if isinstance(source, list) and not source:
        return "source is an empty list"
    for item in items:
        if not isinstance(item, str) or not (item in known or URL_RE.match(item)):
            return f"source {item!r} is neither a key of {SOURCES_FILE} nor an http(s) URL"
    return None


def _unknown_fields(where: str, mapping: dict[str, Any], allowed: frozenset[str]) -> Iterator[str]:
    unknown = mapping.keys() - allowed
    if unknown:
        yield f"{where}: unknown fields {sorted(unknown)}"


def _fail_if(errors: list[str], path: Path) -> None:
    if errors:
        pytest.fail(f"{_rel(path)}:\n  " + "\n  ".join(errors), pytrace=False)


def product_check(check: Callable[[Path], Iterator[str]]) -> Callable[[Path], None]:
    """A test run on every product file: check yields what is wrong, the test fails naming all of it."""

    def test(path: Path) -> None:
        _fail_if(list(check(path)), path)

    test.__name__, test.__qualname__, test.__doc__ = check.__name__, check.__qualname__, check.__doc__
    return product_files(test)


def _file_ids(files: list[Path]) -> list[str]:
    return [p.name for p in files]


catalog_files = pytest.mark.parametrize("path", _catalog_files(), ids=_file_ids(_catalog_files()))
product_files = pytest.mark.parametrize("path", _product_files(), ids=_file_ids(_product_files()))


def test_catalog_folder_holds_all_required_products() -> None:
    present = {p.stem for p in _product_files()}
    missing = sorted(REQUIRED_PRODUCTS - present)
    assert not missing, (
        f"{_rel(CATALOG_DIR)}: missing product files: {', '.join(m + '.yml' for m in missing)}"
    )


@catalog_files
def test_catalog_file_is_yml_and_parses_to_a_mapping(path: Path) -> None:
    assert path.suffix == ".yml", f"{_rel(path)}: catalog files must end in .yml"
    data = _load(path)
    assert isinstance(data, dict), f"{_rel(path)}: top level must be a mapping, got {type(data).__name__}"


@catalog_files
def test_catalog_file_has_single_top_level_key_named_after_the_file(path: Path) -> None:
    expected = SOURCES_KEY if path.name == SOURCES_FILE else path.stem
    data = _load(path)
    assert isinstance(data, dict) and list(data) == [expected], (
        f"{_rel(path)}: top-level keys are {list(data) if isinstance(data, dict) else data!r}, "
        f"expected only '{expected}'"
    )


def test_sources_file_maps_each_key_to_a_description() -> None:
    path = CATALOG_DIR / SOURCES_FILE
    _source_keys()
    sources = _load(path)[SOURCES_KEY]
    errors = [
        f"{SOURCES_KEY}.{key}: expected an UPPER_SNAKE key with a non-empty description string"
        for key, value in sources.items()
        if not (
            isinstance(key, str)
            and re.fullmatch(r"[A-Z][A-Z0-9_]*", key)
            and isinstance(value, str)
            and value.strip()
        )
    ]
    _fail_if(errors, path)


@product_files
def test_product_header_has_name_vendor_category_and_instanced_flag(path: Path) -> None:
    product = _product(path)
    where = path.stem
    errors = [
        f"{where}.{key}: unknown field (allowed: {', '.join(sorted(PRODUCT_FIELDS))})"
        for key in product.keys() - PRODUCT_FIELDS
    ]
    for key in ("name", "vendor"):
        if not isinstance(product.get(key), str) or not product[key].strip():
            errors.append(f"{where}.{key}: required non-empty string")
    if product.get("category") not in CATEGORIES:
        errors.append(f"{where}.category: {product.get('category')!r} not in {sorted(CATEGORIES)}")
    if not isinstance(product.get("instanced"), bool):
        errors.append(f"{where}.instanced: required true/false, got {product.get('instanced')!r}")
    if "notes" in product and not isinstance(product["notes"], str):
        errors.append(f"{where}.notes: must be a string")
    _fail_if(errors, path)


@product_check
def test_every_os_is_either_a_fact_section_or_declared_unsupported(path: Path) -> Iterator[str]:
    product = _product(path)
    known = _source_keys()
    for os_name in OSES:
        where = f"{path.stem}.{os_name}"
        section = product.get(os_name)
        if not isinstance(section, dict):
            yield (f"{where}: missing; write facts or {{unsupported: why, source: KEY, confidence: ...}}")
            continue
        if "unsupported" in section:
            if section.keys() != UNSUPPORTED_FIELDS:
                yield (
                    f"{where}: an unsupported section has exactly the fields {sorted(UNSUPPORTED_FIELDS)}, "
                    f"got {sorted(section)}"
                )
            if not isinstance(section.get("unsupported"), str) or not section["unsupported"].strip():
                yield f"{where}.unsupported: required non-empty reason"
            problem = _source_problem(section.get("source"), known)
            if problem:
                yield f"{where}.source: {problem}"
            if section.get("confidence") not in CONFIDENCES:
                yield (f"{where}.confidence: {section.get('confidence')!r} not in {sorted(CONFIDENCES)}")
            continue
        unknown = section.keys() - SECTION_FIELDS[os_name]
        if unknown:
            yield (f"{where}: unknown fields {sorted(unknown)}, allowed: {sorted(SECTION_FIELDS[os_name])}")
        if not any(section.get(field) for field in DETECTION_FIELDS):
            yield (f"{where}: nothing to detect the product with; needs one of {sorted(DETECTION_FIELDS)}")


@product_check
def test_fact_lists_hold_facts_with_their_identifying_field(path: Path) -> Iterator[str]:
    for os_name, where, section in _os_sections(path):
        holders: list[tuple[str, dict[str, Any]]] = [(where, section)]
        leftovers = section.get("leftovers")
        if leftovers is not None:
            if not isinstance(leftovers, dict):
                yield f"{where}.leftovers: must be a mapping"
            else:
                unknown = leftovers.keys() - LEFTOVER_FIELDS[os_name]
                if unknown:
                    yield (
                        f"{where}.leftovers: unknown fields {sorted(unknown)}, "
                        f"allowed: {sorted(LEFTOVER_FIELDS[os_name])}"
                    )
                holders.append((f"{where}.leftovers", leftovers))
        for holder_where, holder in holders:
            for field, required in FACT_LIST_FIELDS.items():
                if field not in holder:
                    continue
                items = holder[field]
                if not isinstance(items, list):
                    yield f"{holder_where}.{field}: must be a list"
                    continue
                for index, item in enumerate(items):
                    value = item.get(required) if isinstance(item, dict) else None
                    if not isinstance(value, str) or not value.strip():
                        yield f"{holder_where}.{field}[{index}]: needs a non-empty '{required}'"


@product_check
def test_every_fact_cites_a_known_source_and_a_valid_confidence(path: Path) -> Iterator[str]:
    known = _source_keys()
    for where, fact in _facts(path):
        if "source" not in fact:
            yield f"{where}: fact without 'source'"
        else:
            problem = _source_problem(fact["source"], known)
            if problem:
                yield f"{where}.source: {problem}"
        if fact.get("confidence") not in CONFIDENCES:
            yield f"{where}.confidence: {fact.get('confidence')!r} not in {sorted(CONFIDENCES)}"


@product_check
def test_commands_are_argv_lists_of_strings(path: Path) -> Iterator[str]:
    for _os_name, location, value in _mappings(path):
        for field in ("command", "msi_args"):
            if field not in value:
                continue
            argv = value[field]
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
                yield (
                    f"{location}.{field}: must be an argv list of non-empty strings, no shell; got {argv!r}"
                )


@product_check
def test_timeouts_are_positive_integers(path: Path) -> Iterator[str]:
    for _os_name, location, value in _mappings(path):
        if "timeout" in value:
            timeout = value["timeout"]
            if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
                yield f"{location}.timeout: must be a positive integer of seconds, got {timeout!r}"


@product_check
def test_uninstall_steps_run_one_action_with_a_timeout(path: Path) -> Iterator[str]:
    for _os_name, where, section in _os_sections(path):
        steps = section.get("uninstall", [])
        if not isinstance(steps, list):
            yield f"{where}.uninstall: must be a list (may be empty)"
            continue
        for index, step in enumerate(steps):
            step_where = f"{where}.uninstall[{index}]"
            if not isinstance(step, dict):
                yield f"{step_where}: must be a mapping"
                continue
            yield from _unknown_fields(step_where, step, UNINSTALL_STEP_FIELDS)
            has_command = "command" in step
            has_msi = step.get("msi_from_uninstall_entry") is True
            if has_command == has_msi:
                yield f"{step_where}: needs one of 'command' or 'msi_from_uninstall_entry: true'"
            if "msi_args" in step and not has_msi:
                yield f"{step_where}.msi_args: only allowed with msi_from_uninstall_entry"
            if has_msi and not section.get("uninstall_entries"):
                yield f"{step_where}: msi_from_uninstall_entry needs uninstall_entries in {where}"
            if "timeout" not in step:
                yield f"{step_where}: missing 'timeout'"
            for field in ("when_exists", "chdir"):
                if field in step and (not isinstance(step[field], str) or not step[field]):
                    yield f"{step_where}.{field}: must be a non-empty path string"


@product_check
def test_protection_says_how_it_is_lifted(path: Path) -> Iterator[str]:
    for _os_name, where, section in _os_sections(path):
        protection = section.get("protection")
        if protection is None:
            continue
        if not isinstance(protection, dict):
            yield f"{where}.protection: must be a mapping"
            continue
        yield from _unknown_fields(f"{where}.protection", protection, PROTECTION_FIELDS)
        if not isinstance(protection.get("how"), str) or not protection["how"].strip():
            yield f"{where}.protection.how: required description"
        if "command" not in protection and "secret_var" not in protection:
            yield f"{where}.protection: needs a 'command' or a 'secret_var'"
        secret_var = protection.get("secret_var")
        if secret_var is not None and not (
            isinstance(secret_var, str) and re.fullmatch(r"rmm_agent_removal_[a-z0-9_]+", secret_var)
        ):
            yield (
                f"{where}.protection.secret_var: must name a role variable (rmm_agent_removal_...), "
                f"got {secret_var!r}"
            )


@product_files
def test_instance_placeholder_appears_only_in_instanced_products(path: Path) -> None:
    product = _product(path)
    where_used = [
        where for where, value in walk(product, path.stem) if isinstance(value, str) and "{instance}" in value
    ]
    if product.get("instanced") is True:
        assert any(not where.endswith(".notes") for where in where_used), (
            f"{_rel(path)}: {path.stem}.instanced is true but no fact uses '{{instance}}'"
        )
    else:
        assert not where_used, (
            f"{_rel(path)}: '{{instance}}' used in {', '.join(where_used)} "
            f"but {path.stem}.instanced is not true"
        )


@product_check
def test_placeholders_are_known_and_install_dir_is_resolvable(path: Path) -> Iterator[str]:
    for _os_name, where, section in _os_sections(path):
        for location, value in walk(section, where):
            if not isinstance(value, str):
                continue
            for placeholder in PLACEHOLDER_RE.findall(value):
                if placeholder not in PLACEHOLDERS:
                    yield (f"{location}: unknown placeholder {placeholder}, known: {sorted(PLACEHOLDERS)}")
                elif placeholder == "{install_dir}" and "install_dir_from" not in section:
                    yield f"{location}: uses {{install_dir}} but {where} has no install_dir_from"
        install_dir_from = section.get("install_dir_from")
        if install_dir_from is not None and not (
            isinstance(install_dir_from, dict)
            and isinstance(install_dir_from.get("key"), str)
            and REGISTRY_KEY_RE.match(install_dir_from["key"])
            and isinstance(install_dir_from.get("value"), str)
        ):
            yield f"{where}.install_dir_from: needs a registry 'key' (HKLM:\\...) and a 'value' name"


@product_check
def test_paths_and_registry_keys_are_absolute_for_their_os(path: Path) -> Iterator[str]:
    for os_name, location, value in _mappings(path):
        for field in PATH_FIELDS & value.keys():
            target = value[field]
            ok = isinstance(target, str) and (
                bool(WINDOWS_PATH_RE.match(target)) if os_name == "windows" else target.startswith("/")
            )
            if not ok:
                yield f"{location}.{field}: {target!r} is not an absolute {os_name} path"
        key = value.get("key")
        if (
            os_name == "windows"
            and "key" in value
            and not (isinstance(key, str) and REGISTRY_KEY_RE.match(key))
        ):
            yield (f"{location}.key: {key!r} must start with HKLM:\\ HKCU:\\ HKCR:\\ HKU:\\ or HKCC:\\")
        if "command" in value and isinstance(value["command"], list) and value["command"]:
            program = value["command"][0]
            if os_name == "windows":
                ok = bool(WINDOWS_PATH_RE.match(program) or re.fullmatch(r"[A-Za-z0-9_.-]+\.exe", program))
            else:
                ok = program.startswith("/")
            if not ok:
                yield (f"{location}.command[0]: {program!r} must be absolute (Windows: or a bare .exe)")


@product_check
def test_uninstall_entries_use_a_valid_match_mode(path: Path) -> Iterator[str]:
    for _os_name, where, section in _os_sections(path):
        for index, entry in enumerate(section.get("uninstall_entries") or []):
            entry_where = f"{where}.uninstall_entries[{index}]"
            if not isinstance(entry, dict):
                continue
            mode = entry.get("match")
            if mode not in MATCH_MODES:
                yield f"{entry_where}.match: {mode!r} not in {sorted(MATCH_MODES)}"
            elif mode == "regex":
                try:
                    re.compile(str(entry.get("display_name")))
                except re.error as exc:
                    yield f"{entry_where}.display_name: invalid regex: {exc}"
