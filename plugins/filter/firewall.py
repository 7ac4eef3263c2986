# Copyright: the offboard project contributors
# Apache-2.0
"""Filters of the firewall_reset role: backups, record items, and the FortiGate / Cisco IOS removal plans.

The FortiGate plan reads the CMDB tables as fortinet.fortios' fortios_configuration_fact returns them
(system/admin: name, trusthost1..10 "a.b.c.d m.m.m.m"; system.snmp/community: id, name, hosts[].ip
"a.b.c.d m.m.m.m"; log.syslogd/setting: status, server; system/netflow: collectors[].collector_ip (7.2+)
or collector_ip; vpn.ipsec/phase1-interface: name, remote_gw) - FortiOS REST API reference (CMDB).
The IOS plan reads `show running-config` text (Cisco IOS configuration guides: username, snmp-server
community ... <acl>, snmp-server host, logging host, ip flow-export destination, flow exporter
destination, crypto isakmp key ... address, crypto map peer, access-list / ip access-list entries).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ansible.errors import AnsibleFilterError


def _nets(values: list[str]) -> list[Any]:
    try:
        return [ipaddress.ip_network(str(v), strict=False) for v in values or []]
    except ValueError as exc:
        raise AnsibleFilterError(f"bad MSP network: {exc}") from None


def offboard_bad_networks(values: list[Any]) -> list[str]:
    """Entries that are not an address or CIDR network."""
    bad = []
    for value in values or []:
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            bad.append(str(value))
    return bad


def _inside(text: str, msp: list[Any]) -> bool:
    """An address, CIDR, or 'address mask' string inside one of the MSP's networks."""
    text = str(text).strip()
    if not text:
        return False
    parts = text.split()
    try:
        if len(parts) == 2 and "." in parts[1]:
            net = ipaddress.ip_network(f"{parts[0]}/{parts[1]}", strict=False)
        else:
            net = ipaddress.ip_network(parts[0], strict=False)
    except ValueError:
        return False
    if net.prefixlen == 0:  # 0.0.0.0 0.0.0.0 means "any" (an unset trusthost), never the MSP's
        return False
    return any(net.version == m.version and net.subnet_of(m) for m in msp)


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", path.strip("/")) or "root"


def firewall_backups(nft: dict, file_results: list[dict], accounts: list[str], passwd: dict) -> list[dict]:
    """[{name, content}] to store as the pre-change backup (file contents arrive redacted)."""
    out = [
        {"name": "nftables.rules", "content": nft.get("ruleset_before", "")},
        {"name": "nftables.json", "content": nft.get("ruleset_json_before", "")},
    ]
    lines = []
    for name in accounts or []:
        fields = list(passwd.get(name) or [])
        # getent passwd: password placeholder, uid, gid, gecos, home, shell: no hash is ever read here.
        lines.append(":".join([name, *[str(f) for f in fields]]))
    out.append({"name": "msp-accounts.txt", "content": "\n".join(lines) + ("\n" if lines else "")})
    for result in file_results or []:
        for path, content in sorted((result.get("backup") or {}).items()):
            out.append({"name": _slug(path), "content": content})
    return out


def firewall_items(
    nft_before: dict,
    nft_after: dict,
    files_before: list[dict],
    files_after: list[dict],
    accounts_before: list[str],
    accounts_after: list[str],
    accounts_listed: list[str],
) -> list[dict]:
    """One entry per kind of MSP access: {item, before, found, remaining, refused}."""
    items = []
    fb, fa = nft_before.get("found") or {}, (nft_after or {}).get("found") or {}
    count = sum(len(fb.get(k) or []) for k in ("rules", "sets", "elements", "tables"))
    items.append(
        {
            "item": "nftables",
            "before": {
                "rules": [
                    f"{r['table']}/{r['chain']} handle {r['handle']}: {r['comment'] or r['rule']}"
                    for r in fb.get("rules") or []
                ],
                "sets": [f"{s['table']}/{s['name']}" for s in fb.get("sets") or []],
                "elements": [
                    f"{e['table']}/{e['set']}: {len(e['elements'])}" for e in fb.get("elements") or []
                ],
                "tables": [f"{t['family']} {t['name']}" for t in fb.get("tables") or []],
            },
            "found": count > 0,
            "remaining": [str(x) for k in ("rules", "sets", "elements", "tables") for x in fa.get(k) or []],
            "refused": [
                f"{r['table']}/{r['chain']} handle {r['handle']}: {r['why']}"
                for r in nft_before.get("refused") or []
            ],
        }
    )
    after_by_item = {r.get("__firewall_reset_file", {}).get("item"): r for r in files_after or []}
    for result in files_before or []:
        spec = result.get("__firewall_reset_file") or {}
        matched = [
            {"path": f["path"], "lines": f["matched"], "whole_file": f["remove_file"]}
            for f in result.get("files") or []
            if f.get("matched")
        ]
        again = after_by_item.get(spec.get("item")) or {}
        items.append(
            {
                "item": spec.get("item", "config"),
                "before": {"files": matched},
                "found": bool(matched),
                "remaining": [
                    f"{r['path']}: {len(r['matched'])} line(s)" for r in again.get("remaining") or []
                ]
                if again
                else [],
                "refused": [f"{r['path']}: {r['line']}" for r in result.get("refused") or []],
            }
        )
    for name in accounts_listed or []:
        items.append(
            {
                "item": f"account:{name}",
                "before": {"present": name in (accounts_before or [])},
                "found": name in (accounts_before or []),
                "remaining": [name] if name in (accounts_after or []) else [],
                "refused": [],
            }
        )
    return items


