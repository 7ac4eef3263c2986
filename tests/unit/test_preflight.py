"""The preflight guard's checks, on plain variables (the integration tests run it for real)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import ROOT, load_module

preflight = load_module("offboard_preflight", "plugins/action/offboard_preflight.py")

# The project whose playbooks name the phase roles, and whose agent roles declare their catalogs.
PROJECT = str(ROOT)
# A contract end in the past is refused (without an override): these dates stay in the future.
DATES = {"start": "2026-11-02", "contract_end": "2099-11-30", "access_revocation": "2026-11-16"}


def _vars(selected, hostvars, limit="acme", tags=("agents",)):
    groups = {"all": list(hostvars)}
    for host, hv in hostvars.items():
        groups.setdefault(hv.get("offboard_client_id", "ungrouped"), []).append(host)
    return {
        "hostvars": hostvars,
        "groups": groups,
        "ansible_limit": limit,
        "ansible_play_hosts_all": selected,
        "ansible_run_tags": list(tags),
        "ansible_check_mode": False,
    }


def _client(client="acme", **extra):
    return {"offboard_client_id": client, "offboard_dates": dict(DATES), "offboard_msp_products": [], **extra}


def test_a_valid_single_client_run_passes_and_summarises():
    hv = {"acme-a": _client(offboard_msp_products=[{"product": "ninjaone"}]), "acme-b": _client()}
    result = preflight.check(_vars(["acme-a", "acme-b"], hv), PROJECT, ["agents"])
    assert result["client"] == "acme"
    assert result["hosts"] == 2
    assert "LIVE" in result["summary"] and "ninjaone" in result["summary"]


def test_no_limit_is_refused_naming_the_clients():
    hv = {"acme-a": _client(), "beta-a": _client("beta")}
    with pytest.raises(preflight.PreflightError, match=r"no --limit.*acme, beta"):
        preflight.check(_vars(["acme-a", "beta-a"], hv, limit=None), PROJECT, ["agents"])


def test_a_limit_spanning_two_clients_is_refused():
    hv = {"acme-a": _client(), "beta-a": _client("beta")}
    with pytest.raises(preflight.PreflightError, match=r"more than one client: acme \(1 hosts\), beta"):
        preflight.check(_vars(["acme-a", "beta-a"], hv, limit="acme,beta"), PROJECT, ["agents"])


def test_a_host_without_client_id_is_refused():
    hv = {"stray": {}}
    with pytest.raises(preflight.PreflightError, match="stray have no offboard_client_id"):
        preflight.check(_vars(["stray"], hv, limit="stray"), PROJECT, ["agents"])


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        ({**DATES, "contract_end": "2026-10-01"}, "is before offboard_dates.start"),
        ({**DATES, "start": "yesterday"}, "ISO date"),
        ({k: v for k, v in DATES.items() if k != "access_revocation"}, "access_revocation is missing"),
        ({**DATES, "access_revocation": "2100-01-01"}, "must fall between"),
    ],
)
def test_bad_dates_are_refused_with_what_to_fix(dates, message):
    hv = {"acme-a": _client(offboard_dates=dates)}
    with pytest.raises(preflight.PreflightError, match=message):
        preflight.check(_vars(["acme-a"], hv), PROJECT, ["agents"])


def test_yaml_dates_are_accepted_as_well_as_strings():
    dates = {
        "start": dt.date(2026, 11, 2),
        "contract_end": dt.date(2026, 11, 30),
        "access_revocation": "2026-11-16",
    }
    assert preflight.validate_dates(dates)["contract_end"] == dt.date(2026, 11, 30)


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        ([{"product": "nosuchrmm"}], "unknown product 'nosuchrmm'"),
        ([{"product": "screenconnect"}], "instance ids"),
        ([{"product": "ninjaone", "instances": ["x"]}], "no per-instance agents"),
        ([{"product": "ninjaone"}, {"product": "ninjaone"}], "listed twice"),
        ([{"product": "screenconnect", "instances": ["a b; rm -rf /"]}], "not a plain id"),
        ("ninjaone", "must be a list"),
        (["ninjaone"], "must be a mapping with a 'product' key"),
        ([{"product": "sentinelone", "tamper": "x"}], r"unknown key\(s\) \['tamper'\]"),
    ],
)
def test_bad_agent_lists_are_refused(agents, message):
    hv = {"acme-a": _client(offboard_msp_products=agents)}
    with pytest.raises(preflight.PreflightError, match=message):
        preflight.check(_vars(["acme-a"], hv), PROJECT, ["agents"])


@pytest.mark.parametrize(
    ("tags", "message"),
    [(["access"], "phase 'access' has no automation"), (["agnets"], "unknown tag 'agnets'")],
)
def test_unknown_or_unimplemented_tags_are_refused(tags, message):
    hv = {"acme-a": _client()}
    with pytest.raises(preflight.PreflightError, match=message):
        preflight.check(_vars(["acme-a"], hv, tags=tags), PROJECT, ["agents"])


def test_role_names_are_valid_tags():
    hv = {"acme-a": _client()}
    assert (
        preflight.check(_vars(["acme-a"], hv, tags=["rmm_agent_removal"]), PROJECT, ["agents"])["hosts"] == 1
    )


def test_every_selected_host_is_checked_and_named():
    late = _client(offboard_dates={**DATES, "start": "2 Nov"})
    hv = {"acme-a": _client(), "acme-b": late, "acme-c": dict(late)}
    with pytest.raises(preflight.PreflightError, match=r"ISO date.*\(on acme-b, acme-c\)"):
        preflight.check(_vars(["acme-a", "acme-b", "acme-c"], hv), PROJECT, ["agents"])


def test_the_selected_phases_missing_variables_are_named_in_one_message():
    hv = {"acme-a": {"offboard_client_id": "acme", "offboard_dates": dict(DATES)}}
    with pytest.raises(preflight.PreflightError) as err:
        preflight.check(_vars(["acme-a"], hv, tags=["access", "agents"]), PROJECT, ["access", "agents"])
    assert "offboard_msp_access" in str(err.value) and "offboard_msp_products" in str(err.value)


def test_a_past_contract_end_needs_an_override_with_reason_and_approver():
    past = {"start": "2026-01-05", "contract_end": "2026-02-27", "access_revocation": "2026-02-02"}
    hv = {"acme-a": _client(offboard_dates=past)}
    with pytest.raises(preflight.PreflightError, match="in the past"):
        preflight.check(_vars(["acme-a"], hv), PROJECT, ["agents"])
    hv["acme-a"]["offboard_contract_end_override"] = {"reason": "late hand-over", "approved_by": "Lee"}
    result = preflight.check(_vars(["acme-a"], hv), PROJECT, ["agents"])
    assert result["contract_end_override"] == {"reason": "late hand-over", "approved_by": "Lee"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OFFBOARD_CLIENT": "beta"}, "OFFBOARD_CLIENT='beta'"),
        (
            {"OFFBOARD_CLIENT": "acme", "OFFBOARD_EVIDENCE_RUN_DIR": "/tmp/x", "OFFBOARD_RUN_ID": "r"},
            "run folder",
        ),
    ],
)
def test_the_environment_cannot_redirect_the_evidence(env, message):
    hv = {"acme-a": _client()}
    with pytest.raises(preflight.PreflightError, match=message):
        preflight.check(_vars(["acme-a"], hv), PROJECT, ["agents"], env=env)


def test_the_preflight_is_bounded_in_time():
    hv = {f"acme-{n}": _client() for n in range(300)}
    with pytest.raises(preflight.PreflightError, match="did not finish within"):
        preflight.check(_vars(list(hv), hv), PROJECT, ["agents"], timeout=0)


def test_one_list_holds_every_kind_of_product():
    mixed = [{"product": "ninjaone"}, {"product": "sentinelone"}, {"product": "veeam_agent"}]
    result = preflight.check(
        _vars(["acme-a"], {"acme-a": _client(offboard_msp_products=mixed)}), PROJECT, ["agents"]
    )
    assert result["products"] == ["ninjaone", "sentinelone", "veeam_agent"]
    assert result["warnings"] == []


OLD_SHAPE = {
    "offboard_msp_agents": [{"product": "ninjaone"}],
    "offboard_security": {"msp_products": ["sentinelone"], "replacement_coverage_confirmed": False},
    "offboard_backup_terms": {"msp_products": [{"product": "veeam_agent"}], "data_disposition": "delete"},
}


def test_the_old_names_are_still_read_each_with_a_warning_saying_where_it_goes():
    hv = {"acme-a": {**_client(), **OLD_SHAPE}}
    del hv["acme-a"]["offboard_msp_products"]
    result = preflight.check(_vars(["acme-a"], hv), PROJECT, ["agents"])
    assert result["products"] == ["ninjaone", "sentinelone", "veeam_agent"]
    assert len(result["warnings"]) == 3
    for old in (
        "offboard_msp_agents",
        "offboard_security.msp_products",
        "offboard_backup_terms.msp_products",
    ):
        assert any(w.startswith(old) and "offboard_msp_products" in w for w in result["warnings"]), old


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # An old list is its role's only: another role's product there would reach the wrong engine.
        (
            {"offboard_security": {"msp_products": ["ninjaone"]}},
            "not a product of security_software_transition",
        ),
        (
            {"offboard_backup_terms": {"msp_products": ["sentinelone"]}},
            "not a product of backup_agent_removal",
        ),
        ({"offboard_msp_agents": [{"product": "veeam_agent"}]}, "not a product of rmm_agent_removal"),
        # The same product in the new list and an old one is one product listed twice.
        ({"offboard_security": {"msp_products": ["sentinelone"]}}, "'sentinelone' is listed twice"),
        ({"offboard_security": {"msp_products": "sentinelone"}}, "must be a list"),
    ],
)
def test_old_names_are_checked_as_strictly_as_the_new_one(values, message):
    hv = {"acme-a": _client(offboard_msp_products=[{"product": "sentinelone"}], **values)}
    with pytest.raises(preflight.PreflightError, match=message):
        preflight.check(_vars(["acme-a"], hv), PROJECT, ["agents"])


def test_the_agent_roles_say_where_their_catalogs_are():
    roles = preflight.role_phases(PROJECT)
    catalogs = preflight.agent_catalogs(PROJECT, [str(ROOT / "roles")], roles)
    assert set(catalogs) == {"rmm_agent_removal", "security_software_transition", "backup_agent_removal"}
    # One product id names one product: no id is in two catalogs (the one list could not say whose it is).
    ids = [pid for folder in catalogs.values() for pid in preflight.offboard_products.catalog_ids(folder)]
    assert len(ids) == len(set(ids)) and {"ninjaone", "sentinelone", "veeam_agent"} <= set(ids)


def test_a_project_without_agent_roles_knows_no_products(tmp_path):
    (tmp_path / "playbooks").mkdir()
    hv = {"acme-a": _client(offboard_msp_products=[{"product": "ninjaone"}])}
    with pytest.raises(preflight.PreflightError, match="unknown product 'ninjaone'; known products: none"):
        preflight.check(_vars(["acme-a"], hv), str(tmp_path), ["agents"])
