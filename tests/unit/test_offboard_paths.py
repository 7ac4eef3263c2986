"""The one protected-path and pattern policy (plugins/module_utils/offboard_paths.py), on every OS."""

from __future__ import annotations

import pytest

from tests.conftest import load_module

policy = load_module("paths_policy", "plugins/module_utils/offboard_paths.py")

REFUSED_PATHS = [
    "/",
    "//",
    "/etc",
    "/etc/",
    "/etc/ssh",
    "/etc/sudoers.d",
    "/usr",
    "/usr/local/bin",
    "/var",
    "/var/lib",
    "/home",
    "/home/alice",
    "/root",
    "/opt",
    "/Applications",
    "/System",
    "/System/Library",
    "/Users",
    "/Users/bob",
    "/Library/LaunchDaemons",
    "/private/var",
    "/opt/../etc",
    "/opt/msp*",
    "opt/msp",
    "",
    " /opt/msp",
    "C:\\",
    "c:/",
    "D:\\",
    "C:\\Windows",
    "c:\\windows\\system32",
    "C:\\Windows\\SysWOW64",
    "C:\\Program Files",
    "C:\\Program Files (x86)",
    "C:\\ProgramData",
    "C:\\Users",
    "C:\\Users\\bob",
    "C:\\Users\\bob\\AppData\\Roaming",
    "\\\\fs01\\share",
    "\\\\fs01",
    "C:\\MSP\\..\\Windows",
    "MSP\\Scripts",
]
ALLOWED_PATHS = [
    "/opt/msp-scripts",
    "/var/backups/msp-staging",
    "/etc/ssh/sshd_config.d/msp.conf",
    "/home/alice/.msp",
    "/Library/LaunchDaemons/com.msp.agent.plist",
    "C:\\MSP\\Scripts",
    "D:\\VeeamRepo",
    "C:\\Program Files\\NinjaRMMAgent",
    "C:\\ProgramData\\MSP",
    "\\\\fs01\\share\\msp-backups",
]


@pytest.mark.parametrize("path", REFUSED_PATHS)
def test_protected_or_unplain_paths_are_refused_with_a_reason(path):
    assert policy.protected_reason(path)
    assert not policy.safe_path(path)


@pytest.mark.parametrize("path", ALLOWED_PATHS)
def test_the_msps_own_folders_pass(path):
    assert policy.protected_reason(path) is None


def test_safe_path_stays_posix_only_for_the_posix_modules():
    assert policy.safe_path("/opt/msp-scripts")
    assert not policy.safe_path("C:\\MSP\\Scripts")
    assert policy.safe_windows_path("C:\\MSP\\Scripts")


# Patterns by (syntax, kind): the broad or ordinary ones the policy refuses, the specific ones it passes.
BROAD_PATTERNS = {
    ("regex", "name"): [".*", "", "x?", "cron", "^ssh", "update", "(unclosed", "a" * 600],
    ("regex", "path"): ["/", "system32"],
    ("fnmatch", "name"): ["*", "?*", "r*", "admin*"],
}
SPECIFIC_PATTERNS = {
    ("regex", "name"): ["^msp[-_]", "^MSP - "],
    ("regex", "path"): ["/opt/msp-scripts/", "C:\\\\MSP\\\\", "NinjaRMMAgent"],
    ("fnmatch", "name"): ["msp-*", "*@msp.example.net"],
}


def _pattern_cases(table: dict[tuple[str, str], list[str]]) -> list[tuple[str, str, str]]:
    return [(pattern, syntax, kind) for (syntax, kind), patterns in table.items() for pattern in patterns]


@pytest.mark.parametrize(("pattern", "syntax", "kind"), _pattern_cases(BROAD_PATTERNS))
def test_patterns_matching_everything_or_ordinary_names_are_refused(pattern, syntax, kind):
    assert policy.pattern_reason(pattern, syntax, kind)


@pytest.mark.parametrize(("pattern", "syntax", "kind"), _pattern_cases(SPECIFIC_PATTERNS))
def test_specific_patterns_pass(pattern, syntax, kind):
    assert policy.pattern_reason(pattern, syntax, kind) is None
