"""Static checks of the Windows footprint module (win_agent_footprint.ps1), which cannot run here.

No Windows host and no PowerShell runtime exist on this machine, so these tests read the .ps1: as text,
and as the syntax tree tree-sitter-powershell builds (functions, the commands each one calls). They pin
the engine contract the module shares with agent_footprint.py (every result key is produced), agreement
with its documentation, the catalog fields it reads, the refusal lists (replayed in Python against the
folders that must be refused and every catalog path that must not), that every destructive call is
reachable only from the removal outside check mode, that codes from `secrets` never reach the result, and
that nothing from the catalog is evaluated as code. Behaviour on a real host is the job of the opt-in
scenario molecule/rmm_agent_removal_windows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import tree_sitter_powershell
import yaml
from tree_sitter import Language, Node, Parser

from tests.conftest import ROOT, load_module

PS1 = ROOT / "plugins/modules/win_agent_footprint.ps1"
DOC = ROOT / "plugins/modules/win_agent_footprint.py"
CATALOG_DIRS = (
    "roles/rmm_agent_removal/vars/catalog",
    "roles/backup_agent_removal/vars/catalog",
    "roles/security_software_transition/vars/catalog",
)

agents = load_module("agents_filter", "plugins/filter/agents.py")

# PowerShell aliases that read well at a prompt and badly in a module (and differ between editions:
# `sc` is Set-Content in Windows PowerShell, `curl`/`wget` vanish in PowerShell 7).
ALIASES = (
    "%", "?", "ac", "cat", "cd", "chdir", "clc", "clear", "cls", "copy", "cp", "curl", "del", "dir", "echo",
    "erase", "fl", "foreach", "ft", "gc", "gci", "gcm", "gi", "gm", "gp", "gps", "group", "gsv", "iex", "ii",
    "kill", "ls", "measure", "mi", "move", "mv", "ni", "popd", "ps", "pushd", "pwd", "r", "rd", "ren", "ri",
    "rm", "rmdir", "rp", "sasv", "sc", "select", "set", "sleep", "sort", "spsv", "start", "tee", "type",
    "wget", "where", "write",
)  # fmt: skip

# The engine contract (shared with agent_footprint.py; see the module's RETURN).
RESULT_KEYS = {"key", "product", "instance", "category", "name", "found", "footprint", "refused"}
FOOTPRINT_KEYS = {"packages", "services", "processes", "paths", "startup", "registry", "uninstall_entries"}
REMOVAL_KEYS = {"attempts", "method", "remaining", "verified_absent"}
ATTEMPT_KEYS = {"method", "rc", "timed_out", "detail"}
METHODS = {"vendor_uninstaller", "package_manager", "forced"}
STARTUP_KINDS = {"cron", "rc.local", "initd", "launchd", "run_key", "scheduled_task"}

# Calls that change the host. Each may only be reachable from Invoke-ItemRemoval.
DESTRUCTIVE_COMMANDS = {"Stop-Process", "Remove-Item", "Remove-ItemProperty", "Set-Service", "Stop-Service"}
DESTRUCTIVE_METHODS = {"Delete", "DeleteTask", "Stop", "Start", "Kill"}


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
def tree() -> tuple[bytes, Node]:
    source = ps1().encode("utf-8")
    parsed = Parser(Language(tree_sitter_powershell.language())).parse(source)
    assert not parsed.root_node.has_error, "the module does not parse (see test_powershell_parse.py)"
    return source, parsed.root_node


def _text(node: Node) -> str:
    source, _ = tree()
    return source[node.start_byte : node.end_byte].decode("utf-8")


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


@cache
def functions() -> dict[str, Node]:
    """Function name -> its function_statement node."""
    _, root = tree()
    found = {}
    for node in _walk(root):
        if node.type == "function_statement":
            name = next(c for c in node.children if c.type == "function_name")
            found[_text(name)] = node
    return found


def _enclosing_function(node: Node) -> str:
    while node is not None:
        if node.type == "function_statement":
            return _text(next(c for c in node.children if c.type == "function_name"))
        node = node.parent
    return "<main>"


@cache
def calls() -> list[tuple[str, str, Node]]:
    """(calling function or <main>, called command or .Method, node) for every command and method call."""
    _, root = tree()
    found = []
    for node in _walk(root):
        if node.type == "command":
            name = node.child_by_field_name("command_name")
            if name is not None:
                found.append((_enclosing_function(node), _text(name), node))
        elif node.type == "invokation_expression":
            member = next((c for c in node.children if c.type == "member_name"), None)
            if member is not None and any(c.type == "argument_list" for c in node.children):
                found.append((_enclosing_function(node), "." + _text(member), node))
    return found


def _callers(target: str) -> set[str]:
    return {caller for caller, called, _ in calls() if called == target}


def _reaching(targets: set[str]) -> set[str]:
    """Every function from which one of `targets` (functions) is reachable, transitively."""
    seen: set[str] = set()
    todo = list(targets)
    while todo:
        for caller in _callers(todo.pop()):
            if caller not in seen:
                seen.add(caller)
                todo.append(caller)
    return seen


@cache
def catalog(directories: tuple[str, ...] = ("roles/rmm_agent_removal/vars/catalog",)) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for directory in directories:
        for path in sorted((ROOT / directory).glob("*.yml")):
            if path.stem != "sources":
                data.update(yaml.safe_load(path.read_text(encoding="utf-8")))
    return data


@cache
def windows_items(
    directories: tuple[str, ...] = ("roles/rmm_agent_removal/vars/catalog",),
) -> list[dict[str, Any]]:
    """Every supported Windows item of the catalogs, as the scope filter builds it (RMM by default)."""
    products = [
        {"product": p, "instances": ["5e0b1c2d3a4f6789"]} if spec.get("instanced") else {"product": p}
        for p, spec in catalog(directories).items()
    ]
    return [i for i in agents.agent_scope(products, catalog(directories), "windows") if i["supported"]]


def all_windows_items() -> list[dict[str, Any]]:
    """The Windows items of all three agent catalogs: the module serves the three roles."""
    return windows_items(CATALOG_DIRS)


# --- the module contract ----------------------------------------------------------------------------
def test_module_uses_ansible_basic_and_supports_check_mode() -> None:
    text = ps1()
    assert text.startswith("#!powershell\n")
    assert "#AnsibleRequires -CSharpUtil Ansible.Basic" in text
    assert re.search(r"supports_check_mode\s*=\s*\$true", text)
    assert "[Ansible.Basic.AnsibleModule]::Create($args, $spec)" in text


def test_module_uses_no_powershell_aliases() -> None:
    offenders = []
    for number, line in enumerate(ps1_code(), 1):
        for alias in ALIASES:
            # an alias is a command: at the start of a statement, after a pipe, or after `(`/`{`/`;`
            if re.search(rf"(^|[|;({{=]\s*){re.escape(alias)}(\s+(?!=)|$)", line.strip()) and not re.search(
                r"(^|\s)(foreach|switch|while|if|for)\s*\(", line
            ):
                offenders.append(f"{number}: {alias}: {line.strip()}")
    assert not offenders, "PowerShell aliases used:\n" + "\n".join(offenders)
    commands = {called for _, called, _ in calls() if not called.startswith(".")}
    assert not commands & set(ALIASES), sorted(commands & set(ALIASES))


def _doc(name: str) -> dict[str, Any]:
    return yaml.safe_load(re.search(rf'{name} = r"""(.*?)"""', DOC.read_text(), re.S).group(1))


def test_module_options_match_its_documentation() -> None:
    spec_block = ps1().split("$spec = @{", 1)[1].split("\n}\n", 1)[0]
    assert "aliases" not in spec_block
    ps_options = dict(re.findall(r"^\s+(\w+) = @\{ (type = .*?) \}$", spec_block, flags=re.M))
    doc = _doc("DOCUMENTATION")
    assert doc["module"] == "win_agent_footprint"
    assert doc["supports_check_mode"] is True
    assert set(ps_options) == set(doc["options"])
    # The engine calls both modules with the same options.
    assert {"items", "state", "timeout", "secrets"} <= set(ps_options)
    for name, text in ps_options.items():
        documented = doc["options"][name]
        assert f"type = '{documented['type']}'" in text, name
        if "choices" in documented:
            assert all(f"'{c}'" in text for c in documented["choices"]), name
        if "default" in documented:
            default = documented["default"]
            expected = {True: "$true", False: "$false"}.get(default) if isinstance(default, bool) else None
            expected = expected or (
                "@{}" if default == {} else str(default) if isinstance(default, int) else f"'{default}'"
            )
            assert f"default = {expected}" in text, name
        if documented.get("required"):
            assert "required = $true" in text, name
    assert "no_log = $true" in ps_options["secrets"]


def test_every_contract_result_key_is_produced() -> None:
    text = ps1()
    main = text.split("$result = @{", 1)[1].split("\n    }\n", 1)[0]
    assert set(re.findall(r"^\s{8}(\w+) = ", main, flags=re.M)) >= RESULT_KEYS
    assert "$result.removal = " in text
    footprint = text.split("$footprint = @{", 1)[1].split("}", 1)[0]
    assert set(re.findall(r"^\s+(\w+) = ", footprint, flags=re.M)) == FOOTPRINT_KEYS
    removal = functions()["Invoke-ItemRemoval"]
    returned = _text(removal).rsplit("return @{", 1)[1]
    assert set(re.findall(r"^\s+(\w+) = ", returned, flags=re.M)) >= REMOVAL_KEYS
    # Check mode and the error path return the same shape.
    for block in re.findall(r"\$result\.removal = @\{(.*?)\n            \}", text, flags=re.S):
        assert set(re.findall(r"(\w+) = ", block)) >= REMOVAL_KEYS, block
    # Every attempt has the four keys, with a method of the contract.
    attempts = re.findall(r"@\{\s*method = (?:'(\w+)'|\$Method);(.*?)\}", text, flags=re.S)
    assert attempts
    for method, rest in attempts:
        assert not method or method in METHODS | {"protection"}, method
        assert ATTEMPT_KEYS - {"method"} <= set(re.findall(r"(\w+) = ", rest)), rest
    passed = set(re.findall(r"-Method '(\w+)'", text))
    assert passed == {"vendor_uninstaller", "package_manager", "protection"}
    assert set(re.findall(r"\$method = '(\w+)'", text)) == METHODS
    assert set(re.findall(r"kind = '(\w+)'", text)) - {"msi", "command"} <= STARTUP_KINDS
    # Entries carry what the contract names.
    assert re.search(r"name = \$svc\.name;.*state = .*enabled = .*image_path = ", text, flags=re.S)
    assert "@{ pid = [int]$proc.ProcessId; name = [string]$proc.Name; exe = $exe }" in text
    entry = _text(functions()["Get-UninstallEntryList"])
    for key in ("display_name", "product_code", "uninstall_string", "install_location", "display_icon"):
        assert f"{key} = " in entry, key
    for kind in ("derived_from = ", "$entry.derived_from = $derivedFrom"):
        assert kind in text


def test_documented_return_names_the_contract() -> None:
    returned = _doc("RETURN")["items"]["contains"]
    assert set(returned) >= RESULT_KEYS
    assert set(returned["footprint"]["contains"]) == FOOTPRINT_KEYS
    assert set(returned["removal"]["contains"]) >= REMOVAL_KEYS


def test_layers_run_in_order_and_a_failure_never_stops_the_next() -> None:
    body = _text(functions()["Invoke-ItemRemoval"])
    order = [body.index(f"-Method '{m}'") for m in ("protection", "vendor_uninstaller", "package_manager")]
    order.append(body.index("Remove-Forced"))
    assert order == sorted(order)
    # No early exit between the layers: an uninstaller's rc or timeout only lands in `attempts`.
    assert not re.search(r"\b(throw|return|exit|break)\b", body.split("return @{", 1)[0].split("$plan = ")[1])
    # Each layer re-probes the whole derived set, carrying what was found before.
    assert (
        body.count(
            "Get-ItemFootprint -Item $Item -Scope $Scope -Snapshot (Get-HostSnapshot) -Previous $before"
        )
        == 3
    )
    assert "verified_absent = Test-FootprintEmpty $remaining" in body


def test_one_bounded_run_kills_the_whole_tree_on_timeout() -> None:
    text = ps1()
    assert text.count("[System.Diagnostics.Process]::Start(") == 1
    assert _enclosing_function(next(n for c, n2, n in calls() if n2 == ".Start")) == "Invoke-BoundedProcess"
    assert _callers("Invoke-BoundedProcess") == {"Invoke-Argv"}
    assert _callers("Invoke-Argv") == {"Invoke-ItemRemoval"}
    body = _text(functions()["Invoke-BoundedProcess"])
    assert "bounded_run" not in text
    # Waits for what the program handed over to, and kills every live member of its tree on timeout.
    assert "Add-Descendant -Tree $tree -Since $started" in body
    timed_out = body.split("if ($timedOut) {", 1)[1]
    assert "foreach ($id in @(Add-Descendant -Tree $tree -Since $started))" in timed_out
    assert "Stop-Process -Id $id -Force" in timed_out
    # Process ids are reused: only processes started after the run join its tree.
    assert "$p.CreationDate -ge $Since" in _text(functions()["Add-Descendant"])
    assert "RedirectStandardOutput = $true" in body and "StandardInput.Close()" in body


def test_destructive_calls_are_reachable_only_from_the_removal_outside_check_mode() -> None:
    destructive = {
        caller
        for caller, called, _ in calls()
        if called in DESTRUCTIVE_COMMANDS or called.lstrip(".") in DESTRUCTIVE_METHODS or called == "$sc"
    }
    destructive |= {"Invoke-BoundedProcess"}
    assert "<main>" not in destructive
    assert _reaching(destructive) - destructive <= {"Invoke-ItemRemoval", "<main>", "Invoke-Argv"}
    # The main loop calls the removal only in the branch after `if ($checkMode)`.
    main_calls = [n for c, called, n in calls() if c == "<main>" and called == "Invoke-ItemRemoval"]
    assert len(main_calls) == 1
    before = ps1()[: main_calls[0].start_byte]
    branch = before.rsplit("if ($checkMode) {", 1)[1]
    assert "\n        else {" in branch
    assert "if ($state -eq 'absent' -and $found) {" in before.rsplit("if ($checkMode) {", 1)[0][-200:]
    # Discovery (query) never reaches a destructive function.
    for reader in ("Get-HostSnapshot", "Get-ItemScope", "Get-ItemFootprint"):
        assert reader not in _reaching(destructive) | destructive, reader


def test_module_never_evaluates_catalog_strings_as_code() -> None:
    code = "\n".join(ps1_code())
    for forbidden in (
        "Invoke-Expression",
        "Invoke-Command",
        "Start-Process",
        "cmd.exe",
        "cmd /c",
        "powershell.exe",
        "pwsh.exe",
        "[scriptblock]::Create",
        "ExecutionContext.InvokeCommand",
        "UseShellExecute = $true",
    ):
        assert forbidden.lower() not in code.lower(), forbidden
    commands = {called for _, called, _ in calls()}
    # `& <variable>` only for sc.exe (a fixed path); catalog argv reaches a program only as ProcessStartInfo.
    invoked = {called for called in commands if called.startswith("$")}
    assert invoked == {"$sc"}
    assert '$sc = "$systemRoot\\System32\\sc.exe"' in ps1()
    # Nobody runs an UninstallString from the registry: it is not catalog-reviewed data.
    assert not re.search(r"Invoke-\w+ .*uninstall_string", ps1())
    assert "-LiteralPath" in code
    assert re.search(r"(Test-Path|Remove-Item|Get-Item|Get-ChildItem|Get-ItemProperty) -Path", code) is None


def test_secrets_never_reach_the_result() -> None:
    text = ps1()
    # The codes come from the no_log option only, through one function.
    assert [c for c, called, _ in calls() if called == "Get-ItemSecret"].count("Invoke-ItemRemoval") == 1
    assert "$module.Params.secrets" in _text(functions()["Get-ItemSecret"])
    # Inside Invoke-Argv the code is only put into the argv that is run; the detail shows the template.
    argv = _text(functions()["Invoke-Argv"])
    uses = [line.strip() for line in argv.splitlines() if re.search(r"\$Secret\b", line)]
    assert uses == [
        "param ([string[]]$Argv, [string]$Secret, [string]$WorkingDirectory, [int]$TimeoutSeconds, "
        "[string]$Method)",
        "$real = @($Argv | ForEach-Object { if ($Secret) { $_.Replace('{secret}', $Secret) } else { $_ } })",
    ]
    assert "$shown = ConvertTo-ArgumentString -Argv $Argv" in argv
    assert re.findall(r"detail = \"([^\"]*)\"", argv) == [
        "$($shown): $outcome",
        "$($shown): could not start: $($_.Exception.Message)",
    ]
    # $real (with the code) only goes to Invoke-BoundedProcess.
    assert [
        line.split("$real")[0].strip()
        for line in argv.splitlines()
        if "$real" in line and "$real =" not in line
    ] == ["$run = Invoke-BoundedProcess -FilePath"]
    # In the removal, $secret only goes to -Secret and to if-tests.
    removal = _text(functions()["Invoke-ItemRemoval"])
    for line in removal.splitlines():
        for use in re.finditer(r"\$secret\b", line, flags=re.I):
            rest = line[use.start() - 10 : use.end() + 1]
            assert (
                "-Secret $secret" in rest or "-not $secret" in rest or "$secret = Get-ItemSecret" in line
            ), line
    # Defence in depth: every result text is scrubbed of the codes before ExitJson.
    exit_block = text.rsplit("$codes = @($module.Params.secrets.Values", 1)[1]
    assert "Hide-Secret -Value $items -Codes $codes" in exit_block
    assert exit_block.index("$module.Result.items = $items") < exit_block.index("$module.ExitJson()")
    assert text.count("$module.Result.") == 2  # items and changed, nothing else


def _code(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_junctions_are_never_followed() -> None:
    body = _code(_text(functions()["Remove-Tree"]))
    assert "ReparsePoint" in body and "Remove-Item" not in body and "Recurse" not in body
    assert "[IO.Directory]::Delete($entry.FullName, $false)" in body
    assert "[IO.Directory]::Delete($Path, $false)" in body
    assert _callers("Remove-Tree") == {"Remove-Forced"}
    # Every path deletion re-checks the refusal list at the moment of deleting.
    forced = _text(functions()["Remove-Forced"])
    assert "-not (Test-SafePath $path)" in forced and "Test-SafeKey $target.key" in forced


# --- the refusal lists, replayed in Python ------------------------------------------------------------------
ENV = {"$systemDrive": "C:", "$systemRoot": "C:\\Windows"}


def _expand(value: str) -> str:
    return re.sub(r"\$system(Drive|Root)", lambda m: ENV[m.group(0)], value)


def _strings(block: str) -> list[str]:
    return [_expand(s) for s in re.findall(r"'([^']*)'|\"([^\"]*)\"", block) for s in s if s]


def _list_block(start: str, end: str) -> str:
    return ps1().split(start, 1)[1].split(end, 1)[0]


@cache
def refusal_lists() -> dict[str, list[str]]:
    paths_block = _list_block("$protectedPaths = ", "foreach ($name in")
    trees_block = _list_block("$protectedTrees = ", "$systemProfileVendor")
    registry_block = _list_block("$protectedRegistry = ", "foreach ($software in")
    software_leaves = re.search(
        r"foreach \(\$leaf in @\((.*?)\)\) \{\s+\$protectedRegistry\.Add\(\"\$software", ps1(), re.S
    )
    control_leaves = re.search(
        r"foreach \(\$leaf in @\((.*?)\)\) \{\s+\$protectedRegistry\.Add\(\"HKLM", ps1(), re.S
    )
    registry = [s for s in _strings(registry_block) if s.startswith("HK")]
    registry += [
        f"{sw}\\{leaf}"
        for sw in ("HKLM:\\SOFTWARE", "HKLM:\\SOFTWARE\\WOW6432Node")
        for leaf in _strings(software_leaves.group(1))
    ]
    registry += [
        f"HKLM:\\SYSTEM\\{cs}\\{leaf}"
        for cs in ("CurrentControlSet", "ControlSet001", "ControlSet002")
        for leaf in _strings(control_leaves.group(1))
    ]
    trees = [f"C:\\Windows\\{leaf}" for leaf in _strings(trees_block) if "\\" not in leaf]
    return {
        "paths": [s for s in _strings(paths_block) if re.match(r"^[A-Z]:", s)],
        "trees": trees,
        "registry": registry,
        "registry_trees": _strings(_list_block("$protectedRegistryTrees = ", "\n")),
    }


def _within(path: str, root: str) -> bool:
    p, r = path.rstrip("\\").lower(), root.rstrip("\\").lower()
    return p == r or p.startswith(r + "\\")


def _ps_regex(name: str) -> re.Pattern[str]:
    """A regex the module defines, as .NET would read it (PowerShell's -match ignores case)."""
    literal = re.search(rf"\${name} = (.*)", ps1()).group(1)
    if literal.startswith("'^(?i)' + [regex]::Escape($systemRoot) +"):
        rest = re.search(r"'(\\\\\(System32.*?)'", ps1()).group(1)
        return re.compile("^" + re.escape("C:\\Windows") + rest, re.I)
    return re.compile(literal.strip("'").replace("(?i)", ""), re.I)


def safe_path(path: str) -> bool:
    """Test-SafePath, replayed."""
    body = _text(functions()["Test-SafePath"])
    shape = re.search(r"\$Path -notmatch '([^']+)'", body).group(1)
    profile = re.search(
        r"if \(\$Path -match '([^']+)'\) \{\s+return \$false", body.split("# A whole profile")[1]
    ).group(1)
    if not path or not re.match(shape, path) or any(c in path for c in '*?<>|"'):
        return False
    if re.search(r"(^|\\)\.\.?(\\|$)", path) or "\\\\" in path:
        return False
    if re.match(profile.replace("(?i)", ""), path, re.I):
        return False
    lists = refusal_lists()
    if any(
        _within(p, path)
        for p in lists["paths"] + ["C:\\Program Files", "C:\\Program Files (x86)", "C:\\ProgramData"]
    ):
        return False
    exception = _ps_regex("systemProfileVendor").match(path)
    return bool(exception) or not any(_within(path, tree) for tree in lists["trees"])


def safe_key(key: str) -> bool:
    """Test-SafeKey, replayed."""
    depth = r"^HKCR:\\[^\\*]" if key.startswith("HKCR:") else r"^(HKLM|HKCU|HKU|HKCC):\\[^\\]+\\[^\\]"
    if not re.match(depth, key) or "*" in key or "?" in key or "\\\\" in key:
        return False
    if _ps_regex("protectedUserKey").match(key):
        return False
    if any(_within(key, t) for t in refusal_lists()["registry_trees"]):
        return False
    return not any(_within(p, key) for p in refusal_lists()["registry"])


MUST_REFUSE_PATHS = [
    "C:\\", "D:\\", "C:\\Windows", "C:\\Windows\\System32", "C:\\Windows\\System32\\drivers",
    "C:\\Windows\\System32\\drivers\\vendor.sys", "C:\\Windows\\SysWOW64", "C:\\Windows\\SysWOW64\\x.dll",
    "C:\\Windows\\WinSxS\\x", "C:\\Windows\\Installer\\{guid}", "C:\\Windows\\Temp", "C:\\Windows\\Tasks\\x",
    "C:\\Windows\\System32\\config", "C:\\Windows\\System32\\config\\systemprofile",
    "C:\\Windows\\System32\\config\\systemprofile\\AppData\\Local", "C:\\Windows\\System32\\Tasks\\Vendor",
    "C:\\Program Files", "C:\\Program Files\\", "C:\\Program Files (x86)", "C:\\ProgramData",
    "C:\\Program Files\\Common Files", "C:\\ProgramData\\Microsoft", "C:\\ProgramData\\Microsoft\\Windows",
    "C:\\Users", "C:\\Users\\alice", "C:\\Users\\alice\\", "C:\\Users\\alice\\AppData",
    "C:\\Users\\alice\\AppData\\Local", "C:\\Users\\alice\\Desktop", "C:\\Users\\Public",
    "C:\\Users\\Default",
    "C:\\Vendor", "C:\\Program Files\\*", "C:\\Program Files\\Vendor\\..\\..", "relative\\path", "",
]  # fmt: skip
MUST_ALLOW_PATHS = [
    "C:\\Program Files\\Vendor", "C:\\Windows\\LTSVC", "C:\\Windows\\Temp\\_ltupdate",
    "C:\\Windows\\System32\\config\\systemprofile\\AppData\\Local\\CentraStage",
    "C:\\Users\\alice\\AppData\\Local\\Vendor", "D:\\Agents\\Vendor",
]  # fmt: skip
MUST_REFUSE_KEYS = [
    "HKLM:\\SOFTWARE", "HKLM:\\SOFTWARE\\Microsoft", "HKLM:\\SOFTWARE\\WOW6432Node", "HKLM:\\SYSTEM",
    "HKLM:\\SYSTEM\\CurrentControlSet", "HKLM:\\SYSTEM\\CurrentControlSet\\Services",
    "HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
    "HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall",
    "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application",
    "HKU:\\S-1-5-21-1-2-3-1001", "HKU:\\S-1-5-21-1-2-3-1001\\Software",
    "HKU:\\S-1-5-21-1-2-3-1001\\Software\\Microsoft", "HKU:\\S-1-5-18\\Software\\Microsoft",
    "HKCU:\\Software", "HKCU:\\Software\\Microsoft", "HKCR:\\CLSID", "HKCR:\\*", "HKLM:\\", "HKLM:\\SAM\\x",
    "HKLM:\\SOFTWARE\\Classes\\Installer\\Products",
]  # fmt: skip
MUST_ALLOW_KEYS = [
    "HKLM:\\SOFTWARE\\Vendor", "HKLM:\\SOFTWARE\\WOW6432Node\\Vendor\\Agent", "HKCR:\\cag",
    "HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Vendor",
    "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\VendorAgent", "HKU:\\S-1-5-18\\Software\\NinjaRMM LLC",
]  # fmt: skip


@pytest.mark.parametrize(
    ("check", "target", "allowed"),
    [
        *((safe_path, path, False) for path in MUST_REFUSE_PATHS),
        *((safe_path, path, True) for path in MUST_ALLOW_PATHS),
        *((safe_key, key, False) for key in MUST_REFUSE_KEYS),
        *((safe_key, key, True) for key in MUST_ALLOW_KEYS),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_guard_refuses_protected_paths_and_keys_and_allows_vendor_ones(
    check: Callable[[str], bool], target: str, allowed: bool
) -> None:
    assert bool(check(target)) is allowed, target


def test_no_catalog_windows_path_or_key_is_refused() -> None:
    offenders = []
    for item in all_windows_items():
        for path in item.get("paths", []) + item.get("leftovers", {}).get("paths", []):
            path = path.replace("{install_dir}", "C:\\Program Files (x86)\\Vendor Agent")
            if not safe_path(path.rstrip("\\")):
                offenders.append(f"{item['key']}: {path}")
        for fact in item.get("registry", []) + item.get("leftovers", {}).get("registry", []):
            if isinstance(fact, str) and not safe_key(fact):
                offenders.append(f"{item['key']}: {fact}")
    assert not offenders, "the module would refuse these catalog facts:\n" + "\n".join(offenders)


def test_catalog_registry_values_reach_the_module_as_values() -> None:
    for item in all_windows_items():
        for fact in item.get("leftovers", {}).get("registry", []):
            if isinstance(fact, dict):
                assert fact.get("value"), f"{item['key']}: a registry fact dict must name a value: {fact!r}"
            else:
                assert not fact.endswith("\\CurrentVersion\\Run"), f"{item['key']}: {fact!r}"


# --- what the module reads from catalog items -------------------------------------------------------------
def test_every_field_the_module_reads_exists_in_the_catalog_items() -> None:
    read = set(re.findall(r"Get-Field -Item \$\w+ -Name '(\w+)'", ps1()))
    read |= set(re.findall(r"-Field '(\w+)'", ps1()))
    available: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            available.update(value)
            for sub in value.values():
                collect(sub)
        elif isinstance(value, list):
            for sub in value:
                collect(sub)

    for item in all_windows_items():
        collect(item)
    identifying = {"name", "path", "key", "display_name"}  # a fact's field when it arrives as a dict
    missing = read - available - identifying
    assert not missing, f"the module reads fields no catalog item has: {sorted(missing)}"
    # And the catalog's Windows fields the removal needs are all read.
    assert {
        "install_dir_from",
        "uninstall",
        "protection",
        "msi_args",
        "when_exists",
        "chdir",
        "needs_secret",
    } <= read


def test_find_referenced_root_matches_whole_path_components_only() -> None:
    body = _text(functions()["Find-ReferencedRoot"])
    prefix = re.search(r"\$pattern = '((?:[^']|'')+)'", body).group(1).replace("''", "'")
    suffix = re.search(r"\+ '((?:[^']|'')+)'\s*$", body.split("$pattern = ", 1)[1].splitlines()[0])
    suffix = suffix.group(1).replace("''", "'")

    def refers(text: str, root: str) -> bool:
        return re.search(prefix.replace("(?i)", "") + re.escape(root) + suffix, text, re.I) is not None

    root = "C:\\Program Files\\Vendor"
    assert refers('"C:\\Program Files\\Vendor\\agent.exe" -service', root)
    assert refers("C:\\Program Files\\Vendor\\agent.exe", root)
    assert refers('rundll32.exe "C:\\program files\\vendor\\hook.dll",Run', root)
    assert refers("powershell.exe -File C:\\Program Files\\Vendor\\w.ps1", root)
    assert refers("--dir=C:\\Program Files\\Vendor", root)
    assert not refers('"C:\\Program Files\\VendorTools\\x.exe"', root)
    assert not refers('"D:\\C:\\Program Files\\Vendor2\\x.exe"', root)


def test_functions_returning_one_array_are_never_wrapped_in_array_subexpressions() -> None:
    # `return , $list` hands the caller one array object: `$x = F` keeps it whole, but `@(F)` makes a
    # one-element array holding it, and every count and -contains on it goes wrong. Such functions are
    # assigned; functions whose callers write @(F) return their elements.
    wrapping = [name for name, node in functions().items() if re.search(r"return , ", _text(node))]
    assert "Get-ServiceList" in wrapping
    for name in wrapping:
        assert not re.search(rf"@\(\s*{re.escape(name)}\b", ps1()), name
    for name in ("Select-NamedEntry", "Add-Descendant"):
        assert name not in wrapping


# --- command lines, replayed for every catalog uninstaller -------------------------------------------------
SILENT = {"/s", "/verysilent", "/qn", "/quiet", "/removequiet", "unattended", "/silent"}
# Catalog uninstallers without a known silent switch, and why that is accepted.
NO_SWITCH_KNOWN = {"C:\\Program Files\\SuperOps\\uninstall.exe": "superops notes: run without switches"}


def argument_string(argv: list[str]) -> str:
    """ConvertTo-ArgumentString, replayed (its source is pinned below)."""
    parts = []
    for arg in argv:
        if '"' in arg or (arg and not re.search(r"\s", arg)):
            parts.append(arg)
        elif arg.endswith("\\"):
            parts.append(f'"{arg}\\"')
        else:
            parts.append(f'"{arg}"')
    return " ".join(parts)


def msi_argv(code: str, msi_args: list[str]) -> list[str]:
    """Get-MsiArgv, replayed."""
    extra = [a for a in msi_args if a.lower() not in ("/qn", "/norestart")]
    return ["C:\\Windows\\System32\\msiexec.exe", "/x", code, "/qn", "/norestart", *extra]


def test_the_replayed_command_line_functions_are_the_modules() -> None:
    body = _code(_text(functions()["ConvertTo-ArgumentString"]))
    assert "if ($arg.Contains('\"') -or ($arg.Length -gt 0 -and $arg -notmatch '\\s')) { $arg }" in body
    assert "elseif ($arg.EndsWith('\\')) { '\"' + $arg + '\\\"' }" in body
    assert "else { '\"' + $arg + '\"' }" in body
    msi = _text(functions()["Get-MsiArgv"])
    assert "Where-Object { $_ -notin @('/qn', '/norestart') }" in msi
    assert (
        "@(\"$systemRoot\\System32\\msiexec.exe\", '/x', $ProductCode, '/qn', '/norestart') + $extra" in msi
    )


def _steps() -> list[tuple[str, dict[str, Any]]]:
    return [(item["key"], step) for item in all_windows_items() for step in item["uninstall"]]


@pytest.mark.parametrize(("key", "step"), _steps(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_catalog_uninstaller_becomes_a_silent_bounded_command_line(key: str, step: dict) -> None:
    code = "{11111111-2222-3333-4444-555555555555}"
    if step.get("msi_from_uninstall_entry"):
        argv = msi_argv(code, [str(a) for a in step.get("msi_args") or []])
        assert argv.count("/qn") == 1 and argv.count("/norestart") == 1
    else:
        argv = [str(a).replace("{install_dir}", "C:\\Ninja Agent") for a in step["command"]]
        # An absolute program, or msiexec.exe (CreateProcess finds it in System32).
        assert re.match(r"^[A-Za-z]:\\", argv[0]) or argv[0].lower() == "msiexec.exe", f"{key}: {argv[0]}"
        assert step.get("when_exists"), f"{key}: a command step needs when_exists (the module checks it)"
    line = argument_string(argv[1:])
    assert "{instance}" not in line and "{install_dir}" not in line
    # The RMM catalog is checked for silent switches (backup and security: their catalogs' business; a
    # prompt there is ended by the bounded run's timeout, with the tree killed).
    rmm = key.split(":")[0] in catalog()
    if rmm and argv[0] not in NO_SWITCH_KNOWN:
        assert {a.lower() for a in argv[1:]} & SILENT, f"{key}: no silent switch in {argv}"
    for arg in argv[1:]:
        assert (arg if '"' in arg or " " not in arg else f'"{arg}"') in line
    # A bounded run: the catalog's timeout, capped by the module's.
    assert step.get("timeout") is None or 0 < int(step["timeout"]) <= 3600
    if 'WRAPPED_ARGUMENTS="--mode unattended"' in argv:
        assert line.endswith('WRAPPED_ARGUMENTS="--mode unattended"')


def test_secret_placeholders_are_only_where_the_module_substitutes_them() -> None:
    # {secret} is replaced in protection.command, an uninstall command and msi_args only; anywhere else it
    # would reach the host literally (or, worse, the code would have to travel some other way).
    for item in all_windows_items():
        for step in item["uninstall"]:
            used = "{secret}" in repr(step.get("command")) or "{secret}" in repr(step.get("msi_args"))
            rest = {k: v for k, v in step.items() if k not in ("command", "msi_args", "how", "notes")}
            assert "{secret}" not in repr(rest), f"{item['key']}: {rest}"
            if used:
                assert step.get("needs_secret") is True, (
                    f"{item['key']}: a step taking the code says needs_secret"
                )
        protection = item.get("protection") or {}
        rest = {k: v for k, v in protection.items() if k not in ("command", "how")}
        assert "{secret}" not in repr(rest), f"{item['key']}: {rest}"
