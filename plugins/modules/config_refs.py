#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Module: find and remove configuration that points at the MSP (SNMP, syslog, VPN) in text files."""

from __future__ import annotations

DOCUMENTATION = r"""
module: config_refs
short_description: Remove lines (or whole VPN configs) that point at the MSP's addresses
description:
  - C(kind=lines) (snmpd.conf, rsyslog.conf and rsyslog.d, syslog-ng, NetFlow exporters...) - every line that
    is not a comment and names an address inside C(msp_networks) (as a word, host:port, @host, target="host")
    is the MSP's. The line is removed; a file left with nothing but comments and blank lines is removed.
    A line that opens a multi-line block (an unclosed parenthesis or brace) is not touched and is
    reported in C(refused) - removing one line of a block would break the file.
  - C(kind=wireguard) (/etc/wireguard/*.conf) and C(kind=ipsec) (swanctl, ipsec.conf) - a file whose Endpoint,
    remote_addrs, right or remote address lies inside C(msp_networks) is the MSP's tunnel, removed whole.
  - Returns a backup of every file it read with secret values redacted (SNMP communities, WireGuard keys,
    pre-shared keys) and the sha256 of each original, so the evidence proves what was backed up without
    holding a secret. C(state=discovered) only reports; check mode changes nothing.
options:
  paths: {description: Files or globs to inspect., type: list, elements: str, required: true}
  kind: {description: How to read them., type: str, choices: [lines, wireguard, ipsec], default: lines}
  msp_networks: {description: The MSP's networks (CIDR)., type: list, elements: str, required: true}
  state: {description: What to do., type: str, choices: [discovered, absent], default: discovered}
"""

EXAMPLES = r"""
- name: Firewall | remove | SNMP and syslog targets of the MSP
  offboard.msp.config_refs:
    paths: [/etc/snmp/snmpd.conf, /etc/rsyslog.conf, /etc/rsyslog.d/*.conf]
    msp_networks: [203.0.113.0/24]
    state: absent
"""

RETURN = r"""
files:
  description: Per file - path, sha256 of the original, matched lines (redacted), removed (whole file).
  type: list
backup: {description: Redacted copy of every file read, by path., type: dict}
refused: {description: Lines not removed (multi-line blocks)., type: list}
remaining: {description: MSP references found after the change., type: list}
"""

import glob
import hashlib
import ipaddress
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

_TOKEN_RE = re.compile(r"[0-9A-Fa-f:.]+(?:/\d{1,3})?")
# Directives whose next word (or, for trapsink kinds, the word after the host) is an SNMP community.
_COMMUNITY_FIRST = ("rocommunity", "rwcommunity", "rocommunity6", "rwcommunity6")
_COMMUNITY_AFTER_HOST = ("trapsink", "trap2sink", "informsink")
_SECRET_KEYS = re.compile(
    r"^(\s*(?:PrivateKey|PresharedKey|secret|psk|leftpsk|rightpsk)\s*[=:]\s*)(\S.*)$", re.IGNORECASE
)


def networks(values: list[str]) -> list[Any]:
    return [ipaddress.ip_network(str(v), strict=False) for v in values]


def addresses_in(text: str) -> list[Any]:
    found = []
    for token in _TOKEN_RE.findall(text):
        candidates = [token]
        if token.count(":") == 1:  # host:port
            candidates.append(token.split(":", 1)[0])
        for cand in candidates:
            try:
                found.append(ipaddress.ip_network(cand, strict=False))
                break
            except ValueError:
                continue
    return found


def points_at_msp(text: str, msp: list[Any]) -> bool:
    return any(a.version == m.version and a.subnet_of(m) for a in addresses_in(text) for m in msp)


def redact_line(line: str) -> str:
    """The line with SNMP communities and key material replaced by <redacted>."""
    m = _SECRET_KEYS.match(line)
    if m:
        return m.group(1) + "<redacted>"
    words = line.split()
    if not words or words[0].startswith("#"):
        return line
    key = words[0].lower()
    if key in _COMMUNITY_FIRST and len(words) > 1:
        words[1] = "<redacted>"
    elif key in _COMMUNITY_AFTER_HOST and len(words) > 2:
        words[2] = "<redacted>"
    elif key == "com2sec" and len(words) > 3:
        words[-1] = "<redacted>"
    else:
        return line
    return " ".join(words)


