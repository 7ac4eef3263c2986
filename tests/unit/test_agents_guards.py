"""The guards of the agents phase: EDR removal needs confirmed replacement coverage (and the uninstall
code where tamper protection needs one); MSP-held backup data waits for the retention date."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from tests.conftest import load_module

guards = load_module("agents_guards", "plugins/filter/agents_guards.py")

CONFIRMED = {
    "msp_products": ["sentinelone"],
    "replacement_coverage_confirmed": True,
    "replacement_product": "Defender for Business",
    "replacement_confirmed_by": "Casey Client",
    "replacement_confirmed_on": "2026-11-18",
}


def test_confirmed_coverage_allows_removal():
    assert guards.coverage_refusal(CONFIRMED, "2026-11-25") == ""
    assert guards.coverage_refusal(CONFIRMED, "2026-11-18") == ""  # confirmed today is fine


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"replacement_coverage_confirmed": False}, "replacement_coverage_confirmed is not true"),
        ({"replacement_coverage_confirmed": "yes"}, "replacement_coverage_confirmed is not true"),
        ({"replacement_product": ""}, "replacement_product is empty"),
        ({"replacement_confirmed_by": "  "}, "replacement_confirmed_by is empty"),
        ({"replacement_confirmed_on": ""}, "replacement_confirmed_on is not a date"),
        ({"replacement_confirmed_on": "18.11.2026"}, "replacement_confirmed_on is not a date"),
        ({"replacement_confirmed_on": "2026-12-01"}, "2026-12-01 is in the future"),
    ],
)
def test_each_missing_piece_refuses_and_says_what_to_set(change, reason):
    error = guards.coverage_refusal({**CONFIRMED, **change}, "2026-11-25")
    assert error.startswith("refused:")
    assert reason in error
    assert "offboard_security.replacement_coverage_confirmed: true" in error  # what to set


def test_no_security_block_at_all_refuses():
    error = guards.coverage_refusal(None, "2026-11-25")
    assert "replacement_coverage_confirmed is not true" in error and "replacement_product is empty" in error


def test_today_must_be_a_date():
    with pytest.raises(AnsibleFilterError):
        guards.coverage_refusal(CONFIRMED, "tomorrow")


def _found(key, found=True, needs=None):
    item = {"key": key, "product": key, "found": found, "uninstaller": None}
    if needs is not None:
        item["uninstaller"] = {"command": ["x"], "needs_secret": needs}
    return item


def test_refusals_per_product():
    found = [
        _found("sentinelone", needs=True),
        _found("crowdstrike_falcon", needs=False),
        _found("eset", False),
    ]
    # guard closed: every product found is refused with the guard's text, absent ones need nothing
    out = guards.security_refusals(found, "refused: coverage", {})
    assert out == {"sentinelone": "refused: coverage", "crowdstrike_falcon": "refused: coverage", "eset": ""}
    # guard open, no code for the tamper-protected product: only that one is refused, naming the vault var
    out = guards.security_refusals(found, "", {})
    assert "offboard_security_uninstall_codes.sentinelone" in out["sentinelone"]
    assert out["crowdstrike_falcon"] == "" and out["eset"] == ""
    # with the code: nothing refused, and the code never appears in the answer
    out = guards.security_refusals(found, "", {"sentinelone": "CANARY-s3cr3t"})
    assert set(out.values()) == {""}
    assert "CANARY" not in repr(out)


def test_windows_items_need_a_code_when_any_catalog_step_takes_one():
    spec = {
        "key": "threatdown",
        "uninstall": [{"msi_from_uninstall_entry": True, "msi_args": ["PASSWORD={secret}"]}],
    }
    found = [{"key": "threatdown", "product": "threatdown", "found": True, "uninstaller": {"kind": "msi"}}]
    assert "threatdown" in guards.security_refusals(found, "", {}, [spec])["threatdown"]
    assert guards.security_refusals(found, "", {"threatdown": "x"}, [spec])["threatdown"] == ""
    plain = {"key": "threatdown", "uninstall": [{"msi_from_uninstall_entry": True}]}
    assert guards.security_refusals(found, "", {}, [plain])["threatdown"] == ""


def test_retention_passes_the_day_after_the_date():
    terms = {"retention_until": "2026-11-21"}
    assert guards.retention(terms, "2026-11-21")["passed"] is False
    refused = guards.retention(terms, "2026-11-21")
    assert "until 2026-11-21" in refused["error"] and "from 2026-11-22" in refused["error"]
    ok = guards.retention(terms, "2026-11-22")
    assert ok == {
        "passed": True,
        "retention_until": "2026-11-21",
        "deletable_from": "2026-11-22",
        "error": "",
    }


@pytest.mark.parametrize("until", [None, "", "soon", "31/12/2026"])
def test_no_readable_retention_date_never_allows_deletion(until):
    out = guards.retention({"retention_until": until}, "2030-01-01")
    assert out["passed"] is False and "retention_until is not set to a date" in out["error"]


def test_backup_locations_by_host():
    terms = {
        "msp_data": [
            {"path": "/var/backups/msp", "hosts": ["srv01"]},
            {"path": "/srv/staging", "kind": "staged_copy"},
            {"path": "D:\\VeeamRepo", "hosts": ["fs01"]},
        ]
    }
    assert [x["path"] for x in guards.backup_locations(terms, "srv01")] == [
        "/var/backups/msp",
        "/srv/staging",
    ]
    assert [x["path"] for x in guards.backup_locations(terms, "fs01")] == ["/srv/staging", "D:\\VeeamRepo"]
    assert guards.backup_locations({}, "srv01") == []
    with pytest.raises(AnsibleFilterError, match="absolute"):
        guards.backup_locations({"msp_data": [{"path": "relative/dir"}]}, "srv01")
