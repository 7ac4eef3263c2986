"""The lookup every phase play takes its hosts from: a phase the run did not select gets no hosts.

A play of an unselected phase would otherwise run its roles' argument validations (Ansible tags them
`always`), a worker per task and host, for variables the preflight did not check for that phase (issue 13).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible import context
from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.collections import ImmutableDict

from tests.conftest import load_module

LOOKUP = load_module("preflight_hosts_lookup_under_test", "plugins/lookup/offboard_preflight_hosts.py")
GUARD = LOOKUP.offboard_guard  # the guard module the lookup itself imported
HOSTS = ["acme-srv01", "acme-ws01"]


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(GUARD.tempfile, "tempdir", None)
    monkeypatch.setattr(context, "CLIARGS", ImmutableDict())
    GUARD.write_token(os.getpid(), {"client": "acme", "hosts": HOSTS, "phases": ["agents"]})
    yield
    GUARD.clear_token(os.getpid())


def lookup(**kwargs: object) -> list[str]:
    variables = kwargs.pop("variables", {})
    return LOOKUP.LookupModule().run([], variables=variables, **kwargs)


def test_a_selected_phase_gets_the_validated_hosts(token: None) -> None:
    assert lookup(variables={"offboard_phase": "agents"}) == HOSTS
    assert lookup(phase="agents") == HOSTS


def test_a_phase_the_run_did_not_select_gets_no_hosts(token: None) -> None:
    assert lookup(variables={"offboard_phase": "docs"}) == []
    assert lookup(phase="infra", variables={"offboard_phase": "agents"}) == []


def test_without_a_phase_every_validated_host(token: None) -> None:
    assert lookup() == HOSTS


def test_without_this_runs_preflight_it_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(GUARD.tempfile, "tempdir", None)
    monkeypatch.setattr(context, "CLIARGS", ImmutableDict())
    with pytest.raises(AnsibleLookupError, match="REFUSED"):
        lookup(variables={"offboard_phase": "agents"})