# --- FortiGate --------------------------------------------------------------------------------


def _fortios_rows(fact: Any) -> list[dict]:
    if isinstance(fact, dict):
        fact = fact.get("meta", fact)
        if isinstance(fact, dict):
            fact = fact.get("results", [])
    return [r for r in fact or [] if isinstance(r, dict)]


def fortios_msp_plan(
    admins: Any,
    communities: Any,
    syslogd: Any,
    netflow: Any,
    phase1: Any,
    networks: list[str],
    accounts: list[str],
) -> dict:
    """What to change on a FortiGate: admins to delete, trusthosts to clear, SNMP communities, syslog,
    NetFlow collectors and IPsec phase1 interfaces that point at the MSP."""
    msp = _nets(networks)
    plan: dict[str, Any] = {
        "admins": [],
        "trusthosts": [],
        "snmp": [],
        "syslog": [],
        "netflow": [],
        "vpn": [],
    }
    for row in _fortios_rows(admins):
        name = row.get("name")
        if name in (accounts or []):
            plan["admins"].append(name)
            continue
        slots = {k: v for k, v in row.items() if re.fullmatch(r"(ip6_)?trusthost\d+", k) and _inside(v, msp)}
        if slots:
            # Unset slots are 0.0.0.0 0.0.0.0 (IPv4) and ::/0 (IPv6).
            cleared = {k: ("::/0" if k.startswith("ip6_") else "0.0.0.0 0.0.0.0") for k in slots}
            plan["trusthosts"].append({"name": name, "clear": cleared})
    for row in _fortios_rows(communities):
        hosts = [h.get("ip", "") for h in row.get("hosts") or []] + [
            h.get("ipv6", "") for h in row.get("hosts6") or []
        ]
        if hosts and all(_inside(h, msp) for h in hosts if h):
            plan["snmp"].append({"id": row.get("id"), "name": row.get("name")})
        elif any(_inside(h, msp) for h in hosts):
            plan.setdefault("refused", []).append(
                f"snmp community id {row.get('id')}: hosts mix MSP and other addresses; edit by hand"
            )
    for row in _fortios_rows(syslogd):
        if row.get("status") == "enable" and _inside(row.get("server", ""), msp):
            plan["syslog"].append({"server": row.get("server")})
    for row in _fortios_rows(netflow):
        collectors = [c.get("collector_ip", "") for c in row.get("collectors") or []]
        collectors += [row["collector_ip"]] if row.get("collector_ip") else []
        plan["netflow"] += [c for c in collectors if _inside(c, msp)]
    for row in _fortios_rows(phase1):
        if _inside(row.get("remote_gw", ""), msp):
            plan["vpn"].append(row.get("name"))
    plan["empty"] = not any(plan[k] for k in ("admins", "trusthosts", "snmp", "syslog", "netflow", "vpn"))
    return plan


def fortios_items(plan: dict, left: dict) -> list[dict]:
    """Record items (as firewall_items) from the plan before and the plan re-computed after the change."""
    items = []
    for key in ("admins", "trusthosts", "snmp", "syslog", "vpn"):
        items.append(
            {
                "item": key,
                "before": {key: plan.get(key) or []},
                "found": bool(plan.get(key)),
                "remaining": [str(x) for x in (left or {}).get(key) or []],
                "refused": list(plan.get("refused") or []) if key == "snmp" else [],
            }
        )
    items.append(
        {
            "item": "netflow",
            "before": {"collectors": plan.get("netflow") or []},
            "found": bool(plan.get("netflow")),
            "remaining": [],
            "refused": [
                f"NetFlow collector {c}: edit system netflow by hand "
                "(its table differs between FortiOS versions)"
                for c in plan.get("netflow") or []
            ],
        }
    )
    return items


_FGT_ENC = re.compile(r"(\bset \S+ )ENC \S+")
_FGT_SECRET_SET = re.compile(
    r"^(\s*set (?:password|passwd|psksecret|secret|key|private-key|passphrase)\s+)\S.*$"
)


def fortios_redact(config: str) -> str:
    """FortiOS configuration text with encrypted values, secrets and SNMP community names redacted."""
    out, in_community = [], False
    for line in str(config).split("\n"):
        stripped = line.strip()
        if stripped.startswith("config system snmp community"):
            in_community = True
        elif stripped.startswith("config ") and in_community and not stripped.startswith("config hosts"):
            in_community = False
        line = _FGT_ENC.sub(r"\1ENC <redacted>", line)
        line = _FGT_SECRET_SET.sub(r"\1<redacted>", line)
        if in_community and stripped.startswith("set name "):
            line = line[: line.index("set name ") + 9] + "<redacted>"
        out.append(line)
    return "\n".join(out)


