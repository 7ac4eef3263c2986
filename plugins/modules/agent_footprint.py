#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Discover (and clean up) the footprint of MSP agents on a Linux or macOS host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: agent_footprint
short_description: Find an MSP agent's packages, services, processes and files; remove what is left
description:
  - Probes each catalogued agent footprint item on a Linux or macOS host.
  - With O(state=query) it only reads (safe in check mode and for verification).
  - With O(state=absent) it stops the agent's remaining processes and deletes its files, unit files,
    launchd jobs and cron lines. Packages and vendor uninstallers are handled by the calling role
    before this step, with the package manager and the vendor's tool.
  - Paths are never globbed, and system folders such as V(/opt) or V(/usr/local/bin) are refused.
options:
  items:
    description:
      - Footprint items as built by the C(offboard_agent_scope) filter from the agent catalog.
      - Each has C(key), C(product), C(name), C(category), optional C(instance), and lists
        C(packages), C(services), C(processes), C(paths), C(launchd), C(uninstall), C(leftovers).
    type: list
    elements: dict
    required: true
  state:
    description: V(query) reports; V(absent) removes processes, files, units, launchd jobs and cron lines.
    type: str
    choices: [query, absent]
    default: query
  remove_leftovers:
    description: With O(state=absent), also delete the item's paths and leftover paths.
    type: bool
    default: true
  kill_timeout:
    description: Seconds to wait after SIGTERM before SIGKILL.
    type: int
    default: 5
supports_check_mode: true
author: offboard project
"""

EXAMPLES = r"""
- name: RMM | discover | find the MSP's agents
  agent_footprint:
    items: "{{ offboard_msp_agents | offboard_agent_scope(catalog, 'linux') }}"
  register: found

- name: RMM | remove | delete what the uninstaller left
  agent_footprint:
    items: "{{ [one_item] }}"
    state: absent
"""

RETURN = r"""
items:
  description: One entry per item, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    key: {description: product or product:instance, type: str}
    found: {description: whether any trace of the agent exists, type: bool}
    packages: {description: installed packages, with version and status, type: list}
    services: {description: systemd units known to systemd, with states, type: list}
    processes: {description: running processes of the agent (pid, name, exe), type: list}
    paths: {description: existing paths of the agent, type: list}
    leftovers: {description: existing leftover paths, units and cron lines, type: dict}
    launchd: {description: existing launchd jobs (macOS), type: list}
    uninstaller: {description: the first catalogued uninstaller whose program exists, or null, type: dict}
    removed: {description: with state=absent, what was (or in check mode would be) removed, type: dict}
