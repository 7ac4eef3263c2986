#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Module: find and remove the departing MSP's rules, sets and tables from a live nftables ruleset."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nftables_access
short_description: Remove the MSP's management rules from nftables (by handle), or reset the ruleset
description:
  - Reads the live ruleset as JSON (C(nft -j list ruleset)) and classifies as the MSP's
    (1) whole tables named in C(tables), (2) rules whose comment matches C(comment_regex), (3) rules that
    match
    an address, prefix or range inside C(msp_networks), (4) rules that reference a named set all of whose
    elements are inside C(msp_networks) (the set goes too). A named set mixing MSP and client elements loses
    only the MSP's elements. A rule whose anonymous set mixes MSP and client addresses is not touched and is
    reported in C(refused) - removing it would cut the client's access too.
  - C(state=absent) deletes everything found in one atomic C(nft -f) transaction, by handle, re-reads the
    ruleset to verify, and writes the live ruleset to C(persist_path) so a reboot does not bring them back.
  - C(state=reset) (MSP-owned gear being retrieved) flushes the whole ruleset and writes an empty one to
    C(persist_path).
  - C(state=discovered) only reports. Check mode reports what would change and changes nothing.
options:
  state: {description: What to do., type: str, choices: [discovered, absent, reset], default: discovered}
  msp_networks: {description: The MSP's management networks (CIDR)., type: list, elements: str, default: []}
  comment_regex: {description: Rule comments that mark the MSP's rules., type: str}
  tables: {description: Whole tables that belong to the MSP., type: list, elements: str, default: []}
  persist_path:
    description: Ruleset file loaded at boot; empty to not persist.
    type: str
    default: /etc/nftables.conf
"""

EXAMPLES = r"""
- name: Firewall | remove | MSP rules from nftables
  offboard.msp.nftables_access:
    state: absent
    msp_networks: [203.0.113.0/24]
    comment_regex: "^msp-mgmt"
    tables: [msp_mgmt]
"""

RETURN = r"""
found:
  description: MSP items found before any change (rules, sets, elements, tables).
  type: dict
  returned: always
remaining:
  description: MSP items found after the change (empty when verified).
  type: dict
  returned: always
refused:
  description: Rules not removed because they mix MSP and client addresses.
  type: list
  returned: always
ruleset_before:
  description: The live ruleset (nft list ruleset) before any change.
  type: str
  returned: always
ruleset_json_before: {description: The live ruleset as JSON before any change., type: str, returned: always}
commands: {description: The nft commands run (or that would run in check mode)., type: list, returned: always}
"""

import ipaddress
import json
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: list[str]) -> list[Net]:
    return [ipaddress.ip_network(str(v), strict=False) for v in values]


def _as_network(value: Any) -> Net | None:
    """An address, prefix or range in nft JSON as a network (ranges: only when they are one network)."""
    try:
        if isinstance(value, str) and not value.startswith("@"):
            return ipaddress.ip_network(value, strict=False)
        if isinstance(value, dict) and "prefix" in value:
            return ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False)
        if isinstance(value, dict) and "range" in value:
            low, high = (ipaddress.ip_address(v) for v in value["range"])
            nets = list(ipaddress.summarize_address_range(low, high))
            return nets[0] if len(nets) == 1 else nets[0].supernet(new_prefix=max(0, nets[0].prefixlen - 1))
    except (ValueError, TypeError, KeyError):
        return None
    return None


def _addresses(value: Any) -> list[Any]:
    """Address-like values of a match's right side: plain, anonymous set, set element wrappers."""
    if isinstance(value, dict) and "set" in value:
        out: list[Any] = []
        for item in value["set"]:
            out.extend(_addresses(item))
        return out
    if isinstance(value, dict) and "elem" in value:
        return _addresses(value["elem"].get("val"))
    return [value]


def inside(net: Net, msp: list[Net]) -> bool:
    return any(net.version == m.version and net.subnet_of(m) for m in msp)


def classify_values(values: list[Any], msp: list[Net]) -> tuple[int, int]:
    """(MSP addresses, other addresses) among values."""
    ours = theirs = 0
    for value in values:
        net = _as_network(value)
        if net is None:
            continue
        if inside(net, msp):
            ours += 1
        else:
            theirs += 1
    return ours, theirs


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for sub in node.values():
            yield from _walk(sub)
    elif isinstance(node, list):
        for sub in node:
            yield from _walk(sub)


def _is_address_match(match: dict) -> bool:
    left = match.get("left") or {}
    payload = left.get("payload") if isinstance(left, dict) else None
    if isinstance(payload, dict):
        return payload.get("protocol") in ("ip", "ip6") and payload.get("field") in ("saddr", "daddr")
    ct = left.get("ct") if isinstance(left, dict) else None
    return isinstance(ct, dict) and ct.get("key") in ("saddr", "daddr", "ip saddr", "ip daddr")


def rule_text(rule: dict) -> str:
    """A short, secret-free description of a rule for records."""
    parts = []
    for expr in rule.get("expr", []):
        if "match" in expr:
            m = expr["match"]
            left = m.get("left")
            key = ""
            if isinstance(left, dict) and "payload" in left:
                key = f"{left['payload'].get('protocol')} {left['payload'].get('field')}"
            elif isinstance(left, dict) and "meta" in left:
                key = str(left["meta"].get("key"))
            right = m.get("right")
            parts.append(f"{key} {json.dumps(right, separators=(',', ':'))}".strip())
        else:
            parts.extend(k for k in expr if k in ("accept", "drop", "reject", "masquerade", "jump", "goto"))
    return " ".join(parts)


def classify(ruleset: dict, msp: list[Net], comment_re: re.Pattern | None, tables: list[str]) -> dict:
    """MSP items of a parsed `nft -j list ruleset`."""
    items = [i for i in ruleset.get("nftables", []) if isinstance(i, dict)]
    msp_tables = [i["table"] for i in items if "table" in i and i["table"]["name"] in tables]
    in_msp_table = {(t["family"], t["name"]) for t in msp_tables}
    sets: dict[tuple[str, str, str], dict] = {}
    for i in items:
        if "set" in i:
            s = i["set"]
            sets[(s["family"], s["table"], s["name"])] = s
    msp_sets, msp_elements = [], []
    for key, s in sets.items():
        if key[:2] in in_msp_table:
            continue
        elems = s.get("elem") or []
        values: list[Any] = []
        for e in elems:
            values.extend(_addresses(e))
        ours, theirs = classify_values(values, msp)
        if ours and not theirs:
            msp_sets.append(s)
        elif ours:
            msp_elements.append(
                {
                    "family": s["family"],
                    "table": s["table"],
                    "set": s["name"],
                    "elements": [v for v in values if (n := _as_network(v)) is not None and inside(n, msp)],
                }
            )
    msp_set_names = {(s["family"], s["table"], "@" + s["name"]) for s in msp_sets}
    rules, refused = [], []
    for i in items:
        if "rule" not in i:
            continue
        r = i["rule"]
        if (r["family"], r["table"]) in in_msp_table:
            continue
        reasons = []
        comment = r.get("comment")
        if comment_re is not None and isinstance(comment, str) and comment_re.search(comment):
            reasons.append(f"comment {comment!r}")
        mixed = False
        for node in _walk(r.get("expr", [])):
            match = node.get("match")
            if not isinstance(match, dict) or not _is_address_match(match):
                continue
            right = match.get("right")
            if isinstance(right, str) and (r["family"], r["table"], right) in msp_set_names:
                reasons.append(f"set {right}")
                continue
            ours, theirs = classify_values(_addresses(right), msp)
            if ours and theirs:
                mixed = True
            elif ours:
                reasons.append("MSP address")
        entry = {
            "family": r["family"],
            "table": r["table"],
            "chain": r["chain"],
            "handle": r["handle"],
            "comment": comment or "",
            "rule": rule_text(r),
            "reasons": sorted(set(reasons)),
        }
        if mixed:
            refused.append({**entry, "why": "an anonymous set mixes MSP and client addresses: edit by hand"})
        elif reasons:
            rules.append(entry)
    return {
        "tables": [{"family": t["family"], "name": t["name"]} for t in msp_tables],
        "rules": rules,
        "sets": [{"family": s["family"], "table": s["table"], "name": s["name"]} for s in msp_sets],
        "elements": msp_elements,
        "refused": refused,
    }


def _element_text(value: Any) -> str:
    net = _as_network(value)
    if net is None:
        return str(value)
    if isinstance(value, dict) and "range" in value:
        return f"{value['range'][0]}-{value['range'][1]}"
    return str(net) if net.num_addresses > 1 else str(net.network_address)


def removal_commands(found: dict) -> list[str]:
    """One nft batch: rules by handle first, then set elements, sets, whole tables."""
    cmds = [
        f"delete rule {r['family']} {r['table']} {r['chain']} handle {r['handle']}" for r in found["rules"]
    ]
    for e in found["elements"]:
        elems = ", ".join(_element_text(v) for v in e["elements"])
        cmds.append(f"delete element {e['family']} {e['table']} {e['set']} {{ {elems} }}")
    cmds += [f"delete set {s['family']} {s['table']} {s['name']}" for s in found["sets"]]
    cmds += [f"delete table {t['family']} {t['name']}" for t in found["tables"]]
    return cmds


def is_empty(found: dict) -> bool:
    return not (found["tables"] or found["rules"] or found["sets"] or found["elements"])


def count_rules(ruleset: dict) -> int:
    return sum(1 for i in ruleset.get("nftables", []) if isinstance(i, dict) and "rule" in i)


PERSIST_HEADER = (
    "#!/usr/sbin/nft -f\n# Written by offboard firewall_reset from the live ruleset.\nflush ruleset\n\n"
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["discovered", "absent", "reset"], "default": "discovered"},
            "msp_networks": {"type": "list", "elements": "str", "default": []},
            "comment_regex": {"type": "str"},
            "tables": {"type": "list", "elements": "str", "default": []},
            "persist_path": {"type": "str", "default": "/etc/nftables.conf"},
        },
        supports_check_mode=True,
    )
    p = module.params
    nft = module.get_bin_path("nft", required=True)
    try:
        msp = parse_networks(p["msp_networks"])
        comment_re = re.compile(p["comment_regex"]) if p["comment_regex"] else None
    except (ValueError, re.error) as exc:
        module.fail_json(msg=f"bad msp_networks or comment_regex: {exc}")

    def listing() -> tuple[dict, str, str]:
        rc, out, err = module.run_command([nft, "-j", "list", "ruleset"])
        if rc != 0:
            module.fail_json(msg=f"nft -j list ruleset failed: {err.strip()}")
        rc2, text, err2 = module.run_command([nft, "list", "ruleset"])
        if rc2 != 0:
            module.fail_json(msg=f"nft list ruleset failed: {err2.strip()}")
        return json.loads(out or '{"nftables": []}'), out, text

    ruleset, raw_json, text = listing()
    found = classify(ruleset, msp, comment_re, p["tables"])
    result: dict[str, Any] = {
        "changed": False,
        "found": {k: v for k, v in found.items() if k != "refused"},
        "refused": found["refused"],
        "ruleset_before": text,
        "ruleset_json_before": raw_json,
        "rules_before": count_rules(ruleset),
        "commands": [],
    }
    if p["state"] == "discovered":
        result["remaining"] = result["found"]
        module.exit_json(**result)
    if p["state"] == "reset":
        needed = count_rules(ruleset) > 0 or any(
            "table" in i for i in ruleset.get("nftables", []) if isinstance(i, dict)
        )
        result["commands"] = ["flush ruleset"] if needed else []
    else:
        result["commands"] = removal_commands(found)
    if not result["commands"]:
        result["remaining"] = result["found"] if p["state"] == "absent" else {}
        module.exit_json(**result)
    result["changed"] = True
    if module.check_mode:
        result["remaining"] = result["found"]
        module.exit_json(**result)
    rc, _out, err = module.run_command([nft, "-f", "-"], data="\n".join(result["commands"]) + "\n")
    if rc != 0:
        module.fail_json(
            msg=f"nft refused the change (nothing was changed: one transaction): {err.strip()}", **result
        )
    after, _raw, after_text = listing()
    if p["state"] == "reset":
        result["remaining"] = {
            "rules": count_rules(after),
            "tables": [
                i["table"]["name"] for i in after.get("nftables", []) if isinstance(i, dict) and "table" in i
            ],
        }
        content = PERSIST_HEADER
    else:
        left = classify(after, msp, comment_re, p["tables"])
        result["remaining"] = {k: v for k, v in left.items() if k != "refused"}
        content = PERSIST_HEADER + after_text
    if p["persist_path"]:
        path = p["persist_path"]
        tmp = path + ".offboard-tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(content)
        rc, _o, err = module.run_command([nft, "-c", "-f", tmp])
        if rc != 0:
            os.unlink(tmp)
            module.fail_json(
                msg=f"the live ruleset does not check as a file ({err.strip()}); {path} unchanged", **result
            )
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
        result["persisted"] = path
    module.exit_json(**result)


if __name__ == "__main__":
    main()
