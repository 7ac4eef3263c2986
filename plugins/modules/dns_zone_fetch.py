#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Module: export one DNS zone to an RFC 1035 zone file and a JSON form, and verify the export."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dns_zone_fetch
short_description: Export one DNS zone (AXFR or a list of records) and verify the export against its source
description:
  - Runs on the controller (delegate_to localhost); needs dnspython there.
  - C(source=axfr) transfers the zone from an authoritative server (optionally TSIG-signed), writes
    C(<zone>.zone) (RFC 1035 master file, absolute names) and C(<zone>.json) into C(dest), re-reads the
    written zone file and compares its record set with a second transfer.
  - C(source=records) takes records already read from an API (Windows DNS, Route 53, Cloudflare; normalized
    by the dns_records filters) and compares the re-read file with C(verify_records), a second read.
  - Never fails the task for an unreachable or refusing server - returns C(exported=false) and C(error)
    naming zone, server and reason, so the role records the failure for every zone and then fails the host.
  - Changes nothing anywhere but C(dest) (the run's evidence) - changed is always false. Works in check mode.
options:
  zone: {description: Zone name., type: str, required: true}
  source: {description: Where the records come from., type: str, choices: [axfr, records], default: axfr}
  server: {description: Authoritative server address (axfr)., type: str}
  port: {description: Server port (axfr)., type: int, default: 53}
  timeout: {description: Seconds for the whole transfer (axfr)., type: float, default: 10}
  tsig_key_name: {description: TSIG key name (axfr)., type: str}
  tsig_secret: {description: TSIG secret, base64 (from the vault)., type: str}
  tsig_algorithm: {description: TSIG algorithm., type: str, default: hmac-sha256}
  records: {description: 'Records (name, ttl, type, rdata) for source=records.', type: list, elements: dict}
  verify_records:
    description: A second read of the same records, to verify against.
    type: list
    elements: dict
  dest: {description: Folder to write the export into., type: path, required: true}
"""

EXAMPLES = r"""
- name: DNS | export | Transfer lab.test
  offboard.msp.dns_zone_fetch:
    zone: lab.test
    server: 127.0.0.1
    port: 5300
    dest: "{{ __dns_zone_export_dir }}"
  delegate_to: localhost
"""

RETURN = r"""
exported: {description: Whether the export was written and re-read., type: bool, returned: always}
verified:
  description: Whether the re-read export equals the second read of the source.
  type: bool
  returned: always
error: {description: Zone, server and reason when the export failed., type: str, returned: on failure}
zone_file: {description: Path of the zone file., type: str, returned: when exported}
zone_sha256: {description: sha256 of the zone file., type: str, returned: when exported}
json_file: {description: Path of the JSON form., type: str, returned: when exported}
json_sha256: {description: sha256 of the JSON form., type: str, returned: when exported}
records: {description: Number of records (rdata) exported., type: int, returned: when exported}
serial: {description: SOA serial of the export., type: int, returned: when exported}
differences: {description: Up to 20 records present on one side only (re-read export vs source)., type: list}
"""

import hashlib
import json
import os
import traceback

from ansible.module_utils.basic import AnsibleModule

try:
    import dns.exception
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes
    import dns.tsigkeyring
    import dns.xfr
    import dns.zone

    HAS_DNS = True
    DNS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the module
    HAS_DNS = False
    DNS_IMPORT_ERROR = traceback.format_exc()

Record = tuple[str, int, str, str, str]  # owner, ttl, class, type, rdata (all absolute, canonical text)


def zone_records(zone) -> set[Record]:
    """Every rdata of a zone as comparable tuples with absolute names."""
    out: set[Record] = set()
    for name, ttl, rdata in zone.iterate_rdatas():
        owner = name.derelativize(zone.origin)
        text = rdata.to_text(origin=zone.origin, relativize=False)
        out.add(
            (
                owner.to_text().lower(),
                int(ttl),
                dns.rdataclass.to_text(rdata.rdclass),
                dns.rdatatype.to_text(rdata.rdtype),
                text,
            )
        )
    return out


def zone_from_records(zone_name: str, records: list[dict]):
    """A dnspython zone from normalized records (name, ttl, type, rdata; class IN)."""
    origin = dns.name.from_text(zone_name)
    zone = dns.zone.Zone(origin, relativize=False)
    for rec in records:
        name = dns.name.from_text(str(rec["name"]), origin)
        rdtype = dns.rdatatype.from_text(str(rec["type"]).upper())
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, str(rec["rdata"]), origin=origin, relativize=False
        )
        rdataset = zone.find_rdataset(name, rdtype, create=True)
        rdataset.add(rdata, int(rec["ttl"]))
    return zone


def zone_text(zone, header: str) -> str:
    """RFC 1035 master file with absolute names, SOA first (the origin sorts first), then by name."""
    body = zone.to_text(sorted=True, relativize=False, nl="\n")
    if not body.endswith("\n"):
        body += "\n"
    return header + f"$ORIGIN {zone.origin.to_text()}\n" + body


def json_form(zone_name: str, records: set[Record], meta: dict) -> str:
    rows = [
        {"name": n, "ttl": t, "class": c, "type": ty, "rdata": r}
        for n, t, c, ty, r in sorted(records, key=lambda x: (x[0], x[3], x[4], x[1]))
    ]
    return json.dumps({"zone": zone_name, **meta, "records": rows}, indent=1, sort_keys=True) + "\n"


def serial_of(records: set[Record]) -> int | None:
    for _n, _t, _c, rtype, rdata in records:
        if rtype == "SOA":
            return int(rdata.split()[2])
    return None


def differences(left: set[Record], right: set[Record], limit: int = 20) -> list[str]:
    out = [f"export only: {' '.join(map(str, r))}" for r in sorted(left - right)]
    out += [f"source only: {' '.join(map(str, r))}" for r in sorted(right - left)]
    return out[:limit]


def describe_error(exc: BaseException) -> str:
    """A reason an engineer can act on."""
    if isinstance(exc, dns.xfr.TransferError):
        # Lower case: "REFUSED" in capitals is how the preflight guard announces its refusals.
        return f"transfer refused by the server (rcode {dns.rcode.to_text(exc.rcode).lower()})"
    if isinstance(exc, dns.exception.Timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that address and port)"
    if isinstance(exc, EOFError):
        return "the server closed the connection (transfer not allowed to this address?)"
    if isinstance(exc, dns.zone.NoSOA):
        return "the transfer returned no SOA record (not authoritative for the zone, or transfer refused)"
    return f"{type(exc).__name__}: {exc}"


def transfer(zone_name: str, server: str, port: int, timeout: float, keyring, keyname, keyalg):
    kwargs = {"port": port, "timeout": timeout, "lifetime": timeout, "relativize": False}
    if keyring is not None:
        kwargs.update(keyring=keyring, keyname=keyname, keyalgorithm=keyalg)
    return dns.zone.from_xfr(dns.query.xfr(server, zone_name, **kwargs), relativize=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_private(path: str, text: str) -> str:
    data = text.encode("utf-8")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(path + ".tmp", path)
    return sha256_bytes(data)


def export(params: dict) -> dict:
    zone_name = params["zone"].rstrip(".") + "."
    bare = zone_name.rstrip(".")
    source = params["source"]
    where = f"{params.get('server')}:{params.get('port')}" if source == "axfr" else "records"
    result: dict = {"changed": False, "exported": False, "verified": False, "zone": bare, "source": source}
    keyring = keyname = None
    if source == "axfr":
        if not params.get("server"):
            return {**result, "error": f"zone {bare}: source axfr needs a server"}
        if params.get("tsig_key_name"):
            keyname = dns.name.from_text(params["tsig_key_name"])
            keyring = dns.tsigkeyring.from_text({params["tsig_key_name"]: params.get("tsig_secret") or ""})

        def fetch():  # the same transfer, once to export and once to verify what was written
            return transfer(
                zone_name,
                params["server"],
                params["port"],
                params["timeout"],
                keyring,
                keyname,
                params["tsig_algorithm"],
            )

        try:
            zone = fetch()
        except Exception as exc:  # every failure becomes a record naming zone, server and reason
            return {**result, "error": f"zone {bare} from {where}: {describe_error(exc)}"}
    else:
        try:
            zone = zone_from_records(zone_name, params.get("records") or [])
        except Exception as exc:
            return {**result, "error": f"zone {bare} from {where}: unusable records ({exc})"}
    records = zone_records(zone)
    if not any(r[3] == "SOA" for r in records) and source == "axfr":
        return {**result, "error": f"zone {bare} from {where}: no SOA in the transfer"}
    dest = params["dest"]
    os.makedirs(dest, mode=0o700, exist_ok=True)
    meta = {"source": source, "server": where, "serial": serial_of(records)}
    header = (
        f"; zone {bare} exported by offboard dns_zone_export from {where}\n"
        f"; {len(records)} records, serial {meta['serial']}\n"
    )
    zone_path = os.path.join(dest, f"{bare}.zone")
    json_path = os.path.join(dest, f"{bare}.json")
    result.update(
        zone_file=zone_path,
        zone_sha256=write_private(zone_path, zone_text(zone, header)),
        json_file=json_path,
        json_sha256=write_private(json_path, json_form(bare, records, meta)),
        records=len(records),
        serial=meta["serial"],
        exported=True,
    )
    # Verify: what is on disk, read back as a zone, equals the source read a second time.
    try:
        # API sources may have no SOA/NS (Cloudflare keeps them to itself): no origin check for those.
        reread = zone_records(
            dns.zone.from_file(zone_path, origin=zone_name, relativize=False, check_origin=source == "axfr")
        )
        with open(json_path, encoding="utf-8") as handle:
            json_rows = json.load(handle)["records"]
        json_set = {(r["name"], r["ttl"], r["class"], r["type"], r["rdata"]) for r in json_rows}
    except Exception as exc:
        return {**result, "error": f"zone {bare}: the written export does not read back ({exc})"}
    try:
        if source == "axfr":
            again = zone_records(fetch())
        else:
            again = zone_records(zone_from_records(zone_name, params.get("verify_records") or []))
    except Exception as exc:
        return {
            **result,
            "error": f"zone {bare} from {where}: second read for verification failed: {describe_error(exc)}",
        }
    diff = differences(reread, again)
    if json_set != reread:
        diff = ["the JSON form differs from the zone file", *diff]
    result["differences"] = diff
    result["verified"] = not diff
    if diff:
        changed_serial = serial_of(again) != meta["serial"]
        why = (
            f" (serial {meta['serial']} -> {serial_of(again)}: the zone changed during the export)"
            if (changed_serial)
            else ""
        )
        result["error"] = f"zone {bare} from {where}: export differs from the source{why}"
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "zone": {"type": "str", "required": True},
            "source": {"type": "str", "choices": ["axfr", "records"], "default": "axfr"},
            "server": {"type": "str"},
            "port": {"type": "int", "default": 53},
            "timeout": {"type": "float", "default": 10.0},
            "tsig_key_name": {"type": "str"},
            "tsig_secret": {"type": "str", "no_log": True},
            "tsig_algorithm": {"type": "str", "default": "hmac-sha256"},
            "records": {"type": "list", "elements": "dict"},
            "verify_records": {"type": "list", "elements": "dict"},
            "dest": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    if not HAS_DNS:
        module.fail_json(
            msg="dnspython is required on the controller: pip install dnspython", exception=DNS_IMPORT_ERROR
        )
    module.exit_json(**export(module.params))


if __name__ == "__main__":
    main()
