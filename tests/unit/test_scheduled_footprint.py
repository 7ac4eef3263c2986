"""scheduled_footprint on a fake root: finds the MSP's jobs and scripts by pattern, keeps the client's
(also look-alikes), captures each definition, removes exactly what it found, and changes nothing in
check mode."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import plistlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("msf", ROOT / "plugins/modules/scheduled_footprint.py")
msf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(msf)

PATTERNS = {
    "name_patterns": ["^msp[-_]"],
    "path_patterns": ["/opt/msp-scripts/"],
    "script_dirs": ["/opt/msp-scripts"],
    "keep_patterns": ["/opt/labclient/"],
}


class FakeModule:
    def __init__(self, check=False, **params):
        self.check_mode = check
        self.params = {"capture_limit": 16384, **PATTERNS, **params}
        self.commands: list[list[str]] = []

    def run_command(self, argv, check_rc=False):
        self.commands.append(argv)
        return 0, "", ""

    def fail_json(self, **kw):
        raise RuntimeError(kw["msg"])


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
    full.chmod(mode)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    w = lambda p, t, m=0o644: _write(tmp_path, p, t, m)  # noqa: E731
    w(
        "/etc/crontab",
        "SHELL=/bin/sh\n17 * * * * root cd / && run-parts /etc/cron.hourly\n"
        "*/30 * * * * root /opt/msp-scripts/heartbeat.sh\n",
    )
    w("/etc/cron.d/msp-patch-check", "15 3 * * * root /opt/msp-scripts/patch-check.sh\n")
    w("/etc/cron.d/msp-invoice-check", "0 9 1 * * root /opt/labclient/patch-report.sh --invoices\n")
    w("/etc/cron.d/labclient-backup", "30 2 * * * root /opt/labclient/inventory-agent --backup\n")
    w(
        "/etc/cron.d/mixed",
        "MAILTO=root\n# both\n1 1 * * * root /opt/msp-scripts/a.sh\n2 2 * * * root /bin/true\n",
    )
    w("/etc/cron.d/only-msp", "MAILTO=root\n1 1 * * * root /opt/msp-scripts/b.sh\n")
    w("/etc/cron.daily/msp_cleanup", "#!/bin/sh\n/opt/msp-scripts/cleanup.sh\n", 0o755)
    w(
        "/var/spool/cron/crontabs/root",
        "0 * * * * /opt/msp-scripts/cleanup-temp.sh\n5 1 * * * /opt/labclient/inventory-agent --report\n",
        0o600,
    )
    w("/etc/systemd/system/msp-inventory.timer", "[Timer]\nOnCalendar=weekly\n")
    w("/etc/systemd/system/msp-inventory.service", "[Service]\nExecStart=/opt/msp-scripts/inventory.sh\n")
    w("/etc/systemd/system/agent-updater.service", "[Service]\nExecStart=/opt/msp-scripts/updater.sh\n")
    w("/etc/systemd/system/labclient-sync.timer", "[Timer]\nOnCalendar=weekly\n")
    w("/etc/systemd/system/labclient-sync.service", "[Service]\nExecStart=/opt/labclient/sync.sh\n")
    os.makedirs(tmp_path / "etc/systemd/system/timers.target.wants")
    os.symlink(
        "/etc/systemd/system/msp-inventory.timer",
        tmp_path / "etc/systemd/system/timers.target.wants/msp-inventory.timer",
    )
    w("/etc/profile.d/msp-env.sh", "export MSP_TENANT=x\n")
    w("/etc/profile.d/proxy.sh", "export PATH=$PATH:/opt/msp-scripts/bin\n")
    w("/etc/profile.d/labclient-env.sh", "export LABCLIENT_HOME=/opt/labclient\n")
    w(
        "/etc/rc.local",
        "#!/bin/sh -e\n/opt/labclient/inventory-agent --boot-check\n/opt/msp-scripts/boot.sh\nexit 0\n",
        0o755,
    )
    w("/opt/msp-scripts/patch-check.sh", "#!/bin/sh\necho patch\n", 0o755)
    w("/opt/msp-scripts/lib/util.sh", "helper\n")
    w(
        "/Library/LaunchDaemons/com.msp.agent.plist",
        plistlib.dumps({"Label": "msp-agent", "ProgramArguments": ["/opt/msp-scripts/agent"]}).decode(),
    )
    w(
        "/Library/LaunchDaemons/com.client.thing.plist",
        plistlib.dumps({"Label": "com.client.thing", "ProgramArguments": ["/usr/local/bin/thing"]}).decode(),
    )
    return tmp_path


def _scan(root: Path, module: FakeModule | None = None):
    scanner = msf.Scanner(module or FakeModule(), str(root))
    items, kept = scanner.scan()
    return scanner, {i["id"]: i for i in items}, kept


def test_finds_every_kind_of_msp_item_and_nothing_of_the_clients(host):
    _, items, kept = _scan(host)
    kinds = sorted({i["kind"] for i in items.values()})
    assert kinds == sorted(
        [
            "cron_line",
            "cron_file",
            "cron_script",
            "systemd",
            "profile_script",
            "rc_line",
            "script_dir",
            "launchd",
        ]
    )
    ids = set(items)
    assert "cron_file:/etc/cron.d/msp-patch-check" in ids
    assert "cron_script:/etc/cron.daily/msp_cleanup" in ids
    assert "systemd:msp-inventory.timer" in ids and "systemd:agent-updater.service" in ids
    assert (
        "profile_script:/etc/profile.d/msp-env.sh" in ids and "profile_script:/etc/profile.d/proxy.sh" in ids
    )
    assert "script_dir:/opt/msp-scripts" in ids and "launchd:msp-agent" in ids
    lines = sorted(i["line"] for i in items.values() if i["kind"] in ("cron_line", "rc_line"))
    assert lines == sorted(
        [
            "*/30 * * * * root /opt/msp-scripts/heartbeat.sh",
            "1 1 * * * root /opt/msp-scripts/a.sh",
            "1 1 * * * root /opt/msp-scripts/b.sh",
            "0 * * * * /opt/msp-scripts/cleanup-temp.sh",
            "/opt/msp-scripts/boot.sh",
        ]
    )
    everything = repr(items)
    assert (
        "labclient" not in everything
        and "com.client.thing" not in everything
        and "/bin/true" not in everything
    )
    # the look-alike named like the MSP's jobs is kept, and says why
    assert [k["id"] for k in kept] == ["cron_file:/etc/cron.d/msp-invoice-check"]
    assert kept[0]["kept_by"] == "keep_patterns: /opt/labclient/"


def test_timer_and_its_service_are_one_item_with_both_definitions(host):
    _, items, _ = _scan(host)
    timer = items["systemd:msp-inventory.timer"]
    assert timer["units"] == ["msp-inventory.timer", "msp-inventory.service"]
    assert (
        "OnCalendar=weekly" in timer["definition"]
        and "ExecStart=/opt/msp-scripts/inventory.sh" in timer["definition"]
    )
    assert "# /etc/systemd/system/msp-inventory.service" in timer["definition"]


def test_definitions_are_captured_with_hash_and_bounded(host):
    _, items, _ = _scan(host)
    cron = items["cron_file:/etc/cron.d/msp-patch-check"]
    text = "15 3 * * * root /opt/msp-scripts/patch-check.sh\n"
    assert cron["definition"] == text
    assert cron["definition_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert cron["definition_bytes"] == len(text) and cron["truncated"] is False
    folder = items["script_dir:/opt/msp-scripts"]["definition"]
    assert hashlib.sha256(b"helper\n").hexdigest() + "          7  lib/util.sh" in folder
    assert "--- patch-check.sh\n#!/bin/sh\necho patch" in folder
    _, small, _ = _scan(host, FakeModule(capture_limit=10))
    cut = small["cron_file:/etc/cron.d/msp-patch-check"]
    assert cut["definition"] == text[:10] and cut["truncated"] is True
    assert cut["definition_sha256"] == cron["definition_sha256"]  # the hash still covers the whole


def test_check_mode_removes_nothing(host):
    before = {p: p.read_bytes() for p in host.rglob("*") if p.is_file() and not p.is_symlink()}
    module = FakeModule(check=True)
    scanner, items, _ = _scan(host, module)
    msf.remove(module, scanner, list(items.values()))
    after = {p: p.read_bytes() for p in host.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before and module.commands == []


def test_removal_takes_exactly_what_was_found_and_a_rescan_is_empty(host):
    module = FakeModule()
    scanner, items, _ = _scan(host, module)
    msf.remove(module, scanner, list(items.values()))
    _, again, kept = _scan(host)
    assert again == {}
    assert [k["id"] for k in kept] == ["cron_file:/etc/cron.d/msp-invoice-check"]
    # the client's lines and files are intact, byte for byte where they share a file with the MSP's
    assert (
        host / "var/spool/cron/crontabs/root"
    ).read_text() == "5 1 * * * /opt/labclient/inventory-agent --report\n"
    assert oct((host / "var/spool/cron/crontabs/root").stat().st_mode & 0o777) == "0o600"
    assert (
        host / "etc/rc.local"
    ).read_text() == "#!/bin/sh -e\n/opt/labclient/inventory-agent --boot-check\nexit 0\n"
    assert (host / "etc/cron.d/mixed").read_text() == "MAILTO=root\n# both\n2 2 * * * root /bin/true\n"
    assert not (host / "etc/cron.d/only-msp").exists()  # nothing scheduled left in it
    assert "run-parts" in (host / "etc/crontab").read_text()
    for kept_path in (
        "etc/cron.d/labclient-backup",
        "etc/systemd/system/labclient-sync.timer",
        "etc/profile.d/labclient-env.sh",
        "Library/LaunchDaemons/com.client.thing.plist",
    ):
        assert (host / kept_path).exists(), kept_path
    assert not (host / "opt/msp-scripts").exists()
    assert not (host / "etc/systemd/system/msp-inventory.service").exists()
    assert not os.path.lexists(host / "etc/systemd/system/timers.target.wants/msp-inventory.timer")
    assert module.commands == []  # not the live root: no systemctl/launchctl


@pytest.mark.parametrize("folder", ["/opt", "/etc", "/usr/local/bin", "/", "opt/msp", "/opt/*", "/var/tmp"])
def test_script_dirs_refuse_system_folders(folder):
    assert msf.safe_path(folder) is False


def test_job_lines():
    assert msf.is_job_line("* * * * * root x")
    assert (
        not msf.is_job_line("MAILTO=root")
        and not msf.is_job_line("# 1 1 * * * x")
        and not msf.is_job_line("  ")
    )


def test_module_contract_is_documented():
    import yaml

    doc = yaml.safe_load(msf.DOCUMENTATION)
    assert doc["supports_check_mode"] is True
    assert set(doc["options"]) == {
        "name_patterns",
        "path_patterns",
        "script_dirs",
        "keep_patterns",
        "state",
        "capture_limit",
        "root",
    }
    yaml.safe_load(msf.RETURN)


_aspec = importlib.util.spec_from_file_location(
    "offboard_scheduled_cleanup", ROOT / "plugins/action/offboard_scheduled_cleanup.py"
)
cleanup = importlib.util.module_from_spec(_aspec)
_aspec.loader.exec_module(cleanup)


def test_one_call_records_every_item_kept_look_alike_and_empty_component(host):
    _, items, kept = _scan(host)
    found = list(items.values())
    rehearsal = cleanup.records_for(found, kept, [], check_mode=True)
    by_item = {r["item"]: r for r in rehearsal}
    assert {i["id"] for i in found} <= set(by_item)
    assert all(by_item[i["id"]]["action"] == "would_remove" for i in found)
    assert all(by_item[i["id"]]["verification"]["result"] == "not_verified" for i in found)
    cron = by_item["cron_file:/etc/cron.d/msp-patch-check"]
    assert cron["before"]["definition"] and cron["before"]["definition_sha256"]
    assert {f"kept:{k['id']}" for k in kept} <= set(by_item)
    # Both components have items here, so no "nothing left" record claims absence.
    assert "msp_footprint" not in by_item
    for fields in rehearsal:
        cleanup._record.validate({"phase": "agents", **fields})


def test_one_call_marks_what_the_rescan_still_sees_failed_and_records_empty_components():
    item = {
        "id": "cron_file:/etc/cron.d/msp-x",
        "component": "scheduled_task",
        "kind": "cron_file",
        "path": "/etc/cron.d/msp-x",
        "matched_by": "name",
        "definition": "* * * * * root /opt/msp-scripts/x",
        "definition_sha256": "0" * 64,
        "definition_bytes": 33,
        "truncated": False,
        "file_deleted": True,
    }
    real = cleanup.records_for([item], [], [item["id"]], check_mode=False)
    assert real[0]["action"] == "failed" and real[0]["verification"]["result"] == "still_present"
    assert real[0]["after"]["found"] is True
    gone = cleanup.records_for([item], [], [], check_mode=False)
    assert gone[0]["action"] == "removed" and gone[0]["verification"]["result"] == "verified_absent"
    empty = [r for r in gone if r["item"] == "msp_footprint"]
    assert [r["component"] for r in empty] == ["startup_script"]
    nothing = cleanup.records_for([], [], [], check_mode=True)
    assert [(r["component"], r["verification"]["result"]) for r in nothing] == [
        ("scheduled_task", "verified_absent"),
        ("startup_script", "verified_absent"),
    ]
