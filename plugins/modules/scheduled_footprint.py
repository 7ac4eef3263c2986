#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Find (and remove) what the departing MSP left running silently on a Linux or macOS host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: scheduled_footprint
short_description: Find (and remove) the MSP's cron jobs, systemd timers, startup scripts and launchd jobs
description:
  - Scans a Linux or macOS host for jobs and scripts that match the departing MSP's patterns from the
    inventory, and with O(state=absent) removes exactly those.
  - Cron - C(/etc/crontab) lines, C(/etc/cron.d) files (whole file when its name matches, else matching
    lines), C(/etc/cron.hourly|daily|weekly|monthly) scripts, user crontabs (Debian, RHEL and macOS spools).
  - systemd - unit files in C(/etc/systemd/system) and C(/usr/local/lib/systemd/system) (a timer and the
    service it starts go together); units shipped by packages are the package's, not this module's.
  - Startup - C(/etc/profile.d) scripts, C(/etc/rc.local) lines; the MSP's script folders (C(script_dirs));
    macOS launchd plists in C(/Library/LaunchDaemons) and C(/Library/LaunchAgents).
  - Every item found carries its full definition (file contents, crontab line, unit files), bounded by
    O(capture_limit), with the sha256 and size of the whole, so that it can be put back.
  - Anything matching O(keep_patterns) is never touched and is listed under C(kept).
options:
  name_patterns:
    description: Python regular expressions (searched, case-insensitive) matched against names - cron.d and
      cron.daily file names, unit names, profile.d script names, launchd labels.
    type: list
    elements: str
    default: []
  path_patterns:
    description: Python regular expressions (searched, case-insensitive) matched against what runs - cron
      lines, unit C(Exec*) lines, profile.d and cron.daily script contents, rc.local lines, launchd programs.
    type: list
    elements: str
    default: []
  script_dirs:
    description: Absolute folders the MSP put its scripts in; each that exists is one item (deleted whole).
    type: list
    elements: str
    default: []
  keep_patterns:
    description: Regexes for the client's own jobs; an item whose name or definition matches is kept.
    type: list
    elements: str
    default: []
  state:
    description: V(query) reports; V(absent) removes what it finds (in check mode - what it would).
    type: str
    choices: [query, absent]
    default: query
  capture_limit:
    description: Largest number of bytes of one item's definition kept in the result (the sha256 covers all).
    type: int
    default: 16384
  root:
    description: Scan below this folder instead of C(/) (an offline image, or tests). Services are only
      stopped when it is C(/).
    type: path
    default: /
supports_check_mode: true
author: offboard project
"""

EXAMPLES = r"""
- name: Scheduled | discover | the MSP's silent jobs
  offboard.msp.scheduled_footprint:
    name_patterns: ['^msp[-_]']
    path_patterns: ['/opt/msp-scripts/']
    script_dirs: [/opt/msp-scripts]
    keep_patterns: ['labclient']
  register: found
"""

RETURN = r"""
items:
  description: One entry per job or script found (after O(state=absent), what was or would be removed).
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: 'stable id: systemd:msp-patch.timer, cron_line:/etc/crontab:1a2b3c4d', type: str}
    kind:
      description: cron_line, cron_file, cron_script, systemd, profile_script, rc_line, script_dir or launchd
      type: str
    component: {description: scheduled_task or startup_script, type: str}
    path: {description: file (or folder) holding it, type: str}
    definition: {description: the text that defines it, up to capture_limit bytes, type: str}
    definition_sha256: {description: sha256 of the whole definition, type: str}
    definition_bytes: {description: size of the whole definition, type: int}
    truncated: {description: whether definition was cut at capture_limit, type: bool}
    matched_by: {description: which pattern matched, type: str}
kept:
  description: Items that matched an MSP pattern but also a keep pattern, left alone.
  returned: always
  type: list
  elements: dict
"""

import contextlib
import hashlib
import os
import plistlib
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.offboard_paths import (  # noqa: F401 (PROTECTED: tests)
    PROTECTED,
    pattern_reason,
    safe_path,
)

CRON_SPOOLS = ("/var/spool/cron/crontabs", "/var/spool/cron", "/usr/lib/cron/tabs")
CRON_PERIODIC = ("/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly")
UNIT_DIRS = ("/etc/systemd/system", "/usr/local/lib/systemd/system")
LAUNCHD_DIRS = ("/Library/LaunchDaemons", "/Library/LaunchAgents")


def is_job_line(line):
    """A crontab line that schedules something (not blank, comment or VAR=value)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return False
    return not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", text)


