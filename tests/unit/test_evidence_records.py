"""Evidence records: the action plugin's contract and the shared record code agree and refuse secrets."""

from __future__ import annotations

import pytest
from offboard import records

from tests.conftest import load_module


def _action_plugin():
    return load_module("offboard_record", "plugins/action/offboard_record.py")


def _args(**over):
    base = {
        "phase": "agents",
        "component": "rmm_agent",
        "item": "ninjaone",
        "before": {"found": True, "services": ["NinjaRMMAgent"], "footprint": ["/opt/ninja"]},
        "action": "removed",
        "after": {"found": False},
        "verification": {"method": "service probe", "result": "verified_absent"},
    }
    base.update(over)
    return base


def test_action_plugin_and_package_share_the_vocabulary():
    plugin = _action_plugin()
    assert plugin.PHASES == records.PHASES
    assert plugin.ACTIONS == records.ACTIONS
    assert plugin.VERIFICATION_RESULTS == records.VERIFICATION_RESULTS
    for key in (
        "password",
        "api_key",
        "footprint",
        "bypass_list",
        "ssh_private_key",
        "clientSecret",
        "registry_key",
    ):
        assert plugin.looks_secret(key) == records.looks_secret(key), key


def test_a_valid_record_passes_and_keeps_its_fields():
    plugin = _action_plugin()
    record = plugin.validate(_args())
    assert record["item"] == "ninjaone" and record["verification"]["result"] == "verified_absent"
    records.validate_item_args(_args())


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"action": "deleted"}, "unknown action 'deleted'"),
        ({"phase": "finance"}, "unknown phase 'finance'"),
        ({"verification": {"result": "gone"}}, "unknown verification.result"),
        ({"after": {"found": False, "admin_password": "x"}}, "after.admin_password"),
        ({"before": {"agent": {"api_token": "x"}}}, "before.agent.api_token"),
        ({"before": {"keys": [{"private_key": "x"}]}}, "before.keys[0].private_key"),
    ],
)
def test_bad_records_are_refused_naming_the_field(over, message):
    plugin = _action_plugin()
    with pytest.raises(ValueError, match=None) as caught:
        plugin.validate(_args(**over))
    assert message in str(caught.value)
    with pytest.raises(records.RecordError) as caught2:
        records.validate_item_args(_args(**over))
    assert message in str(caught2.value)


def test_field_names_that_merely_contain_secret_letters_are_allowed():
    for key in ("footprint", "bypass_list", "compass", "spinner", "keyboard_layout", "registry_key"):
        assert not records.looks_secret(key), key


def test_records_file_with_a_torn_last_line_yields_only_whole_records(tmp_path):
    rec = records.Record(
        kind="item",
        run_id="r1",
        client="c",
        phase="agents",
        recorded_at="t",
        host="h",
        component="rmm_agent",
        item="x",
        action="none",
    )
    path = tmp_path / "records.jsonl"
    path.write_text(rec.to_json() + "\n" + rec.to_json()[:20])
    assert [r.host for r in records.iter_records(path)] == ["h"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("__credential_rotation_secret", True),
        ("new_password", True),
        ("fake_admin_password", True),
        ("vendor_api_key", True),
        (
            "__credential_rotation_os",
            False,
        ),  # the role's name holds "credential": its facts are not all secret
        ("__credential_rotation_keep", False),
        ("__access_guard_today", False),
    ],
)
def test_a_variable_is_collected_as_secret_by_the_last_words_of_its_name(name, secret):
    assert records.names_secret(name) is secret
