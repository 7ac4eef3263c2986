#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""The footprint engine's host side on Linux and macOS: discover by evidence, remove in layers, re-probe."""

from __future__ import annotations

DOCUMENTATION = r"""
module: agent_footprint
short_description: Find everything of an MSP's agents on a Linux or macOS host; remove it in layers, verified
description:
  - Implements the footprint engine contract (docs/agents-engine.md) on Linux and macOS; the Windows
    side is M(win_agent_footprint). One call handles every product given.
  - Discovery starts from the catalog's names and paths, then derives by evidence what owns, starts or
    references the vendor's paths - systemd units, SysV init scripts, C(/etc/rc.local) lines, cron lines,
    launchd jobs, processes by executable, packages owning vendor files (C(dpkg -S), C(rpm -qf),
    C(pkgutil --file-info)). Derived entries carry C(derived_from).
  - An item with an C(instance) is matched by its own paths only, never by a shared name, so a client's
    own instance of the same tool is never touched.
  - With O(state=absent), each product found is removed in layers - vendor uninstaller (bounded, whole
    process tree killed on timeout), package manager (owning packages, named or derived), forced cleanup -
    each only while something is left, then the whole derived set is probed again. C(verified_absent) is
    true only when that re-probe finds nothing.
  - Paths are never globbed; protected system folders are refused (reported, never deleted).
options:
  items:
    description: Product specs as built by the C(offboard_agent_scope) filter.
    type: list
    elements: dict
    required: true
  state:
    description: V(query) only reads (safe in check mode); V(absent) removes and re-probes.
    type: str
    choices: [query, absent]
    default: query
  timeout:
    description: Upper bound in seconds for one vendor uninstaller or package-manager call.
    type: int
    default: 300
  secrets:
    description: Product id to uninstall/tamper code, put in for C({secret}) in uninstallers; never returned.
    type: dict
    default: {}
  remove_leftovers:
    description: Delete the vendor's paths in the forced layer (units, startup entries, processes always go).
    type: bool
    default: true
  kill_timeout:
    description: Seconds to wait after SIGTERM before SIGKILL.
    type: int
    default: 5
  macos_items:
    description:
      - Product specs to use instead of O(items) when the host turns out to be macOS, so that a caller
        that does not know the OS yet needs no fact gathering first (O(items) are then the Linux specs).
    type: list
    elements: dict
  groups:
    description:
      - Sizes of consecutive slices of the items (of O(macos_items) on macOS) that are discovered each on
        its own, as separate calls would (one catalog each; the host is read once). Default one slice.
    type: list
    elements: int
  macos_groups:
    description: O(groups) for O(macos_items).
    type: list
    elements: int
  os_facts:
    description:
      - Also return C(ansible_facts.os_family) and C(ansible_facts.system), where they can be told exactly
        as C(setup) would (macOS, and the Linux distributions in C(OS_FAMILY) by their os-release C(ID)).
        Elsewhere no facts are returned and the caller gathers them.
    type: bool
    default: false
supports_check_mode: true
author: offboard project
"""

EXAMPLES = r"""
- name: Agents | discover | every product in scope, by evidence
  offboard.msp.agent_footprint:
    items: "{{ rmm_agent_removal_products | offboard.msp.offboard_agent_scope(catalog, 'linux') }}"
  register: found

- name: Agents | remove | one product, in layers, re-probed
  offboard.msp.agent_footprint:
    items: ["{{ one_item }}"]
    state: absent
    timeout: 300
"""

RETURN = r"""
items:
  description: One result per item, in input order (see the contract for the full shape).
  returned: always
  type: list
  elements: dict
  contains:
    key: {description: product or product:instance, type: str}
    found: {description: anything at all (named or derived) exists, type: bool}
    footprint: {description: what exists; derived entries carry derived_from, type: dict}
    uninstaller: {description: the catalog uninstaller that would run (program and needs_secret), type: dict}
    refused: {description: paths refused by the protected-path check, type: list}
    removal: {description: with state=absent - attempts, method, remaining, verified_absent, type: dict}
os:
  description: the OS whose specs were used, C(linux) or C(macos)
  returned: always
  type: str
ansible_facts:
  description: with O(os_facts), C(os_family) and C(system) where they could be told (see O(os_facts))
  returned: when known
  type: dict
"""

