"""offboard_export: exports land owner-only below the run's evidence folder; unsafe names and runs without
an evidence folder are refused with a message saying what to do."""

from __future__ import annotations

import hashlib
import stat

import pytest
from ansible.errors import AnsibleActionFail

from tests.conftest import load_module

exp = load_module("offboard_export", "plugins/action/offboard_export.py")


def test_export_written_owner_only_with_its_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFBOARD_EVIDENCE_RUN_DIR", str(tmp_path))
    _run_dir, exports = exp.export_root({})
    folder = exp.host_dir(exports, "lab-fw01")
    dest, digest, size = exp.write_export(folder, "firewall/nftables.rules", "table inet filter {}\n")
    assert dest == tmp_path / "exports" / "lab-fw01" / "firewall" / "nftables.rules"
    assert digest == hashlib.sha256(dest.read_bytes()).hexdigest() and size == 21
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_fallback_folder_outside_an_offboarding(tmp_path, monkeypatch):
    monkeypatch.delenv("OFFBOARD_EVIDENCE_RUN_DIR", raising=False)
    assert exp.export_root({"offboard_export_dir": str(tmp_path)}) == (tmp_path, tmp_path / "exports")
    with pytest.raises(AnsibleActionFail, match="offboard_export_dir"):
        exp.export_root({})


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/abs", "a/b/c", "", "x y"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(AnsibleActionFail, match="unsafe export name"):
        exp.check_name(name)
