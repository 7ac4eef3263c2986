"""gpo_cleanup's logic without a domain controller: which GPOs are the MSP's (filter), how settings files
are read and matched and gPLink parsed (samba_gpo module), where exports go (offboard_export), and the
Windows scripts checked statically (no PowerShell here: they were never run, see the role README)."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import struct
import tarfile

import pytest
import yaml
from ansible.errors import AnsibleActionFail, AnsibleFilterError

from tests.conftest import ROOT
from tests.conftest import load_module as _load

gpo_filter = _load("gpo_filter", "plugins/filter/gpo.py")
samba_gpo = _load("samba_gpo", "plugins/modules/samba_gpo.py")
export = _load("offboard_export", "plugins/action/offboard_export.py")
win_static = _load("win_static", "tests/unit/test_win_agent_footprint_static.py")

CONFIG = {"name_patterns": ["^MSP - "], "setting_patterns": ["NinjaRMMAgent", r"msp\.test"]}
DDP = "{31B2F340-016D-11D2-945F-00C04FB984F9}"


def _gpo(name, guid, hits=()):
    return {"guid": guid, "name": name, "links": ["DC=lab,DC=test"], "setting_hits": list(hits)}


# --- the decision (filter) ------------------------------------------------------------------------


def test_select_by_name_and_by_settings_only():
    gpos = [
        _gpo("MSP - Patch Policy", "{a0000000-0000-0000-0000-000000000001}"),
        _gpo(
            "Workstation Baseline",
            "{A0000000-0000-0000-0000-000000000002}",
            [{"pattern": "NinjaRMMAgent", "file": "x"}],
        ),
        _gpo("Client - Drive Maps", "{A0000000-0000-0000-0000-000000000003}"),
        _gpo("msp - lower case", "{A0000000-0000-0000-0000-000000000004}"),
        _gpo("Contains MSP - inside", "{A0000000-0000-0000-0000-000000000005}"),
    ]
    picked = {g["name"]: g for g in gpo_filter.offboard_gpo_select(gpos, CONFIG)}
    assert set(picked) == {"MSP - Patch Policy", "Workstation Baseline", "msp - lower case"}
    assert picked["MSP - Patch Policy"]["guid"] == "{A0000000-0000-0000-0000-000000000001}"  # normalized
    assert picked["MSP - Patch Policy"]["reasons"] == {"name_patterns": ["^MSP - "], "settings": []}
    assert picked["Workstation Baseline"]["reasons"]["name_patterns"] == []
    assert all(g["disposition"] == "remove" for g in picked.values())


def test_default_gpos_are_never_removed_and_keep_list_wins():
    gpos = [
        _gpo(
            "Default Domain Policy", DDP.lower(), [{"pattern": r"msp\.test", "file": "Machine/Registry.pol"}]
        ),
        _gpo("MSP - Keep me", "{B0000000-0000-0000-0000-000000000001}"),
        _gpo("MSP - Keep by guid", "{B0000000-0000-0000-0000-000000000002}"),
    ]
    config = {**CONFIG, "keep": ["msp - keep me", "{b0000000-0000-0000-0000-000000000002}"]}
    picked = {g["name"]: g["disposition"] for g in gpo_filter.offboard_gpo_select(gpos, config)}
    assert picked == {
        "Default Domain Policy": "default",
        "MSP - Keep me": "keep",
        "MSP - Keep by guid": "keep",
    }


def test_setting_hits_of_patterns_not_configured_are_ignored():
    gpos = [_gpo("Client GPO", "{C0000000-0000-0000-0000-000000000001}", [{"pattern": "other", "file": "x"}])]
    assert gpo_filter.offboard_gpo_select(gpos, CONFIG) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name_patterns": ["(unclosed"]}, "not a valid regular expression"),
        ({"name_patterns": "^MSP"}, "must be a list"),
        ({"name_patterns": [""]}, "non-empty string"),
        ({}, "neither name_patterns nor setting_patterns"),
        ({"name_patterns": ["x"], "namepatterns": ["y"]}, "unknown keys: namepatterns"),
        ({"name_patterns": ["x"], "keep": "one"}, "keep must be a list"),
        (["^MSP"], "must be a mapping"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(config, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        gpo_filter.offboard_gpo_check(config)


def test_lab_inventory_patterns_are_valid():
    lab = yaml.safe_load((ROOT / "inventories/lab/group_vars/lab.yml").read_text())
    checked = gpo_filter.offboard_gpo_check(lab["offboard_gpo"])
    assert checked["name_patterns"] == ["^MSP - "]


# --- reading settings (samba_gpo) -----------------------------------------------------------------


def _preg(key: str, value: str, data: str) -> bytes:
    raw = (data + "\0").encode("utf-16-le")
    out = b"PReg" + struct.pack("<I", 1)
    out += "[".encode("utf-16-le") + (key + "\0;").encode("utf-16-le") + (value + "\0;").encode("utf-16-le")
    out += (
        struct.pack("<I", 1) + ";".encode("utf-16-le") + struct.pack("<I", len(raw)) + ";".encode("utf-16-le")
    )
    return out + raw + "]".encode("utf-16-le")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            b"\xff\xfe" + "[Startup]\r\n0CmdLine=C:\\Program Files\\NinjaRMMAgent\\x.exe".encode("utf-16-le"),
            "NinjaRMMAgent",
        ),
        (
            _preg(
                r"Software\Policies\Microsoft\Windows\WindowsUpdate", "WUServer", "http://wsus.msp.test:8530"
            ),
            "msp.test",
        ),
        (b"\xef\xbb\xbf<Groups><Group name='MSP Admins'/></Groups>", "MSP Admins"),
        ("[Logon]\r\n0CmdLine=\\\\msp-fs01\\deploy".encode("utf-16-le"), "msp-fs01"),
        ("caf\xe9 msp.test".encode("latin-1"), "msp.test"),
    ],
)
def test_settings_files_are_decoded_as_windows_writes_them(data, needle):
    assert needle in samba_gpo.decode_settings(data)


def test_setting_hits_name_files_not_values(tmp_path):
    (tmp_path / "Machine/Scripts").mkdir(parents=True)
    (tmp_path / "Machine/Scripts/scripts.ini").write_bytes(
        b"\xff\xfe" + "0CmdLine=C:\\Program Files\\NinjaRMMAgent\\a.exe".encode("utf-16-le")
    )
    (tmp_path / "Machine/Registry.pol").write_bytes(_preg("K", "V", "http://wsus.msp.test"))
    (tmp_path / "GPT.INI").write_text("[General]\nVersion=0\n")
    patterns = samba_gpo.compile_patterns(["ninjarmmagent", r"msp\.test", "nothing-here"])
    hits, files = samba_gpo.setting_hits(str(tmp_path), patterns)
    assert hits == [
        {"pattern": r"msp\.test", "file": "Machine/Registry.pol"},
        {"pattern": "ninjarmmagent", "file": "Machine/Scripts/scripts.ini"},
    ]
    assert files == ["GPT.INI", "Machine/Registry.pol", "Machine/Scripts/scripts.ini"]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        samba_gpo.compile_patterns(["[bad"])


def test_gplink_parsing():
    value = (
        "[LDAP://cn={13D0BAB3-1F69-4719-817F-29DA402C7728},cn=policies,cn=system,DC=lab,DC=test;0]"
        "[LDAP://CN={31b2f340-016d-11d2-945f-00c04fb984f9},CN=Policies,CN=System,DC=lab,DC=test;2]"
    )
    parsed = samba_gpo.parse_gplink(value)
    assert [opts for _, opts in parsed] == [0, 2]
    assert [samba_gpo.guid_of(dn) for dn, _ in parsed] == ["{13D0BAB3-1F69-4719-817F-29DA402C7728}", DDP]
    assert samba_gpo.parse_gplink("") == []


def test_backup_archive_holds_metadata_and_files(tmp_path):
    backup = tmp_path / "policy" / "{G}"
    (backup / "Machine").mkdir(parents=True)
    (backup / "GPT.INI.SAMBABACKUP").write_text("[General]\n")
    gpo = {
        "guid": "{G}",
        "name": "MSP - X",
        "dn": "CN={G}",
        "links": ["DC=lab"],
        "setting_hits": [],
        "attributes": {},
    }
    dest = tmp_path / "out.tar.gz"
    sha = samba_gpo.archive_backup(str(backup), gpo, str(dest))
    assert sha == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    with tarfile.open(dest) as tar:
        assert json.load(tar.extractfile("{G}/gpo.json"))["links"] == ["DC=lab"]
        assert "{G}/samba-tool-backup/GPT.INI.SAMBABACKUP" in tar.getnames()


# --- where exports go (offboard_export) -----------------------------------------------------------


def test_export_goes_into_the_run_folder(tmp_path):
    target, recorded = export.export_target("dc01/gpo/x.tar.gz", str(tmp_path), None)
    assert target == tmp_path / "exports/dc01/gpo/x.tar.gz"
    assert recorded == "exports/dc01/gpo/x.tar.gz"
    export.write_private(target, b"data")
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("dest", ["../x", "/etc/passwd", "a/../../b", "", ".."])
def test_export_refuses_paths_leaving_the_folder(tmp_path, dest):
    with pytest.raises(AnsibleActionFail):
        export.export_target(dest, str(tmp_path), None)


def test_export_without_evidence_run_needs_export_dir(tmp_path):
    with pytest.raises(AnsibleActionFail, match="export_dir"):
        export.export_target("x", None, None)
    target, recorded = export.export_target("x", None, str(tmp_path))
    assert target == tmp_path / "x" and recorded == str(tmp_path / "x")


# --- Windows scripts, statically ------------------------------------------------------------------

FILES = ROOT / "roles/gpo_cleanup/files"
TASKS = ROOT / "roles/gpo_cleanup/tasks"


def _params(script: str) -> set[str]:
    block = script.split("param (", 1)[1].split("\n)", 1)[0]
    return set(re.findall(r"\$(\w+)", block))


def _win_calls() -> list[dict]:
    calls = []
    for path in ("windows.yml", "windows_item.yml"):
        for task in yaml.safe_load((TASKS / path).read_text()):
            for sub in task.get("block", [task]):
                if "ansible.windows.win_powershell" in sub:
                    calls.append(sub["ansible.windows.win_powershell"])
    return calls


def test_windows_scripts_get_exactly_their_parameters():
    calls = _win_calls()
    assert len(calls) == 4
    for call in calls:
        name = re.search(r"'(gpo_\w+\.ps1)'", call["script"]).group(1)
        script = (FILES / name).read_text()
        assert set(call["parameters"]) <= _params(script), name
        mandatory = set(re.findall(r"\[Parameter\(Mandatory\)\]\[\w+\[?\]?\]\$(\w+)", script))
        assert mandatory <= set(call["parameters"]), name


@pytest.mark.parametrize("name", ["gpo_query.ps1", "gpo_backup.ps1", "gpo_remove.ps1"])
def test_windows_scripts_are_strict_and_alias_free(name):
    script = (FILES / name).read_text()
    assert "$ErrorActionPreference = 'Stop'" in script
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    code = re.sub(r"'[^']*'|\"[^\"]*\"", "''", code)
    for opener, closer in ("{}", "()", "[]"):
        assert code.count(opener) == code.count(closer), (name, opener)
    # Commands at the start of a line or pipeline stage; `foreach (...)` is the statement, not the alias.
    words = set(re.findall(r"(?:^|[|;(]\s*)([A-Za-z%?][\w-]*)\b(?!\s*\()", code, re.MULTILINE))
    assert not words & set(win_static.ALIASES), (name, words & set(win_static.ALIASES))


def test_windows_query_returns_what_the_shared_dc_tasks_read():
    script = (FILES / "gpo_query.ps1").read_text()
    for key in ("is_dc", "realm", "gpos", "link_index", "method", "reason"):
        assert re.search(rf"\b{key} = ", script), key
    for key in ("guid", "name", "dn", "links", "setting_hits", "files", "attributes"):
        assert re.search(rf"^\s+{key} = ", script, re.MULTILINE), key
    backup = (FILES / "gpo_backup.ps1").read_text()
    assert "archive = $zip" in backup and "sha256 = " in backup
    assert "unlinked = " in (FILES / "gpo_remove.ps1").read_text()
