# Copyright: the offboard project contributors
# Apache-2.0
"""Filters: records read from a DNS API, normalized to {name, ttl, type, rdata} for dns_zone_export.

Sources of the field names (vendor documentation):
- Windows DNS: Get-DnsServerResourceRecord returns CimInstance DnsServerResourceRecord with HostName,
  RecordType, TimeToLive and RecordData (DnsServerResourceRecordA.IPv4Address, AAAA.IPv6Address,
  CName.HostNameAlias, MX.MailExchange/Preference, NS.NameServer, Ptr.PtrDomainName, Srv.DomainName/
  Priority/Weight/Port, Txt.DescriptiveText, Soa.PrimaryServer/ResponsiblePerson/SerialNumber/
  RefreshInterval/RetryDelay/ExpireLimit/MinimumTimeToLive) - learn.microsoft.com, DnsServer module.
  roles/dns_zone_export/files/Get-ZoneRecords.ps1 flattens these to {name, type, ttl, data}.
- Route 53: ListResourceRecordSets returns ResourceRecordSets of {Name, Type, TTL, ResourceRecords:
  [{Value}]} (values in zone-file presentation format) or AliasTarget (no zone-file form) -
  docs.aws.amazon.com/Route53/latest/APIReference/API_ListResourceRecordSets.html.
- Cloudflare: GET /zones/{id}/dns_records returns {name, type, ttl (1 = automatic), content, priority,
  data} - developers.cloudflare.com/api (DNS Records for a Zone).
A record that has no zone-file form (a Route 53 alias, a Cloudflare proxied flattening) is returned by
`*_unsupported` so the role can record it instead of dropping it.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

Rec = dict[str, Any]


def _fqdn(name: str, zone: str) -> str:
    name = str(name).strip()
    zone = str(zone).rstrip(".")
    if name in ("@", ""):
        return zone + "."
    if name.endswith("."):
        return name
    if name == zone or name.endswith("." + zone):
        return name + "."
    return f"{name}.{zone}."


def _dot(name: Any) -> str:
    text = str(name)
    return text if text.endswith(".") else text + "."


def _txt(strings: Any) -> str:
    parts = strings if isinstance(strings, list) else [strings]
    out = []
    for part in parts:
        escaped = str(part).replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'"{escaped}"')
    return " ".join(out)


_WIN_RDATA = {
    "A": lambda d: str(d["IPv4Address"]),
    "AAAA": lambda d: str(d["IPv6Address"]),
    "CNAME": lambda d: _dot(d["HostNameAlias"]),
    "NS": lambda d: _dot(d["NameServer"]),
    "PTR": lambda d: _dot(d["PtrDomainName"]),
    "MX": lambda d: f"{int(d['Preference'])} {_dot(d['MailExchange'])}",
    "SRV": lambda d: f"{int(d['Priority'])} {int(d['Weight'])} {int(d['Port'])} {_dot(d['DomainName'])}",
    "TXT": lambda d: _txt(d["DescriptiveText"]),
    "SOA": lambda d: (
        f"{_dot(d['PrimaryServer'])} {_dot(d['ResponsiblePerson'])} {int(d['SerialNumber'])} "
        f"{int(d['RefreshInterval'])} {int(d['RetryDelay'])} {int(d['ExpireLimit'])} "
        f"{int(d['MinimumTimeToLive'])}"
    ),
}


def win_dns_records(rows: list[Rec], zone: str) -> list[Rec]:
    """Rows of Get-ZoneRecords.ps1 ({name, type, ttl, data}) -> normalized records (supported types)."""
    out = []
    for row in rows or []:
        conv = _WIN_RDATA.get(str(row.get("type", "")).upper())
        if conv is None:
            continue
        try:
            rdata = conv(row.get("data") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise AnsibleFilterError(f"win_dns_records: {row.get('name')} {row.get('type')}: {exc}") from None
        out.append(
            {
                "name": _fqdn(row["name"], zone),
                "ttl": int(row["ttl"]),
                "type": row["type"].upper(),
                "rdata": rdata,
            }
        )
    return out


def win_dns_unsupported(rows: list[Rec]) -> list[str]:
    return sorted(
        {
            f"{r.get('name')} {r.get('type')}"
            for r in rows or []
            if str(r.get("type", "")).upper() not in _WIN_RDATA
        }
    )


def route53_records(record_sets: list[Rec], zone: str) -> list[Rec]:
    """ResourceRecordSets (boto3 / amazon.aws.route53_info) -> normalized records (non-alias sets)."""
    out = []
    for rrset in record_sets or []:
        if "AliasTarget" in rrset or not rrset.get("ResourceRecords"):
            continue
        # Route 53 escapes some characters in names as octal (\052 for *).
        name = str(rrset["Name"]).replace("\\052", "*")
        for rr in rrset["ResourceRecords"]:
            out.append(
                {
                    "name": _fqdn(name, zone),
                    "ttl": int(rrset.get("TTL", 300)),
                    "type": str(rrset["Type"]).upper(),
                    "rdata": str(rr["Value"]),
                }
            )
    return out


def route53_unsupported(record_sets: list[Rec]) -> list[str]:
    return sorted(f"{r.get('Name')} {r.get('Type')} (alias)" for r in record_sets or [] if "AliasTarget" in r)


def cloudflare_records(records: list[Rec], zone: str, auto_ttl: int = 300) -> list[Rec]:
    """Cloudflare dns_records result -> normalized records (ttl 1 means automatic: auto_ttl)."""
    out = []
    for rec in records or []:
        rtype = str(rec.get("type", "")).upper()
        content = str(rec.get("content", ""))
        if rtype in ("CNAME", "NS", "PTR"):
            rdata = _dot(content)
        elif rtype == "MX":
            rdata = f"{int(rec.get('priority', 0))} {_dot(content)}"
        elif rtype == "TXT":
            rdata = content if content.startswith('"') else _txt(content)
        elif rtype == "SRV" and isinstance(rec.get("data"), dict):
            d = rec["data"]
            rdata = f"{int(d['priority'])} {int(d['weight'])} {int(d['port'])} {_dot(d['target'])}"
        elif rtype in ("A", "AAAA", "CAA", "SRV"):
            rdata = content
        else:
            continue
        ttl = int(rec.get("ttl", auto_ttl))
        out.append(
            {
                "name": _fqdn(rec["name"], zone),
                "ttl": auto_ttl if ttl == 1 else ttl,
                "type": rtype,
                "rdata": rdata,
            }
        )
    return out


def cloudflare_unsupported(records: list[Rec]) -> list[str]:
    known = {"A", "AAAA", "CNAME", "NS", "PTR", "MX", "TXT", "SRV", "CAA"}
    return sorted(
        f"{r.get('name')} {r.get('type')}"
        for r in records or []
        if str(r.get("type", "")).upper() not in known
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "win_dns_records": win_dns_records,
            "win_dns_unsupported": win_dns_unsupported,
            "route53_records": route53_records,
            "route53_unsupported": route53_unsupported,
            "cloudflare_records": cloudflare_records,
            "cloudflare_unsupported": cloudflare_unsupported,
        }