class Matcher:
    def __init__(self, names, paths, keeps):
        self.names = [(p, re.compile(p, re.IGNORECASE)) for p in names]
        self.paths = [(p, re.compile(p, re.IGNORECASE)) for p in paths]
        self.keeps = [(p, re.compile(p, re.IGNORECASE)) for p in keeps]

    def name(self, text):
        return next((f"name_patterns: {p}" for p, r in self.names if r.search(text or "")), "")

    def path(self, text):
        return next((f"path_patterns: {p}" for p, r in self.paths if r.search(text or "")), "")

    def keep(self, *texts):
        return next((f"keep_patterns: {p}" for p, r in self.keeps for t in texts if r.search(t or "")), "")


class Scanner:
    def __init__(self, module, root="/"):
        self.module = module
        self.root = root
        self.limit = module.params["capture_limit"] if module else 16384
        p = module.params if module else {}
        self.match = Matcher(
            p.get("name_patterns") or [], p.get("path_patterns") or [], p.get("keep_patterns") or []
        )
        self.script_dirs = p.get("script_dirs") or []
        self.items = []
        self.kept = []

    # helpers -----------------------------------------------------------------------------------------
    def real(self, path):
        return os.path.join(self.root, path.lstrip("/")) if self.root != "/" else path

    def read(self, path):
        try:
            with open(self.real(path), encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return None

    def listdir(self, folder):
        try:
            return sorted(os.listdir(self.real(folder)))
        except OSError:
            return []

    def add(self, kind, component, path, definition, matched_by, name, **extra):
        data = definition.encode("utf-8", "replace")
        kept = self.match.keep(name, path, definition)
        item = {
            "id": extra.pop("id", None) or f"{kind}:{path}",
            "kind": kind,
            "component": component,
            "name": name,
            "path": path,
            "definition": data[: self.limit].decode("utf-8", "replace"),
            "definition_sha256": hashlib.sha256(data).hexdigest(),
            "definition_bytes": len(data),
            "truncated": len(data) > self.limit,
            "matched_by": matched_by,
            **extra,
        }
        if kept:
            self.kept.append(
                {"id": item["id"], "kind": kind, "path": path, "kept_by": kept, "matched_by": matched_by}
            )
        else:
            self.items.append(item)

    # cron --------------------------------------------------------------------------------------------
    def cron_lines(self, path, text):
        for line in text.splitlines():
            if not is_job_line(line):
                continue
            why = self.match.path(line)
            if why:
                digest = hashlib.sha256(line.encode()).hexdigest()[:8]
                self.add(
                    "cron_line",
                    "scheduled_task",
                    path,
                    line,
                    why,
                    os.path.basename(path),
                    id=f"cron_line:{path}:{digest}",
                    line=line,
                )

    def scan_cron(self):
        text = self.read("/etc/crontab")
        if text is not None:
            self.cron_lines("/etc/crontab", text)
        for name in self.listdir("/etc/cron.d"):
            path = f"/etc/cron.d/{name}"
            text = self.read(path)
            if text is None or not os.path.isfile(self.real(path)):
                continue
            why = self.match.name(name)
            if why:
                self.add("cron_file", "scheduled_task", path, text, why, name)
            else:
                self.cron_lines(path, text)
        for folder in CRON_PERIODIC:
            for name in self.listdir(folder):
                path = f"{folder}/{name}"
                text = self.read(path)
                if text is None or not os.path.isfile(self.real(path)):
                    continue
                why = self.match.name(name) or self.match.path(text)
                if why:
                    self.add("cron_script", "scheduled_task", path, text, why, name)
        seen = set()
        for spool in CRON_SPOOLS:
            for user in self.listdir(spool):
                path = f"{spool}/{user}"
                if path in seen or not os.path.isfile(self.real(path)):
                    continue
                seen.add(path)
                text = self.read(path)
                if text is not None:
                    self.cron_lines(path, text)

    # systemd -----------------------------------------------------------------------------------------
    def scan_systemd(self):
        units = {}
        for folder in UNIT_DIRS:
            for name in self.listdir(folder):
                path = f"{folder}/{name}"
                real = self.real(path)
                if (
                    name.endswith((".service", ".timer"))
                    and os.path.isfile(real)
                    and not os.path.islink(real)
                ):
                    units.setdefault(name, path)
        groups = {}
        for name, path in units.items():
            text = self.read(path) or ""
            execs = "\n".join(ln for ln in text.splitlines() if ln.strip().startswith("Exec"))
            why = self.match.name(name) or self.match.path(execs)
            if not why:
                continue
            stem = name.rsplit(".", 1)[0]
            group = groups.setdefault(stem, {"units": set(), "why": why})
            group["units"].add(name)
        for stem, group in groups.items():
            # A timer and the service it starts go together.
            for name in list(group["units"]):
                if name.endswith(".timer"):
                    text = self.read(units[name]) or ""
                    target = next(
                        (
                            ln.split("=", 1)[1].strip()
                            for ln in text.splitlines()
                            if ln.strip().startswith("Unit=")
                        ),
                        f"{stem}.service",
                    )
                    if target in units:
                        group["units"].add(target)
            if f"{stem}.timer" in units:
                group["units"].add(f"{stem}.timer")
            names = sorted(group["units"], key=lambda n: (not n.endswith(".timer"), n))
            definition = "".join(f"# {units[n]}\n{self.read(units[n]) or ''}\n" for n in names)
            self.add(
                "systemd",
                "scheduled_task",
                units[names[0]],
                definition,
                group["why"],
                names[0],
                id=f"systemd:{names[0]}",
                units=names,
                unit_paths=[units[n] for n in names],
            )

    # startup scripts ---------------------------------------------------------------------------------
    def scan_startup(self):
        for name in self.listdir("/etc/profile.d"):
            path = f"/etc/profile.d/{name}"
            text = self.read(path)
            if text is None or not os.path.isfile(self.real(path)):
                continue
            why = self.match.name(name) or self.match.path(text)
            if why:
                self.add("profile_script", "startup_script", path, text, why, name)
        text = self.read("/etc/rc.local")
        if text is not None:
            for line in text.splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    why = self.match.path(line)
                    if why:
                        digest = hashlib.sha256(line.encode()).hexdigest()[:8]
                        self.add(
                            "rc_line",
                            "startup_script",
                            "/etc/rc.local",
                            line,
                            why,
                            "rc.local",
                            id=f"rc_line:/etc/rc.local:{digest}",
                            line=line,
                        )
        for folder in self.script_dirs:
            if not os.path.isdir(self.real(folder)) or os.path.islink(self.real(folder)):
                continue
            self.add("script_dir", "startup_script", folder, self.describe_dir(folder), "script_dirs", folder)

    def describe_dir(self, folder):
        """A listing (sha256, size, path) of every file, then the text of each file, for the record."""
        listing, texts = [], []
        base = self.real(folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, base)
                try:
                    with open(full, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                listing.append(f"{hashlib.sha256(data).hexdigest()}  {len(data):>9}  {rel}")
                if b"\0" not in data[:4096]:
                    texts.append(f"--- {rel}\n{data.decode('utf-8', 'replace')}")
        return "\n".join(listing) + "\n\n" + "\n".join(texts)

    # launchd (macOS) ---------------------------------------------------------------------------------
    def scan_launchd(self):
        for folder in LAUNCHD_DIRS:
            for name in self.listdir(folder):
                path = f"{folder}/{name}"
                if not name.endswith(".plist"):
                    continue
                try:
                    with open(self.real(path), "rb") as fh:
                        raw = fh.read()
                    plist = plistlib.loads(raw)
                except (OSError, ValueError, plistlib.InvalidFileException):
                    continue
                label = str(plist.get("Label") or name[: -len(".plist")])
                program = " ".join(
                    [str(plist.get("Program") or "")] + [str(a) for a in plist.get("ProgramArguments") or []]
                )
                why = self.match.name(label) or self.match.path(program)
                if why:
                    text = (
                        raw.decode("utf-8", "replace") if b"\0" not in raw else plistlib.dumps(plist).decode()
                    )
                    self.add(
                        "launchd",
                        "scheduled_task",
                        path,
                        text,
                        why,
                        label,
                        id=f"launchd:{label}",
                        label=label,
                        domain="system" if "Daemons" in folder else "gui",
                    )

    def scan(self):
        self.scan_cron()
        self.scan_systemd()
        self.scan_startup()
        self.scan_launchd()
        return self.items, self.kept


# removal -----------------------------------------------------------------------------------------------
def _rewrite_without(path, lines_to_drop, logical=None):
    """Write path again without the given lines (atomic rename keeps cron's view consistent).
    Returns True when the file no longer schedules anything and was deleted instead."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.rstrip("\n") not in lines_to_drop]
    if kept == lines:
        return False
    if (logical or path).startswith("/etc/cron.d/") and not any(is_job_line(ln) for ln in kept):
        os.unlink(path)
        return True
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".offboard-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(kept)
    os.chmod(tmp, st.st_mode & 0o7777)
    with contextlib.suppress(PermissionError):
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)
    return False


def remove(module, scanner, items):
    live = scanner.root == "/"
    check = module.check_mode
    run = module.run_command
    reload_systemd = False
    by_file = {}
    for item in items:
        if item["kind"] in ("cron_line", "rc_line"):
            by_file.setdefault(item["path"], []).append(item)
    if not check:
        for path, line_items in by_file.items():
            deleted = _rewrite_without(scanner.real(path), {i["line"] for i in line_items}, path)
            for i in line_items:
                i["file_deleted"] = deleted
    for item in items:
        kind = item["kind"]
        if kind == "systemd":
            if not check:
                if live and shutil.which("systemctl"):
                    run(["systemctl", "disable", "--now", *item["units"]])
                for path in item["unit_paths"]:
                    real = scanner.real(path)
                    if os.path.lexists(real):
                        os.unlink(real)
                    dropins = real + ".d"
                    if os.path.isdir(dropins) and not os.path.islink(dropins):
                        shutil.rmtree(dropins)
                for folder in UNIT_DIRS:  # links a manual `systemctl enable` left in *.wants
                    for wants in scanner.listdir(folder):
                        if wants.endswith((".wants", ".requires")):
                            for unit in item["units"]:
                                link = scanner.real(f"{folder}/{wants}/{unit}")
                                if os.path.islink(link):
                                    os.unlink(link)
            reload_systemd = True
        elif kind == "launchd":
            if not check:
                if live and shutil.which("launchctl") and item.get("domain") == "system":
                    run(["launchctl", "bootout", f"system/{item['label']}"])
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(scanner.real(item["path"]))
        elif kind == "script_dir":
            if not safe_path(item["path"]):
                module.fail_json(
                    msg=f"refusing to delete {item['path']!r}: a system folder or not an absolute plain "
                    "path; fix offboard_msp_footprint.script_dirs",
                    items=items,
                )
            if not check:
                shutil.rmtree(scanner.real(item["path"]))
        elif kind in ("cron_file", "cron_script", "profile_script") and not check:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scanner.real(item["path"]))
    if reload_systemd and not check and live and shutil.which("systemctl"):
        run(["systemctl", "daemon-reload"])
        run(["systemctl", "reset-failed"])
    return items


def main():
    module = AnsibleModule(
        argument_spec={
            "name_patterns": {"type": "list", "elements": "str", "default": []},
            "path_patterns": {"type": "list", "elements": "str", "default": []},
            "script_dirs": {"type": "list", "elements": "str", "default": []},
            "keep_patterns": {"type": "list", "elements": "str", "default": []},
            "state": {"type": "str", "choices": ["query", "absent"], "default": "query"},
            "capture_limit": {"type": "int", "default": 16384},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    for key in ("name_patterns", "path_patterns", "keep_patterns"):
        for pattern in module.params[key]:
            try:
                re.compile(pattern)
            except re.error as exc:
                module.fail_json(msg=f"{key}: {pattern!r} is not a valid regular expression: {exc}")
            # Again here, not only in the preflight: a pattern matching everything deletes the system's jobs.
            reason = (
                None
                if key == "keep_patterns"
                else pattern_reason(pattern, "regex", "path" if key == "path_patterns" else "name")
            )
            if reason:
                module.fail_json(msg=f"{key}: {pattern!r} {reason}; fix offboard_msp_footprint.{key}")
    for folder in module.params["script_dirs"]:
        if not safe_path(folder):
            module.fail_json(msg=f"script_dirs: {folder!r} is a system folder or not an absolute plain path")
    scanner = Scanner(module, module.params["root"])
    items, kept = scanner.scan()
    changed = False
    if module.params["state"] == "absent" and items:
        remove(module, scanner, items)
        changed = True
    module.exit_json(changed=changed, items=items, kept=kept)


if __name__ == "__main__":
    main()