# --- Cisco IOS --------------------------------------------------------------------------------

_IOS_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^snmp-server host (\S+)"), "snmp"),
    (re.compile(r"^logging (?:host )?(\d+\.\d+\.\d+\.\d+)"), "syslog"),
    (re.compile(r"^ip flow-export destination (\S+)"), "netflow"),
    (re.compile(r"^crypto isakmp key \S+ address (\S+)"), "vpn"),
    (re.compile(r"^ntp server (\S+)"), "ntp"),
]


def _ios_secret_free(line: str) -> str:
    line = re.sub(r"^(username \S+ .*?(?:secret|password))\s+(\d+\s+)?\S+", r"\1 <redacted>", line)
    line = re.sub(r"^(snmp-server community) \S+", r"\1 <redacted>", line)
    line = re.sub(
        r"^(snmp-server host \S+(?: (?:traps|informs))?(?: version \S+)?) \S+", r"\1 <redacted>", line
    )
    return re.sub(r"^(crypto isakmp key) \S+", r"\1 <redacted>", line)


def ios_redact(config: str) -> str:
    """Running configuration with passwords, secrets, communities and pre-shared keys redacted."""
    return "\n".join(_ios_secret_free(line) for line in str(config).split("\n"))


def ios_msp_plan(config: str, networks: list[str], accounts: list[str]) -> dict:
    """`no` commands that remove the MSP's access from an IOS running configuration.

    Global lines only (the ones IOS removes with a plain `no <line>`); an MSP address inside an access
    list or a crypto map is reported in `manual` with its context, because removing one entry of those
    changes what the remaining entries mean.
    """
    msp = _nets(networks)
    commands, items, manual = [], [], []
    acl_of_community: dict[str, str] = {}
    context = ""
    lines = str(config).split("\n")
    acls_with_msp: set[str] = set()
    for raw in lines:
        if not raw.startswith(" "):
            context = raw.strip()
        m = re.match(r"^\s*(?:\d+\s+)?(?:permit|deny)\s+(.*)$", raw)
        addr_hits = [t for t in re.findall(r"\d+\.\d+\.\d+\.\d+", raw) if _inside(t, msp)]
        if addr_hits and (m or context.startswith(("ip access-list", "access-list"))):
            name = context.split()[-1] if context.startswith("ip access-list") else raw.split()[1]
            acls_with_msp.add(name)
    for raw in lines:
        line = raw.rstrip()
        if line.startswith(" "):
            continue
        user = re.match(r"^username (\S+)", line)
        if user and user.group(1) in (accounts or []):
            commands.append(f"no username {user.group(1)}")
            items.append({"kind": "account", "line": _ios_secret_free(line)})
            continue
        comm = re.match(r"^snmp-server community \S+ (?:view \S+ )?(?:RO|RW|ro|rw)?\s*(\S+)?", line)
        if comm and comm.group(1):
            acl_of_community[line] = comm.group(1)
            if comm.group(1) in acls_with_msp:
                commands.append("no " + line)
                items.append({"kind": "snmp", "line": _ios_secret_free(line)})
            continue
        for pattern, kind in _IOS_RULES:
            hit = pattern.match(line)
            if hit and _inside(hit.group(1), msp):
                commands.append("no " + line)
                items.append({"kind": kind, "line": _ios_secret_free(line)})
                break
        if re.match(r"^access-list \d+ ", line) and any(
            _inside(t, msp) for t in re.findall(r"\d+\.\d+\.\d+\.\d+", line)
        ):
            manual.append(f"{line}: access-list entry names an MSP address (edit the list by hand)")
    for name in sorted(acls_with_msp):
        if not any(acl == name for acl in acl_of_community.values()):
            manual.append(f"access list {name} names an MSP address (vty access-class or interface ACL?)")
    return {"commands": commands, "items": items, "manual": manual, "empty": not commands}


def ios_items(plan: dict, left: dict) -> list[dict]:
    """Record items per kind (account, snmp, syslog, netflow, vpn, ntp, acl) from the plans before/after."""
    kinds = ("account", "snmp", "syslog", "netflow", "vpn", "ntp")
    items = []
    for kind in kinds:
        before = [i["line"] for i in plan.get("items") or [] if i["kind"] == kind]
        after = [i["line"] for i in (left or {}).get("items") or [] if i["kind"] == kind]
        items.append(
            {
                "item": kind,
                "before": {"lines": before},
                "found": bool(before),
                "remaining": after,
                "refused": [],
            }
        )
    items.append(
        {
            "item": "acl",
            "before": {"manual": plan.get("manual") or []},
            "found": False,
            "remaining": [],
            "refused": list(plan.get("manual") or []),
        }
    )
    return items


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "offboard_bad_networks": offboard_bad_networks,
            "firewall_backups": firewall_backups,
            "firewall_items": firewall_items,
            "fortios_msp_plan": fortios_msp_plan,
            "fortios_items": fortios_items,
            "fortios_redact": fortios_redact,
            "ios_msp_plan": ios_msp_plan,
            "ios_redact": ios_redact,
            "ios_items": ios_items,
        }
