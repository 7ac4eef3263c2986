"""dns_zone_export: record sets, zone-file round trip, error texts, and the API normalizers (Windows DNS,
Route 53, Cloudflare) producing records that dnspython accepts and that survive the export unchanged."""

from __future__ import annotations

import json

import dns.exception
import dns.xfr
import pytest

from tests.conftest import load_module as _load

mod = _load("dns_zone_fetch", "plugins/modules/dns_zone_fetch.py")
flt = _load("dns_records", "plugins/filter/dns_records.py")

RECORDS = [
    {
        "name": "@",
        "ttl": 3600,
        "type": "SOA",
        "rdata": "ns1.example.test. host.example.test. 7 3600 600 86400 300",
    },
    {"name": "@", "ttl": 3600, "type": "NS", "rdata": "ns1.example.test."},
    {"name": "www", "ttl": 300, "type": "A", "rdata": "192.0.2.1"},
    {"name": "www", "ttl": 300, "type": "A", "rdata": "192.0.2.2"},
    {"name": "txt", "ttl": 60, "type": "TXT", "rdata": '"a \\"quoted\\" part" "second"'},
]


def _params(tmp_path, **extra):
    base = {
        "zone": "example.test",
        "source": "records",
        "server": None,
        "port": 53,
        "timeout": 2.0,
        "tsig_key_name": None,
        "tsig_secret": None,
        "tsig_algorithm": "hmac-sha256",
        "records": RECORDS,
        "verify_records": RECORDS,
        "dest": str(tmp_path),
    }
    base.update(extra)
    return base


def test_records_export_round_trips_and_verifies(tmp_path):
    result = mod.export(_params(tmp_path))
    assert result["exported"] and result["verified"], result
    assert result["records"] == 5 and result["serial"] == 7
    text = (tmp_path / "example.test.zone").read_text()
    assert text.index("SOA") < text.index(" A ")  # SOA first, as named-checkzone wants
    rows = json.loads((tmp_path / "example.test.json").read_text())["records"]
    assert {r["rdata"] for r in rows if r["type"] == "A"} == {"192.0.2.1", "192.0.2.2"}


def test_a_source_that_changed_between_reads_is_not_verified(tmp_path):
    changed = [*RECORDS[:-1], {"name": "new", "ttl": 60, "type": "A", "rdata": "192.0.2.9"}]
    result = mod.export(_params(tmp_path, verify_records=changed))
    assert result["exported"] and not result["verified"]
    assert any("new.example.test." in d for d in result["differences"])
    assert "export differs from the source" in result["error"]


def test_unusable_records_are_an_error_naming_the_zone(tmp_path):
    bad = [{"name": "x", "ttl": 1, "type": "A", "rdata": "not-an-address"}]
    result = mod.export(_params(tmp_path, records=bad))
    assert not result["exported"] and "zone example.test from records" in result["error"]


def test_axfr_without_server_is_refused(tmp_path):
    result = mod.export(_params(tmp_path, source="axfr"))
    assert not result["exported"] and "needs a server" in result["error"]


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (dns.xfr.TransferError(5), "refused by the server"),
        (dns.exception.Timeout(), "timed out"),
        (ConnectionRefusedError(), "connection refused"),
        (EOFError(), "closed the connection"),
    ],
)
def test_transfer_errors_say_why(exc, words):
    assert words in mod.describe_error(exc)


