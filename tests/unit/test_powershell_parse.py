"""Every PowerShell script in the project parses: files (*.ps1, *.psm1) and scripts inline in YAML.

No Windows host and no PowerShell runtime exist here, so a syntax error in a Windows script would
otherwise surface only on a client's machine, mid-offboarding. tree-sitter-powershell parses PowerShell
without a runtime; a tree with an ERROR or MISSING node fails the test, naming the file, the line and
the offending node.

What counts as a script:
- every *.ps1 / *.psm1 file in the project (outside .venv, .git and caches);
- in every YAML file: the `script:` of `ansible.windows.win_powershell` (or `win_powershell`), and the
  `cmd:` or free-form argument of `ansible.windows.win_shell` (or `win_shell`) unless its
  `executable` is cmd;
- when such a script is a single Jinja variable (`script: "{{ __role_bounded_run }}"`), the variable it
  names, looked up in the same YAML file and then in the role's vars/ and defaults/. A script that is a
  `lookup('...file', 'x.ps1')` is the file x.ps1, which must exist (it is parsed as a file). A script
  variable that cannot be resolved fails the test: no script escapes the check by indirection.

tree-sitter-powershell is stricter than PowerShell in a few places (upstream issues of
airbus-cert/tree-sitter-powershell): a bare-word list as a command argument (`-Property Name, Id`) and
`--flag=value` native arguments are ERROR nodes. Write those quoted (`-Property 'Name', 'Id'`), which
PowerShell reads identically; the checker makes no exceptions.

Jinja inside an inline script is neutralised before parsing, because the host only ever sees the
rendered text: `{% ... %}` and `{# ... #}` become nothing, and `{{ ... }}` becomes a placeholder that is
valid where it stands: the bare word JINJA inside a PowerShell string or comment, the string literal
'JINJA' anywhere else. Line numbers survive (newlines inside a Jinja tag are kept).

`make lint` runs this file (`pytest -q tests/unit/test_powershell_parse.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import tree_sitter_powershell
import yaml
from tree_sitter import Language, Node, Parser

from tests.conftest import ROOT

SKIP_DIRS = {".venv", ".git", ".cache", ".pytest_cache", ".ruff_cache", "__pycache__", "node_modules"}
POWERSHELL_MODULES = {"ansible.windows.win_powershell", "win_powershell"}
SHELL_MODULES = {"ansible.windows.win_shell", "win_shell"}
WHOLE_VARIABLE = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$")
FILE_LOOKUP = re.compile(
    r"""^\s*\{\{\s*lookup\(\s*['"](?:ansible\.builtin\.)?file['"]\s*,\s*['"]([^'"]+)['"]\s*\)\s*\}\}\s*$"""
)
PLACEHOLDER = "JINJA"


def _shown(path: Path) -> str:
    """A path as a message names it: relative to the project when it is inside it."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


@dataclass(frozen=True)
class Script:
    """One PowerShell script: where it is, the file line of its first line, and its text."""

    origin: Path
    line: int  # 1-based line in `origin` of the script's first line
    text: str
    label: str  # what the script is (the task's module and key, or the variable it came from)
    exact_lines: bool = True  # False when the YAML scalar is folded or quoted: lines are approximate


@dataclass(frozen=True)
class ParseError:
    script: Script
    row: int  # 0-based row inside the script
    column: int
    kind: str  # ERROR or MISSING
    node_text: str

    def __str__(self) -> str:
        line = self.script.line + self.row
        where = _shown(self.script.origin)
        approx = "" if self.script.exact_lines else " (approximately: folded or quoted YAML scalar)"
        return (
            f"{where}:{line}:{self.column + 1}{approx}: {self.kind} node in {self.script.label}: "
            f"{self.node_text!r}"
        )


# --- parsing ---------------------------------------------------------------------------------------------
@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_powershell.language()))


def _bad_nodes(node: Node) -> Iterator[Node]:
    if node.is_error or node.is_missing:
        yield node
        return  # one report per broken region, not one per descendant
    if node.has_error:
        for child in node.children:
            yield from _bad_nodes(child)


def parse_errors(script: Script) -> list[ParseError]:
    """The ERROR and MISSING nodes of the script's syntax tree (empty when it parses)."""
    source = script.text.encode("utf-8")
    tree = _parser().parse(source)
    errors = []
    for node in _bad_nodes(tree.root_node):
        text = source[node.start_byte : node.end_byte].decode("utf-8", "replace")
        first = text.splitlines()[0] if text else ""
        errors.append(
            ParseError(
                script=script,
                row=node.start_point[0],
                column=node.start_point[1],
                kind="MISSING " + node.type if node.is_missing else "ERROR",
                node_text=first[:120],
            )
        )
    return errors


# --- Jinja ----------------------------------------------------------------------------------------------
def neutralise_jinja(text: str) -> str:
    """Replace Jinja tags by text PowerShell accepts where the tag stands (see the module docstring)."""
    out: list[str] = []
    i = 0
    state = "code"  # code | single | double | here_single | here_double | line_comment | block_comment
    n = len(text)
    while i < n:
        two = text[i : i + 2]
        if two in ("{{", "{%", "{#"):
            closing = {"{{": "}}", "{%": "%}", "{#": "#}"}[two]
            end = text.find(closing, i + 2)
            end = n if end < 0 else end + 2
            newlines = "\n" * text.count("\n", i, end)
            if two == "{{":
                out.append((PLACEHOLDER if state != "code" else f"'{PLACEHOLDER}'") + newlines)
            else:
                out.append(newlines)
            i = end
            continue
        c = text[i]
        out.append(c)
        i += 1
        if state == "code":
            if c == "#":
                state = "line_comment"
            elif c == "<" and text[i : i + 1] == "#":
                out.append("#")
                i += 1
                state = "block_comment"
            elif c == "@" and text[i : i + 1] in ("'", '"') and text[i + 1 : i + 2] in ("\n", "\r"):
                state = "here_single" if text[i] == "'" else "here_double"
                out.append(text[i])
                i += 1
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
        elif state == "line_comment":
            if c == "\n":
                state = "code"
        elif state == "block_comment":
            if c == "#" and text[i : i + 1] == ">":
                out.append(">")
                i += 1
                state = "code"
        elif state == "single":
            if c == "'":
                if text[i : i + 1] == "'":  # '' is an escaped quote
                    out.append("'")
                    i += 1
                else:
                    state = "code"
        elif state == "double":
            if c == "`" and i < n:
                out.append(text[i])
                i += 1
            elif c == '"':
                if text[i : i + 1] == '"':
                    out.append('"')
                    i += 1
                else:
                    state = "code"
        elif state in ("here_single", "here_double"):
            quote = "'" if state == "here_single" else '"'
            line_start = i - 1 == 0 or text[i - 2] == "\n"
            if c == quote and line_start and text[i : i + 1] == "@":
                out.append("@")
                i += 1
                state = "code"
    return "".join(out)


# --- collecting the scripts -----------------------------------------------------------------------------
def _walk(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.lower().endswith(suffixes):
                yield Path(folder) / name


def _first_line(node: yaml.ScalarNode) -> tuple[int, bool]:
    """1-based file line of the scalar's first content line; True when lines map exactly."""
    if node.style == "|":
        return node.start_mark.line + 2, True
    if node.style in (None, "") and "\n" not in node.value:
        return node.start_mark.line + 1, True
    return node.start_mark.line + 1, False


def _mapping(node: yaml.Node) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _all_mappings(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        yield node
        for _, value in node.value:
            yield from _all_mappings(value)
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            yield from _all_mappings(value)


def _compose(path: Path) -> list[yaml.Node]:
    try:
        return [
            doc for doc in yaml.compose_all(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader) if doc
        ]
    except yaml.YAMLError:
        return []  # not YAML this checker can read (yamllint reports real YAML errors)


def _variables(path: Path) -> dict[str, tuple[Path, yaml.ScalarNode]]:
    """Variables a script may name: this file's mapping keys first, then the role's vars and defaults."""
    found: dict[str, tuple[Path, yaml.ScalarNode]] = {}
    sources = [path]
    parts = path.parts
    if "roles" in parts:
        role = Path(*parts[: parts.index("roles") + 2])
        for sub in ("vars", "defaults"):
            sources += sorted((role / sub).rglob("*.yml")) if (role / sub).is_dir() else []
    for source in sources:
        for doc in _compose(source):
            for mapping in _all_mappings(doc):
                for key, value in mapping.value:
                    if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode):
                        found.setdefault(key.value, (source, value))
    return found


def _lookup_dirs(path: Path) -> list[Path]:
    dirs = [path.parent, path.parent / "files"]
    parts = path.parts
    if "roles" in parts:
        dirs.append(Path(*parts[: parts.index("roles") + 2]) / "files")
    return dirs


def yaml_scripts(path: Path) -> tuple[list[Script], list[str]]:
    """The inline PowerShell of one YAML file, and the problems that stop a script being checked."""
    scripts: list[Script] = []
    problems: list[str] = []
    variables: dict[str, tuple[Path, yaml.ScalarNode]] | None = None
    for doc in _compose(path):
        for mapping in _all_mappings(doc):
            keys = _mapping(mapping)
            for module, args in keys.items():
                if module in POWERSHELL_MODULES:
                    node = _mapping(args).get("script")
                    label = f"{module} script"
                elif module in SHELL_MODULES:
                    options = _mapping(keys.get("args")) | _mapping(args)
                    executable = options.get("executable")
                    if isinstance(executable, yaml.ScalarNode) and "cmd" in executable.value.lower():
                        continue
                    node = args if isinstance(args, yaml.ScalarNode) else _mapping(args).get("cmd")
                    label = f"{module} command"
                else:
                    continue
                if not isinstance(node, yaml.ScalarNode) or not node.value.strip():
                    continue
                where = f"{_shown(path)}:{node.start_mark.line + 1}"
                whole = WHOLE_VARIABLE.match(node.value)
                lookup = FILE_LOOKUP.match(node.value)
                if lookup:
                    if not any((d / lookup.group(1)).is_file() for d in _lookup_dirs(path)):
                        problems.append(f"{where}: {label} reads {lookup.group(1)!r}, which does not exist")
                    continue  # the file itself is parsed with the *.ps1 files
                source, value = path, node
                if whole:
                    if variables is None:
                        variables = _variables(path)
                    if whole.group(1) not in variables:
                        problems.append(
                            f"{where}: {label} is {{{{ {whole.group(1)} }}}}, defined nowhere I look"
                        )
                        continue
                    source, value = variables[whole.group(1)]
                    label = f"{label} (variable {whole.group(1)})"
                line, exact = _first_line(value)
                scripts.append(Script(source, line, neutralise_jinja(value.value), label, exact))
    return scripts, problems


def project_scripts(root: Path = ROOT) -> tuple[list[Script], list[str]]:
    scripts = [
        Script(path, 1, path.read_text(encoding="utf-8-sig"), path.name)
        for path in _walk(root, (".ps1", ".psm1"))
    ]
    problems: list[str] = []
    seen: set[tuple[Path, int]] = set()
    for path in _walk(root, (".yml", ".yaml")):
        found, trouble = yaml_scripts(path)
        problems += trouble
        for script in found:  # a variable used by three tasks is checked once
            if (script.origin, script.line) not in seen:
                seen.add((script.origin, script.line))
                scripts.append(script)
    return scripts, problems


# --- the check ------------------------------------------------------------------------------------------
def test_every_powershell_script_in_the_project_parses() -> None:
    scripts, problems = project_scripts()
    files = {s.origin.relative_to(ROOT).as_posix() for s in scripts}
    # The checker really looks where the scripts are (guards against it silently finding nothing).
    assert "plugins/modules/win_agent_footprint.ps1" in files
    assert "roles/scheduled_task_cleanup/files/windows_footprint.ps1" in files
    assert any(s.origin.suffix == ".yml" and "win_powershell" in s.label for s in scripts)
    errors = [str(e) for s in scripts for e in parse_errors(s)]
    assert not problems, "PowerShell scripts that could not be checked:\n" + "\n".join(problems)
    assert not errors, f"PowerShell parse errors ({len(errors)}):\n" + "\n".join(errors)


# --- the checker itself ---------------------------------------------------------------------------------
def _snippet(text: str) -> Script:
    return Script(ROOT / "snippet.ps1", 1, text, "snippet")


@pytest.mark.parametrize(
    ("broken", "line"),
    [
        ("$a = 1\nif ($a -eq 1 {\n    Write-Output 'x'\n}\n", 2),  # unclosed condition
        ("Function Get-X {\n    param ([string]$Name\n    $Name\n", 2),  # unclosed param block
        ("$h = @{ a = 1\n$x = 2\n", 1),  # unclosed hashtable
        ("$x = 'unterminated\n", 1),
        ("try { 1 }\nfinally {\n", 2),
    ],
)
def test_checker_fails_on_a_broken_snippet_and_names_the_line(broken: str, line: int) -> None:
    errors = parse_errors(_snippet(broken))
    assert errors, f"no parse error found in {broken!r}"
    assert min(e.script.line + e.row for e in errors) <= line + 1
    assert "snippet.ps1:" in str(errors[0]) and ("ERROR" in str(errors[0]) or "MISSING" in str(errors[0]))


def test_checker_accepts_valid_powershell() -> None:
    valid = (
        "[CmdletBinding()]\nparam ([Parameter(Mandatory = $true)] [string] $Path)\n"
        "$ErrorActionPreference = 'Stop'\n"
        '$x = @{ a = @(1, 2); b = "v $($Path.Length)" }\n'
        "foreach ($k in $x.Keys) { if ($k -match '^a') { $Ansible.Result = $x[$k] } }\n"
        "$here = @'\nliteral {{ not jinja here }}\n'@\n"
    )
    assert parse_errors(_snippet(valid)) == []


def test_jinja_is_neutralised_where_it_stands() -> None:
    templated = (
        "$a = {{ some_var | to_json }}\n"
        "$b = '{{ other }}\\sub'\n"
        'Write-Output "x {{ x }} y"\n'
        "{% if flag %}\n$c = 1\n{% endif %}\n"
        "# {{ comment }}\n"
        "$d = {{ multi\n  | line }}\n$e = 2\n"
    )
    rendered = neutralise_jinja(templated)
    assert "{{" not in rendered and "{%" not in rendered
    assert "$a = 'JINJA'" in rendered and "$b = 'JINJA\\sub'" in rendered and '"x JINJA y"' in rendered
    assert rendered.count("\n") == templated.count("\n")  # error lines still point at the file
    assert parse_errors(_snippet(rendered)) == []


def test_yaml_inline_scripts_and_script_variables_are_found(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.yml"
    tasks.write_text(
        "---\n"
        "- name: Inline\n"
        "  ansible.windows.win_powershell:\n"
        "    script: |\n"
        "      $ok = 1\n"
        "      if ($ok {\n"
        "      }\n"
        "- name: Through a variable\n"
        "  vars:\n"
        "    __x_run: |\n"
        "      param ([int] $T)\n"
        "      $Ansible.Result = @{ t = $T }\n"
        "  ansible.windows.win_powershell:\n"
        '    script: "{{ __x_run }}"\n'
        "- name: Free-form shell\n"
        "  ansible.windows.win_shell: Get-Service -Name {{ svc }} | Stop-Service\n"
        "- name: cmd is not PowerShell\n"
        "  ansible.windows.win_shell: dir /b & echo (\n"
        "  args: {executable: cmd}\n"
        "- name: Unknown variable\n"
        "  win_powershell:\n"
        '    script: "{{ __nowhere }}"\n',
        encoding="utf-8",
    )
    scripts, problems = yaml_scripts(tasks)
    assert [s.label for s in scripts] == [
        "ansible.windows.win_powershell script",
        "ansible.windows.win_powershell script (variable __x_run)",
        "ansible.windows.win_shell command",
    ]
    assert [s.line for s in scripts] == [5, 11, 16]
    assert len(problems) == 1 and "__nowhere" in problems[0]
    errors = [e for s in scripts for e in parse_errors(s)]
    assert errors and all(e.script is scripts[0] for e in errors)
    assert f"{tasks}:6:" in str(errors[0])