import contextlib
import os
import platform
import plistlib
import re
import shutil
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.offboard_paths import PROTECTED, safe_path  # noqa: F401 (PROTECTED: tests)

SHELLS = {"sh", "bash", "dash", "zsh", "python", "python3", "perl", "mono", "java"}
CRON_DIRS = ("/etc/cron.d", "/var/spool/cron/crontabs", "/var/spool/cron", "/usr/lib/cron/tabs")
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
UNIT_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecReload", "WorkingDirectory")
LAUNCHD_DIRS = ("/Library/LaunchDaemons", "/Library/LaunchAgents")
FOOTPRINT_KEYS = ("packages", "services", "processes", "paths", "startup", "kernel_modules")


# os-release ID -> the os_family setup reports (ansible.module_utils.facts.system.distribution: its
# distribution name for that ID, looked up in OS_FAMILY_MAP). Only IDs whose mapping is certain; any
# other distribution gets no facts from here, and the caller runs setup.
OS_FAMILY = {
    "debian": "Debian",
    "ubuntu": "Debian",
    "raspbian": "Debian",
    "devuan": "Debian",
    "kali": "Debian",
    "rhel": "RedHat",
    "centos": "RedHat",
    "fedora": "RedHat",
    "rocky": "RedHat",
    "almalinux": "RedHat",
    "ol": "RedHat",
    "amzn": "RedHat",
    "sles": "Suse",
    "sled": "Suse",
    "opensuse-leap": "Suse",
    "opensuse-tumbleweed": "Suse",
    "arch": "Archlinux",
    "manjaro": "Archlinux",
    "alpine": "Alpine",
    "gentoo": "Gentoo",
}


