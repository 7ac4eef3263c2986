"""Static checks of the Windows footprint module (win_agent_footprint.ps1), which cannot run here.

No Windows host and no PowerShell exist on this machine (`pwsh` is not packaged for it), so these tests
read the .ps1 as text: the module contract Ansible relies on, agreement with its documentation, the
fields it reads from catalog items, the fields the role reads from its results, and its refusal lists
checked against the catalog data. Behaviour on a real host is the job of molecule/rmm_agent_removal_windows.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from typing import Any

import yaml

from tests.conftest import ROOT

PS1 = ROOT / "plugins/modules/win_agent_footprint.ps1"
DOC = ROOT / "plugins/modules/win_agent_footprint.py"
TASKS = ROOT / "roles/rmm_agent_removal/tasks"
CATALOG_DIR = ROOT / "roles/rmm_agent_removal/vars/catalog"

_spec = importlib.util.spec_from_file_location("agents_filter", ROOT / "plugins/filter/agents.py")
agents = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agents)

# PowerShell aliases that read well at a prompt and badly in a module (and differ between editions:
# `sc` is Set-Content in Windows PowerShell, `curl`/`wget` vanish in PowerShell 7).
ALIASES = (
    "%",
    "?",
    "ac",
    "cat",
    "cd",
    "chdir",
    "clc",
    "clear",
    "cls",
    "copy",
    "cp",
    "curl",
    "del",
    "dir",
    "echo",
    "erase",
    "fl",
    "foreach",
    "ft",
    "gc",
    "gci",
    "gcm",
    "gi",
    "gm",
    "gp",
    "gps",
    "group",
    "gsv",
    "iex",
    "ii",
    "kill",
    "ls",
    "measure",
    "mi",
    "move",
    "mv",
    "ni",
    "popd",
    "ps",
    "pushd",
    "pwd",
    "r",
    "rd",
    "ren",
    "ri",
    "rm",
    "rmdir",
    "rp",
    "sasv",
    "sc",
    "select",
    "set",
    "sleep",
    "sort",
    "spsv",
    "start",
    "tee",
    "type",
    "wget",
    "where",
    "write",
)


@cache
def ps1() -> str:
    return PS1.read_text(encoding="utf-8")


def ps1_code() -> list[str]:
    """The module's lines without comments and string contents."""
    lines = []
    for line in ps1().splitlines():
        code = re.sub(r"'[^']*'|\"[^\"]*\"", "''", line)
        lines.append(code.split("#", 1)[0])
    return lines


@cache
def catalog() -> dict[str, Any]:
    data: dict[str, Any] = {}
    for path in sorted(CATALOG_DIR.glob("*.yml")):
        if path.stem != "sources":
            data.update(yaml.safe_load(path.read_text(encoding="utf-8")))
    return data


@cache
def windows_items() -> list[dict[str, Any]]:
    products = [
        {"product": p, "instances": ["5e0b1c2d3a4f6789"]} if spec.get("instanced") else {"product": p}
        for p, spec in catalog().items()
    ]
    return [i for i in agents.agent_scope(products, catalog(), "windows") if i["supported"]]


# --- the module contract ----------------------------------------------------------------------------
def test_module_uses_ansible_basic_and_supports_check_mode() -> None:
    text = ps1()
    assert text.startswith("#!powershell\n")
    assert "#AnsibleRequires -CSharpUtil Ansible.Basic" in text
    assert re.search(r"supports_check_mode\s*=\s*\$true", text)
    assert "[Ansible.Basic.AnsibleModule]::Create($args, $spec)" in text
    # Every change happens in Remove-ItemFootprint, after that loop's check-mode guard.
    body = ps1().split("Function Remove-ItemFootprint {", 1)[1].split("\n}\n", 1)[0]
    loops = re.split(r"\n    foreach |\n        foreach ", body)[1:]
    for verb in (
        "sc.exe",
        "Stop-Process",
        "Remove-Tree -Path",
        "Remove-Item -LiteralPath",
        "Remove-ItemProperty",
    ):
        holding = [loop for loop in loops if verb in loop]
        assert holding, f"{verb} not found in Remove-ItemFootprint"
        for loop in holding:
            assert "checkMode" in loop.split(verb, 1)[0], f"{verb} without a check-mode guard before it"


def test_module_uses_no_powershell_aliases() -> None:
    offenders = []
    for number, line in enumerate(ps1_code(), 1):
        for alias in ALIASES:
            # an alias is a command: at the start of a statement, after a pipe, or after `(`/`{`/`;`
            if re.search(rf"(^|[|;({{=]\s*){re.escape(alias)}(\s+(?!=)|$)", line.strip()) and not re.search(
                r"(^|\s)(foreach|switch|while|if)\s*\(", line
            ):
                offenders.append(f"{number}: {alias}: {line.strip()}")
    assert not offenders, "PowerShell aliases used:\n" + "\n".join(offenders)


def test_module_declares_no_option_aliases_and_matches_its_documentation() -> None:
    spec_block = ps1().split("$spec = @{", 1)[1].split("\n}\n", 1)[0]
    assert "aliases" not in spec_block
    ps_options = dict(re.findall(r"^\s+(\w+) = @\{ (type = .*?) \}$", spec_block, flags=re.M))
    doc = yaml.safe_load(re.search(r'DOCUMENTATION = r"""(.*?)"""', DOC.read_text(), re.S).group(1))
    assert doc["module"] == "win_agent_footprint"
    assert doc["supports_check_mode"] is True
    assert set(ps_options) == set(doc["options"])
    for name, text in ps_options.items():
        documented = doc["options"][name]
        assert f"type = '{documented['type']}'" in text, name
        if "choices" in documented:
            assert all(f"'{c}'" in text for c in documented["choices"]), name
        if "default" in documented:
            default = documented["default"]
            expected = f"${str(default).lower()}" if isinstance(default, bool) else f"'{default}'"
            assert f"default = {expected}" in text, name
        if documented.get("required"):
            assert "required = $true" in text, name