"""

import contextlib
import os
import platform
import shutil
import signal
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.offboard_paths import PROTECTED, safe_path  # noqa: F401 (PROTECTED: tests)

SHELLS = {"sh", "bash", "dash", "zsh", "python", "python3", "perl", "mono", "java"}
CRON_FILES_DIRS = ("/etc/cron.d", "/var/spool/cron/crontabs", "/var/spool/cron", "/usr/lib/cron/tabs")


def alive(pid):
    """Whether a process still exists (works on Linux and macOS, unlike looking in /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def within(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots if r)


class Probe:
    """Read-only probes of one host."""

    def __init__(self, module):
        self.module = module
        self.system = platform.system()
        self._procs = None

    def run(self, argv):
        rc, out, err = self.module.run_command(argv, check_rc=False)
        return rc, out, err

    # packages ----------------------------------------------------------------------------------------
    def package(self, name):
        if shutil.which("dpkg-query"):
            rc, out, _ = self.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", name])
            if rc == 0 and out.strip():
                status, _, version = out.partition("\t")
                state = status.split()[-1] if status.split() else ""
                if state in ("installed", "config-files", "half-installed", "half-configured", "unpacked"):
                    return {"name": name, "version": version.strip(), "status": state, "manager": "dpkg"}
            return None
        if shutil.which("rpm"):
            rc, out, _ = self.run(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", name])
            if rc == 0:
                return {"name": name, "version": out.strip(), "status": "installed", "manager": "rpm"}
            return None
        if self.system == "Darwin" and shutil.which("pkgutil"):
            rc, out, _ = self.run(["pkgutil", "--pkg-info", name])
            if rc == 0:
                version = next(
                    (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("version:")), ""
                )
                return {"name": name, "version": version, "status": "installed", "manager": "pkgutil"}
        return None

    # services ----------------------------------------------------------------------------------------
    def service(self, name):
        if not shutil.which("systemctl"):
            return None
        rc, out, _ = self.run(
            ["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState,FragmentPath", "--", name]
        )
        if rc != 0:
            return None
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if props.get("LoadState") in (None, "", "not-found"):
            return None
        return {
            "name": name,
            "load": props.get("LoadState"),
            "active": props.get("ActiveState"),
            "enabled": props.get("UnitFileState"),
            "path": props.get("FragmentPath"),
        }

    # processes ---------------------------------------------------------------------------------------
    def processes(self):
        if self._procs is not None:
            return self._procs
        procs = []
        if os.path.isdir("/proc/self"):
            me = os.getpid()
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == me:
                    continue
                try:
                    with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
                        comm = fh.read().strip()
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        argv = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
                    try:
                        exe = os.readlink(f"/proc/{pid}/exe")
                    except OSError:
                        exe = ""
                except OSError:
                    continue
                procs.append({"pid": int(pid), "comm": comm, "argv": argv, "exe": exe})
        else:  # macOS: ps is the portable reader
            rc, out, _ = self.run(["ps", "-axo", "pid=,comm="])
            for line in out.splitlines() if rc == 0 else []:
                pid, _, comm = line.strip().partition(" ")
                if pid.isdigit():
                    procs.append(
                        {
                            "pid": int(pid),
                            "comm": os.path.basename(comm.strip()),
                            "argv": [comm.strip()],
                            "exe": comm.strip(),
                        }
                    )
        self._procs = procs
        return procs

    @staticmethod
    def program_paths(proc):
        """The program a process runs: its executable, or the script an interpreter runs."""
        paths = [p for p in (proc["exe"], proc["argv"][0] if proc["argv"] else "") if p]
        if proc["argv"] and os.path.basename(proc["argv"][0]) in SHELLS and len(proc["argv"]) > 1:
            paths.append(proc["argv"][1])
        return paths

    def matching_processes(self, item):
        names = set(item.get("processes") or [])
        roots = list(item.get("paths") or []) + list((item.get("leftovers") or {}).get("paths") or [])
        found = []
        for proc in self.processes():
            programs = self.program_paths(proc)
            by_path = any(within(p, roots) for p in programs)
            by_name = not item.get("instance") and (
                any(os.path.basename(p) in names for p in programs)
                or any(n[:15] == proc["comm"] for n in names)
            )
            if by_path or by_name:
                found.append(
                    {"pid": proc["pid"], "name": proc["comm"], "exe": programs[-1] if programs else ""}
                )
        return found

    # cron --------------------------------------------------------------------------------------------
    @staticmethod
    def cron_lines(patterns):
        hits = []
        if not patterns:
            return hits
        files = ["/etc/crontab"]
        for folder in CRON_FILES_DIRS:
            if os.path.isdir(folder):
                files.extend(os.path.join(folder, f) for f in sorted(os.listdir(folder)))
        for path in files:
            if not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    lines = fh.read().splitlines()
            except OSError:
                continue
            for line in lines:
                if not line.lstrip().startswith("#") and any(p in line for p in patterns):
                    hits.append({"file": path, "line": line})
        return hits

    # one item ----------------------------------------------------------------------------------------
    def item(self, item):
        leftovers = item.get("leftovers") or {}
        result = {
            "key": item["key"],
            "product": item.get("product"),
            "instance": item.get("instance"),
            "name": item.get("name"),
            "category": item.get("category"),
            "packages": [p for p in (self.package(n) for n in item.get("packages") or []) if p],
            "services": [s for s in (self.service(n) for n in item.get("services") or []) if s],
            "processes": self.matching_processes(item),
            "paths": [p for p in item.get("paths") or [] if os.path.lexists(p)],
            "launchd": [
                j for j in item.get("launchd") or [] if j.get("plist") and os.path.lexists(j["plist"])
            ],
            "leftovers": {
                "paths": [p for p in leftovers.get("paths") or [] if os.path.lexists(p)],
                "units": [p for p in leftovers.get("units") or [] if os.path.lexists(p)],
                "cron": self.cron_lines(leftovers.get("cron") or []),
            },
        }
        result["uninstaller"] = next(
            (
                u
                for u in item.get("uninstall") or []
                if u.get("when_exists") and os.path.exists(u["when_exists"])
            ),
            None,
        )
        result["found"] = bool(
            result["packages"]
            or result["services"]
            or result["processes"]
            or result["paths"]
            or result["launchd"]
            or any(result["leftovers"].values())
        )
        return result


def remove(module, probe, item, found):
    """Delete what is left of one item. Returns what was (or would be) removed."""
    check = module.check_mode
    removed = {"processes": [], "paths": [], "units": [], "cron": [], "launchd": [], "refused": []}
    # launchd jobs first so that nothing respawns what is being deleted (macOS).
    for job in found["launchd"]:
        if not check and shutil.which("launchctl"):
            probe.run(["launchctl", "bootout", f"system/{job['label']}"])
        removed["launchd"].append(job["label"])
    pids = [p["pid"] for p in found["processes"]]
    if pids:
        removed["processes"] = [p["name"] for p in found["processes"]]
        if not check:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + module.params["kill_timeout"]
            while time.monotonic() < deadline and any(alive(p) for p in pids):
                time.sleep(0.2)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    targets = list(found["leftovers"]["units"]) + [j["plist"] for j in found["launchd"]]
    if module.params["remove_leftovers"]:
        targets += list(found["paths"]) + list(found["leftovers"]["paths"])
    for path in dict.fromkeys(targets):
        if not os.path.lexists(path):
            continue
        if not safe_path(path):
            removed["refused"].append(path)
            continue
        if not check:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        key = "units" if path in found["leftovers"]["units"] else "paths"
        removed[key].append(path)
    for hit in found["leftovers"]["cron"]:
        if not check:
            with open(hit["file"], encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines(keepends=True)
            kept = [ln for ln in lines if ln.rstrip("\n") != hit["line"]]
            if kept != lines:
                with open(hit["file"], "w", encoding="utf-8") as fh:
                    fh.writelines(kept)
        removed["cron"].append(hit)
    # Reload whenever units were involved: an uninstaller interrupted between deleting a unit file and
    # reloading leaves systemd holding a stale unit that would still count as present.
    stale = [s["name"] for s in found["services"] if s.get("path") and not os.path.exists(s["path"])]
    if (removed["units"] or stale) and shutil.which("systemctl"):
        removed["units"].extend(f"{name} (stale in systemd)" for name in stale)
        if not check:
            probe.run(["systemctl", "daemon-reload"])
            probe.run(["systemctl", "reset-failed"])
    return removed


def main():
    module = AnsibleModule(
        argument_spec={
            "items": {"type": "list", "elements": "dict", "required": True},
            "state": {"type": "str", "choices": ["query", "absent"], "default": "query"},
            "remove_leftovers": {"type": "bool", "default": True},
            "kill_timeout": {"type": "int", "default": 5},
        },
        supports_check_mode=True,
    )
    probe = Probe(module)
    results = []
    changed = False
    for item in module.params["items"]:
        if not isinstance(item, dict) or not item.get("key"):
            module.fail_json(msg=f"every item needs a 'key' (built by offboard_agent_scope); got {item!r}")
        found = probe.item(item)
        if module.params["state"] == "absent" and found["found"]:
            found["removed"] = remove(module, probe, item, found)
            probe._procs = None  # processes changed: the next item probes afresh
            if found["removed"]["refused"]:
                module.fail_json(
                    msg=f"{item['key']}: refusing to delete protected or unsafe path(s) "
                    f"{found['removed']['refused']}: fix the catalog entry",
                    items=[*results, found],
                )
            changed = changed or any(v for k, v in found["removed"].items() if k != "refused")
        results.append(found)
    module.exit_json(changed=changed, items=results)


if __name__ == "__main__":
    main()