def redact(text: str) -> str:
    return "\n".join(redact_line(line) for line in text.split("\n"))


def opens_block(line: str) -> bool:
    return line.count("(") > line.count(")") or line.count("{") > line.count("}")


def scan_lines(text: str, msp: list[Any]) -> tuple[list[int], list[int]]:
    """(line numbers to remove, line numbers refused), 0-based."""
    remove, refused = [], []
    for number, line in enumerate(text.split("\n")):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";", "//")):
            continue
        if points_at_msp(stripped, msp):
            (refused if opens_block(stripped) else remove).append(number)
    return remove, refused


def only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith(("#", ";", "//")) for ln in text.split("\n"))


_TUNNEL_KEYS = re.compile(
    r"^\s*(Endpoint|remote_addrs|right|rightsubnet|remote)\s*[=:]?\s*(.+)$", re.IGNORECASE
)


def tunnel_to_msp(text: str, msp: list[Any]) -> list[str]:
    """Lines naming the remote end of a tunnel inside the MSP's networks."""
    hits = []
    for line in text.split("\n"):
        m = _TUNNEL_KEYS.match(line)
        if m and points_at_msp(m.group(2), msp):
            hits.append(line.strip())
    return hits


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def inspect(path: str, text: str, kind: str, msp: list[Any]) -> dict:
    entry: dict[str, Any] = {"path": path, "sha256": sha256_text(text), "matched": [], "remove_file": False}
    if kind == "lines":
        remove, refused = scan_lines(text, msp)
        lines = text.split("\n")
        entry["matched"] = [redact_line(lines[n]).strip() for n in remove]
        entry["refused"] = [redact_line(lines[n]).strip() for n in refused]
        kept = [ln for n, ln in enumerate(lines) if n not in set(remove)]
        entry["new_text"] = "\n".join(kept)
        entry["remove_file"] = bool(remove) and only_comments(entry["new_text"])
    else:
        hits = tunnel_to_msp(text, msp)
        entry["matched"] = hits
        entry["refused"] = []
        entry["remove_file"] = bool(hits)
        entry["interface"] = os.path.splitext(os.path.basename(path))[0]
    return entry


def expand(paths: list[str]) -> list[str]:
    out: list[str] = []
    for pattern in paths:
        out.extend(sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern])
    return [p for p in dict.fromkeys(out) if os.path.isfile(p)]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "required": True},
            "kind": {"type": "str", "choices": ["lines", "wireguard", "ipsec"], "default": "lines"},
            "msp_networks": {"type": "list", "elements": "str", "required": True},
            "state": {"type": "str", "choices": ["discovered", "absent"], "default": "discovered"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        msp = networks(p["msp_networks"])
    except ValueError as exc:
        module.fail_json(msg=f"bad msp_networks: {exc}")
    files, backup, refused = [], {}, []
    for path in expand(p["paths"]):
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
        backup[path] = redact(text)
        entry = inspect(path, text, p["kind"], msp)
        refused += [
            {"path": path, "line": line, "why": "opens a multi-line block: edit by hand"}
            for line in entry["refused"]
        ]
        files.append(entry)
    changing = [f for f in files if f["matched"]]
    result: dict[str, Any] = {
        "changed": bool(changing) and p["state"] == "absent",
        "refused": refused,
        "backup": backup,
    }
    if p["state"] == "absent" and changing and not module.check_mode:
        for entry in changing:
            if entry["remove_file"]:
                os.unlink(entry["path"])
            else:
                mode = os.stat(entry["path"]).st_mode & 0o7777
                tmp = entry["path"] + ".offboard-tmp"
                with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as handle:
                    handle.write(entry["new_text"])
                os.chmod(tmp, mode)
                os.replace(tmp, entry["path"])
    result["files"] = [{k: v for k, v in f.items() if k != "new_text"} for f in files]
    remaining = []
    if p["state"] == "absent" and not module.check_mode:
        for path in expand([f["path"] for f in files]):
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                again = inspect(path, handle.read(), p["kind"], msp)
            if again["matched"]:
                remaining.append({"path": path, "matched": again["matched"]})
    else:
        remaining = [{"path": f["path"], "matched": f["matched"]} for f in changing]
    result["remaining"] = remaining
    module.exit_json(**result)


if __name__ == "__main__":
    main()
