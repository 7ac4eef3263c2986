"""firewall_reset logic: which nftables rules, config lines and tunnels are the MSP's (and which are not),
secret redaction of backups, and the FortiGate / Cisco IOS removal plans."""

from __future__ import annotations

import re

from tests.conftest import load_module as _load

nft = _load("nftables_access", "plugins/modules/nftables_access.py")
refs = _load("config_refs", "plugins/modules/config_refs.py")
fw = _load("firewall_filters", "plugins/filter/firewall.py")

MSP = ["203.0.113.0/24", "198.51.100.0/24"]


def _saddr(right):
    return {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": right}}


def _rule(handle, *expr, comment=None, table="filter", chain="input"):
    rule = {
        "family": "inet",
        "table": table,
        "chain": chain,
        "handle": handle,
        "expr": [*expr, {"accept": None}],
    }
    if comment:
        rule["comment"] = comment
    return {"rule": rule}


RULESET = {
    "nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"table": {"family": "inet", "name": "filter", "handle": 1}},
        {"table": {"family": "inet", "name": "msp_mgmt", "handle": 2}},
        {
            "set": {
                "family": "inet",
                "table": "filter",
                "name": "msp_hosts",
                "handle": 3,
                "type": "ipv4_addr",
                "elem": ["203.0.113.10", {"prefix": {"addr": "198.51.100.0", "len": 24}}],
            }
        },
        {
            "set": {
                "family": "inet",
                "table": "filter",
                "name": "mixed",
                "handle": 4,
                "type": "ipv4_addr",
                "elem": ["192.0.2.10", "203.0.113.11"],
            }
        },
        _rule(5, _saddr("192.0.2.10"), comment="client: admin"),
        _rule(6, _saddr("@msp_hosts")),
        _rule(7, _saddr("203.0.113.10")),
        _rule(8, _saddr({"prefix": {"addr": "0.0.0.0", "len": 0}}), comment="client: any"),
        _rule(9, _saddr({"set": ["192.0.2.1", "203.0.113.1"]}), comment="client and msp"),
        _rule(10, comment="msp-mgmt: keepalive"),
        _rule(11, _saddr("@mixed"), comment="client: mixed set"),
        _rule(12, _saddr({"range": ["203.0.113.1", "203.0.113.20"]})),
        _rule(13, _saddr("203.0.113.5"), table="msp_mgmt"),
    ]
}


def _classify():
    return nft.classify(RULESET, nft.parse_networks(MSP), re.compile("^msp-mgmt"), ["msp_mgmt"])


def test_nft_finds_the_msps_rules_and_nothing_of_the_clients():
    found = _classify()
    assert sorted(r["handle"] for r in found["rules"]) == [6, 7, 10, 12]
    assert [s["name"] for s in found["sets"]] == ["msp_hosts"]
    assert found["elements"] == [
        {"family": "inet", "table": "filter", "set": "mixed", "elements": ["203.0.113.11"]}
    ]
    assert [t["name"] for t in found["tables"]] == ["msp_mgmt"]
    # A catch-all prefix is not the MSP's; a rule mixing both in one anonymous set is left for a person.
    assert [r["handle"] for r in found["refused"]] == [9]


def test_nft_removal_is_one_batch_rules_before_sets_before_tables():
    cmds = nft.removal_commands(_classify())
    assert cmds[0].startswith("delete rule inet filter input handle")
    assert "delete element inet filter mixed { 203.0.113.11 }" in cmds
    assert cmds.index("delete set inet filter msp_hosts") > max(i for i, c in enumerate(cmds) if "rule" in c)
    assert cmds[-1] == "delete table inet msp_mgmt"


def test_nft_nothing_to_do_on_a_clean_ruleset():
    clean = {"nftables": [i for i in RULESET["nftables"] if "rule" not in i or i["rule"]["handle"] in (5, 8)]}
    clean["nftables"] = [
        i for i in clean["nftables"] if "set" not in i and i.get("table", {}).get("name") != "msp_mgmt"
    ]
    found = nft.classify(clean, nft.parse_networks(MSP), re.compile("^msp-mgmt"), ["msp_mgmt"])
    assert nft.is_empty(found) and nft.removal_commands(found) == []


SNMPD = """# snmpd
rocommunity client-ro 192.0.2.0/28
rocommunity msp-secret 203.0.113.10
trap2sink 203.0.113.10 msp-trap
com2sec mspsec 198.51.100.4 msp-com2sec
"""


def test_config_lines_pointing_at_the_msp_are_found_and_redacted():
    entry = refs.inspect("/etc/snmp/snmpd.conf", SNMPD, "lines", refs.networks(MSP))
    assert len(entry["matched"]) == 3
    assert all("msp-" not in line for line in entry["matched"])  # communities redacted in what is reported
    assert "rocommunity client-ro 192.0.2.0/28" in entry["new_text"]
    assert "203.0.113" not in entry["new_text"] and not entry["remove_file"]
    backup = refs.redact(SNMPD)
    assert "msp-secret" not in backup and "client-ro" not in backup and "203.0.113.10" in backup


def test_syslog_targets_and_emptied_files():
    text = "# MSP SIEM\n*.* @@203.0.113.20:6514\nauth.* @198.51.100.20\n"
    entry = refs.inspect("/etc/rsyslog.d/60-msp.conf", text, "lines", refs.networks(MSP))
    assert len(entry["matched"]) == 2 and entry["remove_file"]
    block = 'action(type="omfwd" target="203.0.113.20"\n  port="514")\n'
    entry = refs.inspect("/etc/rsyslog.d/70.conf", block, "lines", refs.networks(MSP))
    assert entry["matched"] == [] and entry["refused"]  # a multi-line block is left for a person