def test_windows_rows_become_zone_records(tmp_path):
    rows = [
        {
            "name": "@",
            "type": "SOA",
            "ttl": 3600,
            "data": {
                "PrimaryServer": "dc1.corp.test",
                "ResponsiblePerson": "hostmaster.corp.test",
                "SerialNumber": 12,
                "RefreshInterval": 900,
                "RetryDelay": 600,
                "ExpireLimit": 86400,
                "MinimumTimeToLive": 3600,
            },
        },
        {"name": "@", "type": "NS", "ttl": 3600, "data": {"NameServer": "dc1.corp.test."}},
        {"name": "dc1", "type": "A", "ttl": 1200, "data": {"IPv4Address": "192.0.2.10"}},
        {
            "name": "@",
            "type": "MX",
            "ttl": 3600,
            "data": {"Preference": 10, "MailExchange": "mail.corp.test"},
        },
        {
            "name": "_ldap._tcp",
            "type": "SRV",
            "ttl": 600,
            "data": {"Priority": 0, "Weight": 100, "Port": 389, "DomainName": "dc1.corp.test"},
        },
        {"name": "spf", "type": "TXT", "ttl": 600, "data": {"DescriptiveText": 'v=spf1 "x" -all'}},
        {"name": "odd", "type": "WINS", "ttl": 600, "data": {}},
    ]
    records = flt.win_dns_records(rows, "corp.test")
    assert {"name": "dc1.corp.test.", "ttl": 1200, "type": "A", "rdata": "192.0.2.10"} in records
    assert flt.win_dns_unsupported(rows) == ["odd WINS"]
    result = mod.export(_params(tmp_path, zone="corp.test", records=records, verify_records=records))
    assert result["verified"], result
    assert '"v=spf1 \\"x\\" -all"' in (tmp_path / "corp.test.zone").read_text()


def test_route53_sets_become_records_and_aliases_are_reported(tmp_path):
    sets = [
        {
            "Name": "shop.test.",
            "Type": "SOA",
            "TTL": 900,
            "ResourceRecords": [
                {"Value": "ns-1.awsdns.test. awsdns-hostmaster.amazon.test. 1 7200 900 1209600 86400"}
            ],
        },
        {
            "Name": "shop.test.",
            "Type": "NS",
            "TTL": 172800,
            "ResourceRecords": [{"Value": "ns-1.awsdns.test."}],
        },
        {"Name": "\\052.shop.test.", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.5"}]},
        {"Name": "cdn.shop.test.", "Type": "A", "AliasTarget": {"DNSName": "d1.cloudfront.test."}},
    ]
    records = flt.route53_records(sets, "shop.test")
    assert {"name": "*.shop.test.", "ttl": 60, "type": "A", "rdata": "192.0.2.5"} in records
    assert flt.route53_unsupported(sets) == ["cdn.shop.test. A (alias)"]
    assert mod.export(_params(tmp_path, zone="shop.test", records=records, verify_records=records))[
        "verified"
    ]


def test_cloudflare_records_become_zone_records(tmp_path):
    api = [
        {"name": "cf.test", "type": "A", "ttl": 1, "content": "192.0.2.7"},
        {"name": "cf.test", "type": "MX", "ttl": 300, "content": "mx.cf.test", "priority": 5},
        {"name": "www.cf.test", "type": "CNAME", "ttl": 300, "content": "cf.test"},
        {"name": "cf.test", "type": "TXT", "ttl": 300, "content": "hello world"},
        {
            "name": "_sip._udp.cf.test",
            "type": "SRV",
            "ttl": 300,
            "content": "",
            "data": {"priority": 1, "weight": 2, "port": 5060, "target": "sip.cf.test"},
        },
        {"name": "cf.test", "type": "HTTPS", "ttl": 300, "content": "1 . alpn=h2"},
    ]
    records = flt.cloudflare_records(api, "cf.test", 300)
    assert {"name": "cf.test.", "ttl": 300, "type": "A", "rdata": "192.0.2.7"} in records  # automatic TTL
    assert {"name": "cf.test.", "ttl": 300, "type": "MX", "rdata": "5 mx.cf.test."} in records
    assert flt.cloudflare_unsupported(api) == ["cf.test HTTPS"]
    result = mod.export(_params(tmp_path, zone="cf.test", records=records, verify_records=records))
    assert result["verified"], result  # no SOA from Cloudflare: exported without the origin check