def os_release_id(path="/etc/os-release"):
    """The ID= of os-release, lower-case and unquoted ('' when there is none)."""
    for name in (path, "/usr/lib/os-release"):
        try:
            with open(name, encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("ID="):
                        return line[3:].strip().strip("\"'").lower()
        except OSError:
            continue
    return ""


def host_os_facts(system=None, release_id=None):
    """{'os_family', 'system'} as setup would report them, or {} where that is not certain."""
    system = system or platform.system()
    if system == "Darwin":
        return {"os_family": "Darwin", "system": "Darwin"}
    if system != "Linux":
        return {}
    family = OS_FAMILY.get(os_release_id() if release_id is None else release_id)
    return {"os_family": family, "system": "Linux"} if family else {}


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


def reference_re(roots):
    """A regex that finds any of the roots in text, as a whole path (not /opt/foo in /opt/foobar)."""
    roots = sorted({r.rstrip("/") for r in roots if r and r.rstrip("/")}, key=len, reverse=True)
    if not roots:
        return None
    return re.compile(r"(?:" + "|".join(re.escape(r) for r in roots) + r")(?=[/\s\"';:&|)]|$)")


def read_text(path, limit=1 << 20):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return ""


def empty_footprint():
    return {k: [] for k in FOOTPRINT_KEYS} | {"registry": [], "uninstall_entries": []}


def is_empty(footprint):
    return not any(footprint.get(k) for k in FOOTPRINT_KEYS)


class Host:
    """Read-only views of one host, cached per probe round (a round = one discovery of all items)."""

    def __init__(self, module):
        self.module = module
        self.system = platform.system()
        self.reset()

    def reset(self):
        self._procs = None
        self._units = None
        self._initd = None
        self._cron = None
        self._rclocal = None
        self._launchd = None

    def run(self, argv, timeout=None, env=None):
        """(rc, out, err); rc None when it ran out of time (its process group is killed)."""
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "", "timed out"
        except OSError as exc:
            return 127, "", str(exc)
        return proc.returncode, proc.stdout, proc.stderr

    # packages ------------------------------------------------------------------------------------
    def packages(self, names):
        """Installed packages among names, one package-manager call for all of them."""
        names = sorted(set(names))
        if not names:
            return {}
        found = {}
        if shutil.which("dpkg-query"):
            _, out, _ = self.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Version}\n", "--", *names])
            for line in out.splitlines():
                parts = line.split("\t")
                if len(parts) == 3:
                    status = parts[1].split()[-1] if parts[1].split() else ""
                    if status not in ("not-installed", ""):
                        found[parts[0]] = {"name": parts[0], "version": parts[2], "manager": "dpkg"}
        elif shutil.which("rpm"):
            _, out, _ = self.run(["rpm", "-q", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\n", *names])
            for line in out.splitlines():
                name, _, version = line.partition("\t")
                if version:
                    found[name] = {"name": name, "version": version, "manager": "rpm"}
        elif self.system == "Darwin" and shutil.which("pkgutil"):
            for name in names:
                rc, out, _ = self.run(["pkgutil", "--pkg-info", name])
                if rc == 0:
                    version = next(
                        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("version:")),
                        "",
                    )
                    found[name] = {"name": name, "version": version, "manager": "pkgutil"}
        return found

    def owners(self, paths):
        """Packages owning any of the (existing) paths: {package: path it owns}."""
        paths = sorted({p for p in paths if p and os.path.lexists(p)})
        owners = {}
        if not paths:
            return owners
        if shutil.which("dpkg-query"):
            _, out, _ = self.run(["dpkg-query", "-S", "--", *paths])
            for line in out.splitlines():
                pkgs, sep, path = line.rpartition(": ")
                # A folder several packages share (more than a vendor package and its companion) is a
                # system folder, not evidence.
                if sep and path.strip() in paths and len(pkgs.split(",")) <= 2:
                    for pkg in pkgs.split(","):
                        owners.setdefault(pkg.strip().split(":")[0], path.strip())
        elif shutil.which("rpm"):
            for path in paths:
                rc, out, _ = self.run(["rpm", "-qf", "--qf", "%{NAME}\n", path])
                for name in out.split() if rc == 0 else []:
                    owners.setdefault(name, path)
        elif self.system == "Darwin" and shutil.which("pkgutil"):
            for path in paths:
                rc, out, _ = self.run(["pkgutil", "--file-info", path])
                for line in out.splitlines() if rc == 0 else []:
                    if line.startswith("pkgid:"):
                        owners.setdefault(line.split(":", 1)[1].strip(), path)
        return owners

    # systemd -------------------------------------------------------------------------------------
    def unit_files(self):
        """{unit name: (path, text)} of the unit files on disk (first directory wins, as in systemd)."""
        if self._units is None:
            self._units = {}
            for folder in UNIT_DIRS:
                if not os.path.isdir(folder):
                    continue
                for name in sorted(os.listdir(folder)):
                    path = os.path.join(folder, name)
                    if name in self._units or not name.endswith((".service", ".timer", ".socket")):
                        continue
                    if os.path.islink(path) and os.readlink(path) == "/dev/null":
                        continue
                    if os.path.isfile(path):
                        self._units[name] = (path, read_text(path, 1 << 16))
        return self._units

    def unit_states(self, names):
        """systemd's view of the units: {name: {name, load, active, enabled, path}} for the known ones."""
        names = sorted(set(names))
        if not names or not shutil.which("systemctl"):
            return {}
        _rc, out, _ = self.run(
            [
                "systemctl",
                "show",
                "--property=Id,LoadState,ActiveState,UnitFileState,FragmentPath",
                "--",
                *names,
            ]
        )
        states = {}
        for name, block in zip(names, out.split("\n\n"), strict=False):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if props.get("LoadState") in (None, "", "not-found", "masked"):
                continue
            states[name] = {
                "name": name,
                "load": props.get("LoadState"),
                "active": props.get("ActiveState"),
                "enabled": props.get("UnitFileState"),
                "path": props.get("FragmentPath"),
            }
        return states

    # startup entries -----------------------------------------------------------------------------
    def initd(self):
        if self._initd is None:
            folder = "/etc/init.d"
            self._initd = {}
            if os.path.isdir(folder):
                for name in sorted(os.listdir(folder)):
                    path = os.path.join(folder, name)
                    if os.path.isfile(path) and not os.path.islink(path):
                        self._initd[path] = read_text(path, 1 << 16)
        return self._initd

    def rclocal(self):
        if self._rclocal is None:
            self._rclocal = read_text("/etc/rc.local").splitlines() if os.path.isfile("/etc/rc.local") else []
        return self._rclocal

    def cron(self):
        """[(file, line)] of every active cron line."""
        if self._cron is None:
            files = ["/etc/crontab"]
            for folder in CRON_DIRS:
                if os.path.isdir(folder):
                    files.extend(os.path.join(folder, f) for f in sorted(os.listdir(folder)))
            self._cron = [
                (path, line)
                for path in files
                if os.path.isfile(path)
                for line in read_text(path).splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
        return self._cron

    def launchd(self):
        """{plist path: (label, [program and arguments])} (macOS)."""
        if self._launchd is None:
            self._launchd = {}
            for folder in LAUNCHD_DIRS:
                if not os.path.isdir(folder):
                    continue
                for name in sorted(os.listdir(folder)):
                    path = os.path.join(folder, name)
                    try:
                        with open(path, "rb") as fh:
                            data = plistlib.load(fh)
                    except (OSError, ValueError, plistlib.InvalidFileException):
                        continue
                    if not isinstance(data, dict):
                        continue
                    argv = [str(data["Program"])] if data.get("Program") else []
                    argv += [str(a) for a in data.get("ProgramArguments") or []]
                    if data.get("WorkingDirectory"):
                        argv.append(str(data["WorkingDirectory"]))
                    self._launchd[path] = (str(data.get("Label") or name[:-6]), argv)
        return self._launchd

    # processes -----------------------------------------------------------------------------------
    def processes(self):
        if self._procs is not None:
            return self._procs
        procs = []
        me = {os.getpid(), os.getppid()}
        if os.path.isdir("/proc/self"):
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) in me:
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
                if not argv:
                    continue  # kernel threads
                procs.append(
                    {"pid": int(pid), "comm": comm, "argv": argv, "exe": exe.removesuffix(" (deleted)")}
                )
        else:  # macOS: ps is the portable reader
            rc, out, _ = self.run(["ps", "-axo", "pid=,comm="])
            for line in out.splitlines() if rc == 0 else []:
                pid, _, comm = line.strip().partition(" ")
                if pid.isdigit() and int(pid) not in me:
                    comm = comm.strip()
                    procs.append(
                        {"pid": int(pid), "comm": os.path.basename(comm), "argv": [comm], "exe": comm}
                    )
        self._procs = procs
        return procs

    def kernel_module_loaded(self, name):
        return os.path.isdir(f"/sys/module/{name}")


def program_paths(proc):
    """The program a process runs: its executable, or the script an interpreter runs."""
    paths = [p for p in (proc["exe"], proc["argv"][0] if proc["argv"] else "") if p]
    if proc["argv"] and os.path.basename(proc["argv"][0]) in SHELLS and len(proc["argv"]) > 1:
        args = [a for a in proc["argv"][1:] if not a.startswith("-")]
        paths.extend(args[:1])
    return paths


def vendor_roots(item):
    """The vendor's paths: where evidence must point for something to be derived from this product."""
    leftovers = item.get("leftovers") or {}
    roots = list(item.get("paths") or []) + list(leftovers.get("paths") or [])
    return [r for r in dict.fromkeys(roots) if isinstance(r, str) and r.startswith("/")]


def uninstaller_for(item):
    """The first catalog uninstaller whose program exists (never with its secret)."""
    for step in item.get("uninstall") or []:
        if step.get("command") and step.get("when_exists") and os.path.exists(step["when_exists"]):
            return {
                "program": step["command"][0],
                "needs_secret": bool(step.get("needs_secret")) or "{secret}" in repr(step["command"]),
                "timeout": step.get("timeout"),
                "_step": step,
            }
    return None


def discover(host, items, also=None, reset=True):
    """One probe round for all items: {key: footprint}. `also` adds names seen before (re-probe).

    reset=False reuses what the previous round read of the host (only while nothing was changed since)."""
    if reset:
        host.reset()
    also = also or {}
    named_pkgs = {}
    named_units = {}
    for item in items:
        before = also.get(item["key"]) or {}
        for name in list(item.get("packages") or []) + [p["name"] for p in before.get("packages", [])]:
            named_pkgs.setdefault(name, []).append(item["key"])
        for name in list(item.get("services") or []) + [s["name"] for s in before.get("services", [])]:
            named_units.setdefault(name, []).append(item["key"])
    results = {}
    derived_units = {}
    for item in items:
        key = item["key"]
        before = also.get(key) or {}
        roots = vendor_roots(item)
        ref = reference_re(roots)
        fp = empty_footprint()
        # paths: the vendor's own, the named unit files and launchd plists, DKMS sources
        leftovers = item.get("leftovers") or {}
        files = list(roots) + list(leftovers.get("units") or [])
        files += [j.get("plist") for j in item.get("launchd") or [] if j.get("plist")]
        files += list(before.get("paths", []))
        fp["paths"] = [p for p in dict.fromkeys(files) if isinstance(p, str) and os.path.lexists(p)]
        for mod in item.get("kernel_modules") or []:
            name = mod.get("name") if isinstance(mod, dict) else mod
            if not name:
                continue
            if host.kernel_module_loaded(name):
                fp["kernel_modules"].append({"name": name, "loaded": True})
            if os.path.isdir("/usr/src"):
                for entry in sorted(os.listdir("/usr/src")):
                    path = os.path.join("/usr/src", entry)
                    if entry.startswith(f"{name}-") and os.path.isdir(path) and path not in fp["paths"]:
                        fp["paths"].append(path)
        # units: derived from the unit files that run something from a vendor path
        mine = {}
        for name, (path, text) in host.unit_files().items() if ref else []:
            for line in text.splitlines():
                k, sep, value = line.strip().partition("=")
                if sep and k.strip() in UNIT_KEYS and ref.search(value):
                    mine[name] = {"path": path, "derived_from": f"{k.strip()}={value.strip()}"[:300]}
                    break
        derived_units[key] = mine
        # startup entries
        for path, text in host.initd().items() if ref else []:
            hit = ref.search(text)
            if hit:
                fp["startup"].append(
                    {
                        "kind": "initd",
                        "where": path,
                        "entry": os.path.basename(path),
                        "derived_from": f"references {hit.group(0)}",
                    }
                )
        for line in host.rclocal() if ref else []:
            if not line.lstrip().startswith("#") and ref.search(line):
                fp["startup"].append(
                    {
                        "kind": "rc.local",
                        "where": "/etc/rc.local",
                        "entry": line,
                        "derived_from": "references a vendor path",
                    }
                )
        patterns = [p for p in leftovers.get("cron") or [] if isinstance(p, str) and p]
        for path, line in host.cron():
            by_pattern = any(p in line for p in patterns)
            by_path = bool(ref and ref.search(line))
            if by_pattern or by_path:
                entry = {"kind": "cron", "where": path, "entry": line}
                if not by_pattern:
                    entry["derived_from"] = "references a vendor path"
                fp["startup"].append(entry)
        named_plists = {j.get("plist"): j.get("label") for j in item.get("launchd") or [] if j.get("plist")}
        for path, (label, argv) in host.launchd().items():
            hit = next((a for a in argv if ref and ref.search(a)), None) if path not in named_plists else None
            if path in named_plists or hit:
                entry = {"kind": "launchd", "where": path, "entry": label}
                if hit:
                    entry["derived_from"] = f"ProgramArguments {hit}"[:300]
                fp["startup"].append(entry)
        # processes: by path always; by name only for products without instances
        names = set(item.get("processes") or [])
        for proc in host.processes():
            programs = program_paths(proc)
            by_path = next((p for p in programs if within(p, roots)), None)
            by_name = not item.get("instance") and (
                any(os.path.basename(p) in names for p in programs)
                or any(n[:15] == proc["comm"] for n in names)
            )
            if by_path or by_name:
                entry = {"pid": proc["pid"], "name": proc["comm"], "exe": programs[-1] if programs else ""}
                if not by_name:
                    entry["derived_from"] = f"runs {by_path}"
                fp["processes"].append(entry)
        results[key] = fp
    # One call each for all items: named packages, derived owners, systemd's view of the units.
    installed = host.packages(named_pkgs)
    owned_files = {}
    for item in items:
        fp = results[item["key"]]
        for path in fp["paths"] + [u["path"] for u in derived_units[item["key"]].values()]:
            owned_files.setdefault(path, item["key"])
    owners = host.owners(owned_files) if owned_files else {}
    all_units = set(named_units) | {n for d in derived_units.values() for n in d}
    states = host.unit_states(all_units)
    for item in items:
        key = item["key"]
        fp = results[key]
        seen = set()
        for name, keys in named_pkgs.items():
            if key in keys and name in installed and name not in seen:
                fp["packages"].append(dict(installed[name]))
                seen.add(name)
        extra = {
            pkg: path for pkg, path in owners.items() if owned_files.get(path) == key and pkg not in seen
        }
        if extra:
            versions = host.packages(extra)
            for pkg, path in sorted(extra.items()):
                if pkg in versions:
                    fp["packages"].append({**versions[pkg], "derived_from": f"owns {path}"})
        units_seen = set()
        for name, keys in named_units.items():
            if key in keys and name not in units_seen:
                state = states.get(name)
                file_on_disk = host.unit_files().get(name)
                if state or file_on_disk:
                    fp["services"].append(
                        dict(state)
                        if state
                        else {
                            "name": name,
                            "load": "not-loaded",
                            "active": "inactive",
                            "enabled": "",
                            "path": file_on_disk[0],
                        }
                    )
                    units_seen.add(name)
        for name, info in sorted(derived_units[key].items()):
            if name in units_seen:
                continue
            state = states.get(name) or {
                "name": name,
                "load": "not-loaded",
                "active": "inactive",
                "enabled": "",
                "path": info["path"],
            }
            fp["services"].append({**state, "derived_from": info["derived_from"]})
    return results


def kill_tree(host, root_pids, grace):
    """SIGTERM, then SIGKILL after grace seconds, to the processes and all their descendants."""
    pids = set(root_pids)
    procs = host.processes() if os.path.isdir("/proc/self") else []
    parents = {}
    for proc in procs:
        stat = read_text(f"/proc/{proc['pid']}/stat", 4096)
        if ")" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            if len(fields) > 1 and fields[1].isdigit():
                parents[proc["pid"]] = int(fields[1])
    grown = True
    while grown:
        grown = False
        for pid, ppid in parents.items():
            if ppid in pids and pid not in pids:
                pids.add(pid)
                grown = True
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return sorted(pids)


def run_uninstaller(module, host, item, uninstaller, timeout):
    """Run the vendor's uninstaller, bounded; the whole tree is killed when it runs out of time."""
    step = uninstaller["_step"]
    secret = str((module.params["secrets"] or {}).get(item.get("product")) or "")
    argv = [str(a).replace("{secret}", secret) for a in step["command"]]
    limit = min(int(step.get("timeout") or timeout), timeout)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=step.get("chdir") or None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        return {
            "method": "vendor_uninstaller",
            "rc": None,
            "timed_out": False,
            "detail": f"{uninstaller['program']} could not start: {exc.strerror}",
        }
    try:
        rc = proc.wait(timeout=limit)
        timed_out = False
    except subprocess.TimeoutExpired:
        rc, timed_out = None, True
    # An uninstaller that hands over to a child is done when its whole session is; until the deadline.
    deadline = started + limit
    while True:
        host.reset()
        leftover = [p["pid"] for p in host.processes() if _session_of(p["pid"]) == proc.pid]
        if not leftover or timed_out or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    timed_out = timed_out or bool(leftover)
    if timed_out or leftover:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        kill_tree(host, [proc.pid, *leftover], 0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    seconds = int(time.monotonic() - started)
    detail = (
        f"{uninstaller['program']} timed out after {limit} s; its process tree was killed"
        if timed_out
        else f"{uninstaller['program']} exited with rc {rc} after {seconds} s"
    )
    host.reset()
    return {"method": "vendor_uninstaller", "rc": rc, "timed_out": timed_out, "detail": detail}


def _session_of(pid):
    stat = read_text(f"/proc/{pid}/stat", 4096)
    if ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[4]) if len(fields) > 4 and fields[4].lstrip("-").isdigit() else None


def run_package_manager(host, packages, timeout):
    names = sorted({p["name"] for p in packages})
    managers = {p["manager"] for p in packages}
    if "dpkg" in managers:
        tool = "apt-get" if shutil.which("apt-get") else "dpkg"
        argv = [tool, "-y", "purge", *names] if tool == "apt-get" else ["dpkg", "--purge", *names]
        env = {"DEBIAN_FRONTEND": "noninteractive"}
    elif "rpm" in managers:
        argv, env = ["rpm", "-e", "--allmatches", *names], None
    else:  # pkgutil: receipts only; the files go in the forced layer
        rcs = [host.run(["pkgutil", "--forget", n], timeout=timeout)[0] for n in names]
        rc = next((r for r in rcs if r not in (0,)), 0)
        return {
            "method": "package_manager",
            "rc": rc,
            "timed_out": None in rcs,
            "detail": f"pkgutil --forget {' '.join(names)}",
        }
    rc, _, err = host.run(argv, timeout=timeout, env=env)
    detail = " ".join(a for a in argv if a != "-y")
    if rc not in (0, None) and err.strip():
        detail += f": {err.strip().splitlines()[-1][:200]}"
    host.reset()
    return {"method": "package_manager", "rc": rc, "timed_out": rc is None, "detail": detail}


def forced(module, host, footprint):
    """Stop and disable units, delete unit files and startup entries, kill processes, delete paths."""
    done = []
    refused = []
    units = [s for s in footprint["services"]]
    if units and shutil.which("systemctl"):
        rc, _, _ = host.run(["systemctl", "disable", "--now", "--", *[u["name"] for u in units]], timeout=60)
        if rc != 0:  # one unit systemd cannot disable must not keep the others running
            for unit in units:
                host.run(["systemctl", "disable", "--now", "--", unit["name"]], timeout=60)
        done.append(f"stopped and disabled {', '.join(u['name'] for u in units)}")
    for entry in footprint["startup"]:
        if entry["kind"] == "launchd" and shutil.which("launchctl"):
            host.run(["launchctl", "bootout", f"system/{entry['entry']}"], timeout=30)
    for mod in footprint["kernel_modules"]:
        rc, _, _ = host.run(["modprobe", "-r", mod["name"]], timeout=60)
        done.append(f"modprobe -r {mod['name']} (rc {rc})")
    pids = [p["pid"] for p in footprint["processes"]]
    if pids:
        kill_tree(host, pids, module.params["kill_timeout"])
        done.append(f"killed {', '.join(sorted({p['name'] for p in footprint['processes']}))}")
    targets = [u["path"] for u in units if u.get("path") and u.get("derived_from")]
    targets += [u["path"] for u in units if u.get("path") and within(u["path"], UNIT_DIRS)]
    targets += [e["where"] for e in footprint["startup"] if e["kind"] in ("initd", "launchd")]
    if module.params["remove_leftovers"]:
        targets += footprint["paths"]
    else:
        targets += [p for p in footprint["paths"] if within(p, UNIT_DIRS) or within(p, LAUNCHD_DIRS)]
    for entry in footprint["startup"]:
        if entry["kind"] == "initd" and shutil.which("update-rc.d"):
            host.run(["update-rc.d", "-f", entry["entry"], "remove"], timeout=60)
    for path in dict.fromkeys(targets):
        if not os.path.lexists(path):
            continue
        if not safe_path(path):
            refused.append(path)
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            done.append(f"deleted {path}")
        except OSError as exc:
            done.append(f"could not delete {path}: {exc.strerror}")
    lines = {}
    for entry in footprint["startup"]:
        if entry["kind"] in ("cron", "rc.local"):
            lines.setdefault(entry["where"], set()).add(entry["entry"])
    for path, drop in lines.items():
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                old = fh.read().splitlines(keepends=True)
            kept = [ln for ln in old if ln.rstrip("\n") not in drop]
            if kept != old:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.writelines(kept)
                done.append(f"removed {len(old) - len(kept)} line(s) from {path}")
        except OSError as exc:
            done.append(f"could not edit {path}: {exc.strerror}")
    if shutil.which("systemctl") and (units or any(within(t, UNIT_DIRS) for t in targets)):
        host.run(["systemctl", "daemon-reload"], timeout=60)
        host.run(["systemctl", "reset-failed"], timeout=60)
    host.reset()
    return {"method": "forced", "rc": None, "timed_out": False, "detail": "; ".join(done)[:2000]}, refused


def remove(module, host, item, footprint):
    """Layered removal of one product; returns the `removal` result."""
    timeout = module.params["timeout"]
    attempts = []
    refused = []
    method = None
    current = footprint

    def reprobe():
        return discover(host, [item], also={item["key"]: footprint})[item["key"]]

    uninstaller = uninstaller_for(item)
    if uninstaller is not None:
        attempts.append(run_uninstaller(module, host, item, uninstaller, timeout))
        current = reprobe()
        method = "vendor_uninstaller" if is_empty(current) else None
    if method is None and current["packages"]:
        attempts.append(run_package_manager(host, current["packages"], timeout))
        current = reprobe()
        method = "package_manager" if is_empty(current) else None
    if method is None and not is_empty(current):
        attempt, refused = forced(module, host, current)
        attempts.append(attempt)
        current = reprobe()
        method = "forced" if is_empty(current) else None
    return {
        "attempts": attempts,
        "method": method,
        "remaining": current,
        "verified_absent": is_empty(current),
    }, refused


def public(uninstaller):
    return None if uninstaller is None else {k: v for k, v in uninstaller.items() if not k.startswith("_")}


def main():
    module = AnsibleModule(
        argument_spec={
            "items": {"type": "list", "elements": "dict", "required": True},
            "state": {"type": "str", "choices": ["query", "absent"], "default": "query"},
            "timeout": {"type": "int", "default": 300},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "remove_leftovers": {"type": "bool", "default": True},
            "kill_timeout": {"type": "int", "default": 5},
            "macos_items": {"type": "list", "elements": "dict"},
            "groups": {"type": "list", "elements": "int"},
            "macos_groups": {"type": "list", "elements": "int"},
            "os_facts": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    macos = platform.system() == "Darwin"
    items = module.params["items"]
    groups = module.params["groups"]
    if macos and module.params["macos_items"] is not None:
        items = module.params["macos_items"]
        groups = module.params["macos_groups"]
    for item in items:
        if not isinstance(item, dict) or not item.get("key"):
            module.fail_json(msg=f"every item needs a 'key' (built by offboard_agent_scope); got {item!r}")
    groups = list(groups or [len(items)])
    if sum(groups) != len(items) or any(n < 0 for n in groups):
        module.fail_json(msg=f"groups {groups} do not partition the {len(items)} items")
    if module.params["state"] == "absent" and len(groups) > 1:
        module.fail_json(msg="groups are for state=query (a removal handles one catalog's items)")
    host = Host(module)
    # One round per group (what separate calls would find: keys and owners are per catalog), the host
    # read once: nothing changes between the rounds of a query.
    footprints = []
    start = 0
    for size in groups:
        chunk = items[start : start + size]
        found = discover(host, chunk, reset=start == 0)
        footprints += [found[item["key"]] for item in chunk]
        start += size
    results = []
    changed = False
    for index, item in enumerate(items):
        fp = footprints[index]
        result = {
            "key": item["key"],
            "product": item.get("product"),
            "instance": item.get("instance"),
            "category": item.get("category"),
            "name": item.get("name"),
            "found": not is_empty(fp),
            "footprint": fp,
            "uninstaller": public(uninstaller_for(item)),
            "refused": [p for p in fp["paths"] if not safe_path(p)],
        }
        if module.params["state"] == "absent" and result["found"]:
            changed = True
            if module.check_mode:
                result["removal"] = {
                    "attempts": [],
                    "method": None,
                    "remaining": fp,
                    "verified_absent": False,
                }
            else:
                result["removal"], refused = remove(module, host, item, fp)
                result["refused"] = sorted(set(result["refused"]) | set(refused))
        results.append(result)
    extra = {"os": "macos" if macos else "linux"}
    if module.params["os_facts"]:
        facts = host_os_facts()
        if facts:
            extra["ansible_facts"] = facts
    module.exit_json(changed=changed, items=results, **extra)


if __name__ == "__main__":
    main()