def test_wireguard_tunnels_to_the_msp_only():
    msp0 = "[Interface]\nPrivateKey = c2VjcmV0\n[Peer]\nEndpoint = 203.0.113.30:51820\n"
    branch = "[Interface]\nPrivateKey = c2VjcmV0\n[Peer]\nEndpoint = 192.0.2.50:51820\n"
    assert refs.inspect("/etc/wireguard/msp0.conf", msp0, "wireguard", refs.networks(MSP))["remove_file"]
    assert not refs.inspect("/etc/wireguard/branch.conf", branch, "wireguard", refs.networks(MSP))[
        "remove_file"
    ]
    assert "c2VjcmV0" not in refs.redact(msp0)


def test_bad_networks_are_named():
    assert fw.offboard_bad_networks(["203.0.113.0/24", "msp.example", "10.0.0.0/33"]) == [
        "msp.example",
        "10.0.0.0/33",
    ]


def test_fortios_plan():
    admins = {
        "results": [
            {
                "name": "admin",
                "trusthost1": "192.0.2.0 255.255.255.0",
                "trusthost2": "203.0.113.0 255.255.255.0",
                "trusthost3": "0.0.0.0 0.0.0.0",
            },
            {"name": "msp-admin", "trusthost1": "203.0.113.0 255.255.255.0"},
        ]
    }
    communities = {
        "results": [
            {"id": 1, "name": "x", "hosts": [{"ip": "203.0.113.10 255.255.255.255"}]},
            {"id": 2, "name": "y", "hosts": [{"ip": "192.0.2.5 255.255.255.255"}]},
            {
                "id": 3,
                "name": "z",
                "hosts": [{"ip": "192.0.2.5 255.255.255.255"}, {"ip": "203.0.113.9 255.255.255.255"}],
            },
        ]
    }
    syslogd = {"results": [{"status": "enable", "server": "198.51.100.20"}]}
    netflow = {"results": [{"collectors": [{"collector_ip": "203.0.113.40"}]}]}
    phase1 = {
        "results": [
            {"name": "to-msp", "remote_gw": "203.0.113.1"},
            {"name": "branch", "remote_gw": "192.0.2.9"},
        ]
    }
    plan = fw.fortios_msp_plan(admins, communities, syslogd, netflow, phase1, MSP, ["msp-admin"])
    assert plan["admins"] == ["msp-admin"]
    assert plan["trusthosts"] == [{"name": "admin", "clear": {"trusthost2": "0.0.0.0 0.0.0.0"}}]
    assert plan["snmp"] == [{"id": 1, "name": "x"}] and "id 3" in plan["refused"][0]
    assert plan["syslog"] == [{"server": "198.51.100.20"}] and plan["vpn"] == ["to-msp"]
    assert plan["netflow"] == ["203.0.113.40"] and not plan["empty"]
    items = {i["item"]: i for i in fw.fortios_items(plan, {"admins": [], "vpn": ["to-msp"]})}
    assert items["vpn"]["remaining"] == ["to-msp"] and items["netflow"]["refused"]
    conf = (
        "config system admin\n    edit admin\n        set password ENC SH2abc\nconfig system snmp community\n"
    )
    conf += '    edit 1\n        set name "msp-secret"\n        config hosts\n'
    red = fw.fortios_redact(conf)
    assert "SH2abc" not in red and "msp-secret" not in red


IOS = """hostname edge
username clientadmin privilege 15 secret 9 $9$clientsecret
username mspadmin privilege 15 secret 9 $9$mspsecret
snmp-server community cl1ent RO CLIENT-SNMP
snmp-server community msp-comm RO MSP-SNMP
snmp-server host 203.0.113.10 version 2c msp-comm
logging host 198.51.100.20
logging host 192.0.2.30
ip flow-export destination 203.0.113.40 2055
crypto isakmp key msp-psk address 203.0.113.1
access-list 23 permit 203.0.113.0 0.0.0.255
ip access-list standard MSP-SNMP
 permit 203.0.113.0 0.0.0.255
ip access-list standard CLIENT-SNMP
 permit 192.0.2.0 0.0.0.255
"""


def test_ios_plan_removes_global_lines_and_leaves_acls_to_a_person():
    plan = fw.ios_msp_plan(IOS, MSP, ["mspadmin"])
    assert plan["commands"] == [
        "no username mspadmin",
        "no snmp-server community msp-comm RO MSP-SNMP",
        "no snmp-server host 203.0.113.10 version 2c msp-comm",
        "no logging host 198.51.100.20",
        "no ip flow-export destination 203.0.113.40 2055",
        "no crypto isakmp key msp-psk address 203.0.113.1",
    ]
    assert any("access-list 23" in m for m in plan["manual"])
    assert all(
        "secret" not in i["line"].split("secret", 1)[-1] or "<redacted>" in i["line"] for i in plan["items"]
    )
    red = fw.ios_redact(IOS)
    for secret in ("$9$mspsecret", "$9$clientsecret", "msp-comm", "cl1ent", "msp-psk"):
        assert secret not in red, secret
    # The device after the commands ran: the same configuration without the removed lines.
    applied = [
        ln for ln in IOS.splitlines() if f"no {ln}" not in plan["commands"] and "username mspadmin" not in ln
    ]
    again = fw.ios_msp_plan("\n".join(applied), MSP, ["mspadmin"])
    assert again["empty"]
    kinds = {i["item"]: i for i in fw.ios_items(plan, again)}
    assert kinds["syslog"]["found"] and kinds["syslog"]["remaining"] == []