def test_module_never_invokes_a_shell_or_evaluates_strings() -> None:
    code = "\n".join(ps1_code())
    for forbidden in (
        "Invoke-Expression",
        "cmd.exe",
        "cmd /c",
        "powershell.exe",
        "pwsh",
        "[scriptblock]::Create",
    ):
        assert forbidden not in code, forbidden
    assert (
        "-LiteralPath" in code
        and re.search(r"Test-Path -Path|Remove-Item -Path|Get-Item -Path", code) is None
    )


# --- what the module reads and what the role reads from it --------------------------------------------
def test_every_field_the_module_reads_exists_in_the_catalog_items() -> None:
    read = set(re.findall(r"Get-Field -Item \$\w+ -Name '(\w+)'", ps1()))
    read |= set(re.findall(r"-Field '(\w+)'", ps1()))
    read |= set(re.findall(r"\$installDirFrom\['(\w+)'\]", ps1()))
    available: set[str] = set()
    for item in windows_items():
        available |= set(item)
        for value in item.values():
            if isinstance(value, dict):
                available |= set(value)
                for sub in value.values():
                    for fact in sub if isinstance(sub, list) else []:
                        available |= set(fact) if isinstance(fact, dict) else set()
            for fact in value if isinstance(value, list) else []:
                available |= set(fact) if isinstance(fact, dict) else set()
    # 'value' (a single registry value) is in the catalog (datto_rmm) but the scope filter drops it today.
    identifying = {"name", "path", "key", "display_name"}  # a fact's field when it arrives as a dict
    missing = read - available - identifying - {"value"}
    assert not missing, f"the module reads fields no catalog item has: {sorted(missing)}"


RESULT_KEYS = {
    "key",
    "product",
    "instance",
    "name",
    "category",
    "install_dir",
    "services",
    "processes",
    "paths",
    "registry",
    "uninstall_entries",
    "leftovers",
    "uninstaller",
    "protection",
    "refused",
    "found",
    "removed",
}


def test_module_result_has_the_keys_the_role_reads() -> None:
    # The per-OS task files that read these keys are gone (issue 13): the engine reads the contract's
    # result (plugins/action/offboard_agent_engine.py); the module side of it is helper 13b's.
    block = ps1().split("$result = @{", 1)[1].split("\n    }\n", 1)[0]
    keys = set(re.findall(r"^\s{8}(\w+) = ", block, flags=re.M)) | {"found", "removed"}
    assert keys == RESULT_KEYS


# --- the refusal lists against the catalog --------------------------------------------------------------
def _protected_paths() -> list[str]:
    block = ps1().split("$protectedPaths = ", 1)[1].split("$protectedRegistry", 1)[0]
    literal = re.findall(r"'([A-Za-z]:\\[^']*)'", block)
    env = {"$systemDrive": "C:", "$systemRoot": "C:\\Windows"}
    expanded = [
        re.sub(r"\$system(Drive|Root)", lambda m: env[m.group(0)], p)
        for p in re.findall(r'"(\$[^"]+)"', block)
    ]
    leaves = re.findall(r"foreach \(\$leaf in @\(([^)]*)\)\) \{\s+\$protectedPaths", block)
    extra = [f"C:\\Windows\\{leaf}" for leaf in re.findall(r"'([^']+)'", leaves[0])] if leaves else []
    return [
        *literal,
        *expanded,
        *extra,
        "C:\\Program Files",
        "C:\\Program Files (x86)",
        "C:\\ProgramData",
        "C:\\Users\\Public",
    ]


def _within(path: str, root: str) -> bool:
    p, r = path.rstrip("\\").lower(), root.rstrip("\\").lower()
    return p == r or p.startswith(r + "\\")


def test_refusal_list_covers_the_folders_the_brief_names() -> None:
    protected = _protected_paths()
    for folder in ("C:\\", "C:\\Windows", "C:\\Windows\\System32", "C:\\Program Files", "C:\\ProgramData"):
        assert any(_within(p, folder) for p in protected), folder
    registry = ps1().split("$protectedRegistry = ", 1)[1].split("$hives", 1)[0]
    assert (
        "Microsoft\\Windows\\CurrentVersion\\Run'" in registry
    )  # makes HKLM:\SOFTWARE and its parents refused
    assert "'HKLM:\\SOFTWARE', 'HKLM:\\SOFTWARE\\WOW6432Node'" in registry


def test_no_catalog_windows_path_is_a_protected_folder() -> None:
    protected = _protected_paths()
    offenders = []
    for item in windows_items():
        for path in item.get("paths", []) + item.get("leftovers", {}).get("paths", []):
            if any(_within(p, path) for p in protected):
                offenders.append(f"{item['key']}: {path}")
    assert not offenders, "the module would refuse these catalog paths:\n" + "\n".join(offenders)


def test_catalog_registry_values_reach_the_module_as_values() -> None:
    for item in windows_items():
        for fact in item.get("leftovers", {}).get("registry", []):
            if isinstance(fact, dict):
                assert fact.get("value"), f"{item['key']}: a registry fact dict must name a value: {fact!r}"
            else:
                assert not fact.endswith("\\CurrentVersion\\Run"), f"{item['key']}: {fact!r}"
