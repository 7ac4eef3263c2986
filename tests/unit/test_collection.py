"""The repository root is also the collection offboard.msp: it builds, installs and documents itself, and
its declared requirements (collections, Python, execution environment) derive from what the content
uses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import ansible_collections
import yaml

from tests.conftest import BIN, ROOT

# The bundled collections (site-packages), not the repository's own collections/ link (tests/conftest.py).
INSTALLED = next(Path(p) for p in ansible_collections.__path__ if Path(p).parent.name == "site-packages")
# ns.collection.plugin as written in tasks, connection settings and module references.
_FQCN = re.compile(r"(?<![\w.])([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z_][a-z0-9_]*")
_OURS_OR_CORE = {"ansible.builtin", "offboard.msp"}


def _yaml_files(*tops: str) -> list[Path]:
    files: list[Path] = []
    for top in tops:
        path = ROOT / top
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.suffix in (".yml", ".yaml"))
    return files


def _manifest(name: str) -> dict:
    ns, coll = name.split(".")
    return json.loads((INSTALLED / ns / coll / "MANIFEST.json").read_text())["collection_info"]


def collections_used(*tops: str) -> set[str]:
    """Every installed collection that the YAML content under tops names by FQCN."""
    used = set()
    for path in _yaml_files(*tops):
        for match in _FQCN.finditer(path.read_text(encoding="utf-8")):
            name = ".".join(match.groups())
            if name not in _OURS_OR_CORE and (INSTALLED / match[1] / match[2] / "MANIFEST.json").exists():
                used.add(name)
    return used


def with_dependencies(names: set[str]) -> set[str]:
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_manifest(name)["dependencies"])
    return seen


CONTENT = ("roles", "playbooks", "offboard.yml")
EVERYTHING = (*CONTENT, "inventories", "molecule")


def test_requirements_yml_lists_exactly_the_collections_the_content_uses_at_the_bundled_versions() -> None:
    listed = yaml.safe_load((ROOT / "collections" / "requirements.yml").read_text())["collections"]
    names = {c["name"] for c in listed}
    expected = with_dependencies(collections_used(*EVERYTHING))
    assert names == expected, f"missing {sorted(expected - names)}, unused {sorted(names - expected)}"
    for entry in listed:
        assert entry["version"] == _manifest(entry["name"])["version"], entry


def test_galaxy_yml_depends_on_the_collections_the_shipped_content_uses() -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert set(galaxy["dependencies"]) == collections_used(*CONTENT, "inventories/example")


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return names


def test_requirements_txt_holds_the_controllers_runtime_python_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = list(project["dependencies"])
    for extra, deps in project["optional-dependencies"].items():
        if extra != "test":
            runtime.extend(deps)
    # ansible-core and the collections come from the execution environment's base and requirements.yml.
    expected = _requirement_names(runtime) - {"ansible", "ansible-core"}
    assert _requirement_names((ROOT / "requirements.txt").read_text().splitlines()) == expected


def test_the_collection_builds_installs_and_documents_its_plugins_outside_the_repository(
    tmp_path: Path,
) -> None:
    galaxy = str(BIN / "ansible-galaxy")
    subprocess.run(
        [galaxy, "collection", "build", "--output-path", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (artifact,) = tmp_path.glob("offboard-msp-*.tar.gz")
    listing = subprocess.run(["tar", "tzf", str(artifact)], check=True, capture_output=True, text=True).stdout
    for kept in (
        "roles/rmm_agent_removal/tasks/main.yml",
        "plugins/callback/offboard_evidence.py",
        "meta/runtime.yml",
        "requirements.txt",
        "bindep.txt",
    ):
        assert kept in listing.splitlines(), kept
    for left_out in ("wrapper/", "tests/", "inventories/", "molecule/", "collections/", "playbooks/lab/"):
        assert not any(line.startswith(left_out) for line in listing.splitlines()), left_out
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp_path / "cols")

    # Outside the repository, as another project would install it (inside, the repository's own link already
    # counts as an installed offboard.msp).
    def outside(*argv: str) -> str:
        return subprocess.run(
            list(argv), cwd=tmp_path, env=env, check=True, capture_output=True, text=True
        ).stdout

    outside(galaxy, "collection", "install", "--no-deps", "-p", str(tmp_path / "cols"), str(artifact))
    doc = outside(str(BIN / "ansible-doc"), "-t", "module", "offboard.msp.agent_footprint")
    assert "offboard.msp.agent_footprint" in doc and "state" in doc
    callbacks = outside(str(BIN / "ansible-doc"), "-t", "callback", "-l", "offboard.msp")
    assert "offboard.msp.offboard_evidence" in callbacks


def test_ansible_builder_accepts_the_execution_environment(tmp_path: Path) -> None:
    builder = shutil.which("ansible-builder", path=str(BIN)) or "ansible-builder"
    subprocess.run(
        [builder, "create", "-f", "execution-environment.yml", "-c", str(tmp_path / "ctx")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    dockerfile = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "/tmp/offboard-src" in dockerfile
    assert (tmp_path / "ctx" / "_build" / "offboard" / "wrapper" / "offboard" / "evidence.py").exists()


def test_no_molecule_scenario_installs_the_repository_into_itself() -> None:
    """With galaxy.yml at the root, molecule's prerun would install the collection into the first collections
    path: the repository's own link collections/ansible_collections/offboard/msp."""
    for scenario in sorted((ROOT / "molecule").glob("*/molecule.yml")):
        assert yaml.safe_load(scenario.read_text()).get("prerun") is False, scenario
