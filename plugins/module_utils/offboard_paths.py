# Copyright: the offboard project contributors
# Apache-2.0
"""One protected-path and pattern policy for everything the roles delete, on every OS.

Used twice: by the preflight on the controller (client inputs: backup data paths, script folders, name
and path patterns) and again by the modules that delete on a host (agent_footprint,
scheduled_footprint), so a typo in a catalog or an inventory never reaches a system folder even
when the preflight was bypassed. One list: a fix here protects every role at once.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re

# POSIX (Linux, macOS): deleting any of these (or a parent of one) would wreck the host.
PROTECTED = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/snap",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/bin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/etc",
        "/usr/local/lib",
        "/usr/local/sbin",
        "/usr/local/share",
        "/usr/sbin",
        "/usr/share",
        "/usr/include",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/cache",
        "/var/spool",
        "/var/spool/cron",
        "/var/spool/cron/crontabs",
        "/var/backups",
        "/var/mail",
        "/var/www",
        "/var/root",
        "/var/tmp",
        "/etc/ssh",
        "/etc/ssl",
        "/etc/pam.d",
        "/etc/security",
        "/etc/sudoers.d",
        "/etc/default",
        "/etc/init.d",
        "/etc/network",
        "/etc/apt",
        "/etc/yum.repos.d",
        "/etc/systemd",
        "/etc/systemd/system",
        "/lib/systemd",
        "/lib/systemd/system",
        "/usr/lib/systemd",
        "/usr/lib/systemd/system",
        "/etc/cron.d",
        "/etc/cron.daily",
        "/etc/cron.hourly",
        "/etc/cron.weekly",
        "/etc/cron.monthly",
        "/etc/profile.d",
        "/etc/sysconfig",
        "/etc/selinux",
        "/Applications",
        "/Applications/Utilities",
        "/Library",
        "/Library/LaunchDaemons",
        "/Library/LaunchAgents",
        "/Library/Application Support",
        "/Library/Preferences",
        "/Library/PrivilegedHelperTools",
        "/Library/Extensions",
        "/System",
        "/System/Library",
        "/Users",
        "/Users/Shared",
        "/Volumes",
        "/cores",
        "/private",
        "/private/etc",
        "/private/tmp",
        "/private/var",
        "/private/var/root",
    }
)
# Folders whose direct children are user profiles (a whole profile is never the MSP's to delete).
POSIX_PROFILE_PARENTS = frozenset({"/home", "/Users"})

# Windows, relative to any drive root (compared case-insensitively): the drive root itself, the system
# folders, program-files and program-data roots, the profiles root and each profile.
WINDOWS_PROTECTED = frozenset(
    p.lower()
    for p in (
        "",
        "Windows",
        "Windows\\System32",
        "Windows\\System32\\drivers",
        "Windows\\System32\\Tasks",
        "Windows\\System32\\config",
        "Windows\\SysWOW64",
        "Windows\\Temp",
        "Windows\\Tasks",
        "Windows\\Installer",
        "Windows\\WinSxS",
        "Windows\\Fonts",
        "Windows\\Boot",
        "Windows\\INF",
        "Windows\\assembly",
        "Windows\\Microsoft.NET",
        "Windows\\servicing",
        "Windows\\SystemApps",
        "Windows\\Logs",
        "Windows\\SYSVOL",
        "Windows\\NTDS",
        "Program Files",
        "Program Files (x86)",
        "Program Files\\Common Files",
        "Program Files (x86)\\Common Files",
        "Program Files\\WindowsApps",
        "Program Files\\Windows Defender",
        "ProgramData",
        "ProgramData\\Microsoft",
        "ProgramData\\Microsoft\\Windows",
        "ProgramData\\Microsoft\\Windows\\Start Menu",
        "ProgramData\\Microsoft\\Windows\\Start Menu\\Programs",
        "ProgramData\\Microsoft\\Windows\\Start Menu\\Programs\\Startup",
        "ProgramData\\Microsoft\\Windows Defender",
        "Users",
        "Users\\Public",
        "Users\\Default",
        "Documents and Settings",
        "System Volume Information",
        "Recovery",
        "$Recycle.Bin",
        "PerfLogs",
        "Boot",
        "inetpub",
    )
)
WINDOWS_PROFILE_PARENTS = frozenset({"users", "documents and settings"})
_WINDOWS_DRIVE = re.compile(r"^([A-Za-z]):(\\.*)?$")
_GLOB = set("*?[")

# Ordinary names a pattern for the MSP's things must never match (scheduled tasks, cron files, units,
# services, GPOs, accounts, key comments, sudoers drop-ins): if it does, it would take the system's or
# the client's own along. Short on purpose: a pattern is tried against each, so none can run for long.
PROBE_NAMES = (
    "cron",
    "crond",
    "anacron",
    "sshd",
    "ssh",
    "systemd-tmpfiles-clean",
    "logrotate",
    "apt-daily",
    "man-db",
    "e2scrub_all",
    "fstrim",
    "dbus",
    "rsyslog",
    "root",
    "admin",
    "Administrator",
    "Guest",
    "daemon",
    "nobody",
    "ubuntu",
    "sudo",
    "wheel",
    "Windows Update",
    "Windows Defender",
    "Microsoft",
    "MicrosoftEdgeUpdateTaskMachineCore",
    "GoogleUpdateTaskMachineUA",
    "ScheduledDefrag",
    "Default Domain Policy",
    "Default Domain Controllers Policy",
    "com.apple.softwareupdated",
    "client-admin@client.example",
)
# Paths and command lines a path pattern must never match: a pattern that does would select what the
# system runs, not what the MSP left.
PROBE_PATHS = (
    "/usr/bin/python3",
    "/usr/sbin/cron",
    "/bin/sh -c run-parts /etc/cron.daily",
    "/usr/lib/apt/apt.systemd.daily",
    "/sbin/logrotate /etc/logrotate.conf",
    "/usr/local/bin/backup.sh",
    "/opt/client-tools/run",
    "C:\\Windows\\System32\\svchost.exe",
    "C:\\Program Files\\Client\\app.exe",
    "%windir%\\system32\\rundll32.exe",
    "powershell.exe -File C:\\Scripts\\x.ps1",
)
MAX_PATTERN = 500


def _posix_reason(path: str) -> str | None:
    if any(c in _GLOB for c in path):
        return "has a wildcard (give the exact folder)"
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return "is not a plain path ('.' or '..' in it)"
    norm = "/" + "/".join(parts)
    if norm in PROTECTED:
        return "is a protected system folder"
    parent = posixpath.dirname(norm)
    if parent in POSIX_PROFILE_PARENTS:
        return "is a user's whole profile folder"
    return None


def _windows_reason(path: str) -> str | None:
    text = path.replace("/", "\\")
    if any(c in _GLOB for c in text):
        return "has a wildcard (give the exact folder)"
    if text.startswith("\\\\"):
        rest = [p for p in text[2:].split("\\") if p]
        if len(rest) <= 2:
            return "is a network share root"
        if any(p in (".", "..") for p in rest):
            return "is not a plain path ('.' or '..' in it)"
        tail = rest[2:]
    else:
        match = _WINDOWS_DRIVE.match(text)
        if not match:
            return "is not an absolute path (C:\\... or \\\\server\\share\\...)"
        tail = [p for p in (match.group(2) or "").split("\\") if p]
        if any(p in (".", "..") for p in tail):
            return "is not a plain path ('.' or '..' in it)"
    rel = "\\".join(tail).lower()
    if rel in WINDOWS_PROTECTED:
        return "is a protected system folder" if rel else "is a drive root"
    if len(tail) == 2 and tail[0].lower() in WINDOWS_PROFILE_PARENTS:
        return "is a user's whole profile folder"
    if 3 <= len(tail) <= 4 and tail[0].lower() in WINDOWS_PROFILE_PARENTS and tail[2].lower() == "appdata":
        return "is a user's application-data root"
    return None


def is_windows_path(path: str) -> bool:
    return bool(_WINDOWS_DRIVE.match(path.replace("/", "\\"))) or path.startswith(("\\\\", "//"))


def protected_reason(path: object) -> str | None:
    """Why a path may not be deleted on any OS (None when it may): not an absolute plain path, a
    wildcard, a filesystem/drive/share root, a system or program folder, or a whole user profile."""
    if not isinstance(path, str) or not path.strip():
        return "is empty or not a string"
    if path != path.strip():
        return "has leading or trailing blanks"
    if "\x00" in path or "\n" in path:
        return "has control characters"
    if path.startswith(("//", "\\\\")):
        return _windows_reason(path)  # a UNC path (\\server\share), or // that would read as one
    if path.startswith("/"):
        return _posix_reason(path)
    if is_windows_path(path):
        return _windows_reason(path)
    return "is not an absolute path"


def safe_path(path):
    """True when a POSIX path may be deleted: absolute, normalised, no glob, not a protected folder or a
    user's whole profile, and at least two levels deep."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        return False
    if protected_reason(path) is not None:
        return False
    norm = os.path.normpath(path)
    return norm == path.rstrip("/") and norm.count("/") >= 2


