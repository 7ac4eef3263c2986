"""documentation_export: device rows from facts, the IP schema, MSP software from the evidence records, and
an archive that verifies itself (and notices tampering or a missing device)."""

from __future__ import annotations

import io
import tarfile

from tests.conftest import load_module

pkg = load_module("docs_pkg", "plugins/action/offboard_docs_package.py")

FACTS = {
    "hostname": "ws07",
    "distribution": "Debian",
    "distribution_version": "12.8",
    "product_serial": "SN-4711",
    "interfaces": ["lo", "eth0"],
    "lo": {"ipv4": {"address": "127.0.0.1", "prefix": "8"}, "macaddress": ""},
    "eth0": {
        "macaddress": "02:00:00:00:00:07",
        "ipv4": {"address": "192.0.2.7", "prefix": "24"},
        "ipv6": [{"address": "2001:db8::7", "prefix": "64"}],
    },
    "all_ipv4_addresses": ["192.0.2.7"],
}


def test_device_row_from_facts():
    dev = pkg.device_from_facts("lab-ws07", FACTS)
    assert (dev["hostname"], dev["os"], dev["serial"]) == ("ws07", "Debian 12.8", "SN-4711")
    eth0 = next(i for i in dev["interfaces"] if i["name"] == "eth0")
    assert eth0["mac"] == "02:00:00:00:00:07" and "192.0.2.7/24" in eth0["addresses"]
    assert pkg.device_from_facts("x", {"product_serial": "NA"})["serial"] == ""


def test_ip_schema_groups_hosts_by_network_without_loopback():
    schema = pkg.ip_schema([pkg.device_from_facts("lab-ws07", FACTS)])
    assert [n["network"] for n in schema] == ["192.0.2.0/24", "2001:db8::/64"]
    assert schema[0]["members"] == ["lab-ws07 192.0.2.7 (eth0)"]


def test_msp_software_comes_from_item_records():
    records = [
        {"kind": "item", "host": "a", "component": "rmm_agent", "item": "ninjaone", "action": "removed"},
        {"kind": "item", "host": "a", "component": "rmm_agent", "item": "datto_rmm", "action": "none"},
        {
            "kind": "item",
            "host": "b",
            "component": "rmm_agent",
            "item": "teamviewer",
            "action": "would_remove",
            "check_mode": True,
        },
        {"kind": "item", "host": "b", "component": "dns_zone", "item": "x.test", "action": "exported"},
    ]
    assert pkg.msp_software(records) == {
        "a": {"rmm_agent:ninjaone": "removed"},
        "b": {"rmm_agent:teamviewer": "would_remove (rehearsal)"},
    }


def _package(hosts):
    return {
        "client": "acme",
        "client_name": "Acme",
        "msp": "MSP",
        "built_at": "t",
        "run_id": "r",
        "devices": [
            {"host": h, "status": "reached", "reason": "", "interfaces": [], "all_ipv4": []} for h in hosts
        ],
        "ip_schema": [],
        "files": [],
    }


def test_archive_verifies_and_notices_tampering(tmp_path):
    blob, sums = pkg.build_archive(_package(["a", "b"]), {"dns/x.test.zone": b"zone"}, "acme-handover")
    path = tmp_path / "p.tar.gz"
    path.write_bytes(blob)
    assert pkg.verify_archive(path, "acme-handover", ["a", "b"]) == []
    assert set(sums) == {"dns/x.test.zone", "inventory.json", "INDEX.md"}
    assert pkg.verify_archive(path, "acme-handover", ["a", "b", "c"]) == [
        "device c missing from inventory.json"
    ]
    # Rewrite one member: the checksum no longer matches.
    with tarfile.open(path, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members:
            if member.name.endswith("x.test.zone"):
                data = b"forged"
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    assert pkg.verify_archive(path, "acme-handover", ["a"]) == ["dns/x.test.zone does not match its checksum"]


def test_index_lists_unreachable_devices_with_reason():
    package = _package(["a"])
    package["devices"].append({"host": "laptop", "status": "unreachable", "reason": "preflight: timed out"})
    index = pkg.render_index(package)
    assert "| laptop | unreachable: preflight: timed out |" in index
    assert "- laptop: unreachable (preflight: timed out)" in index