def safe_windows_path(path: object) -> bool:
    """True when a Windows path (drive or UNC) may be deleted under the same policy."""
    return isinstance(path, str) and is_windows_path(path) and protected_reason(path) is None


def _probes(kind: str) -> tuple[str, ...]:
    return PROBE_PATHS if kind == "path" else PROBE_NAMES


def pattern_reason(pattern: object, syntax: str = "regex", kind: str = "name") -> str | None:
    """Why a selection pattern is refused (None when it is fine): empty, not compilable, too long, or it
    matches the empty string or an ordinary name (kind name) / system path (kind path) of PROBE_*.

    syntax: regex (searched, case-insensitive, as the roles do) or fnmatch (whole name).
    """
    if not isinstance(pattern, str) or pattern == "":
        return "is empty: it would match everything"
    if len(pattern) > MAX_PATTERN:
        return f"is longer than {MAX_PATTERN} characters"
    probes = _probes(kind)
    if syntax == "fnmatch":
        if fnmatch.fnmatchcase("", pattern) or pattern.strip("*?") == "":
            return "matches everything"
        hit = next((p for p in probes if fnmatch.fnmatch(p, pattern)), None)
    else:
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            return f"is not a regular expression ({exc})"
        if compiled.search("") is not None:
            return "matches the empty string, so it matches every name"
        hit = next((p for p in probes if compiled.search(p)), None)
    if hit is not None:
        what = "path" if kind == "path" else "name"
        return f"also matches the ordinary {what} {hit!r}: make it specific to the MSP"
    return None


__all__ = [
    "PROBE_NAMES",
    "PROBE_PATHS",
    "PROTECTED",
    "WINDOWS_PROTECTED",
    "pattern_reason",
    "protected_reason",
    "safe_path",
    "safe_windows_path",
]
