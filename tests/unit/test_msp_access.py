"""The access phase's pure rules: fingerprints, key lines, account matching, sudoers classification,
the documented-vs-found report and the login attempt list (plugins/modules/local_access.py and
plugins/filter/access.py)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT, load_module

rules = load_module("local_access", "plugins/modules/local_access.py")
flt = load_module("access_filter", "plugins/filter/access.py")

MSP_PUB = (ROOT / "playbooks/lab/files/msp_tech_ed25519.pub").read_text().strip()
MSP_FP = "SHA256:7MqGYYDEiIkUMnT1ofBXzqpcOTut+YkDtvREgjuZJdY"
CLIENT = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd6C+w+4z2qgMMTO/GufAxnHwViVP52Jq5rcwsHBnnS root-admin@client.test"
)
UNDOC = (
    'from="127.0.0.0/8",command="echo a b" ssh-ed25519 '
    "AAAAC3NzaC1lZDI1NTE5AAAAILhl4MyXDehkdWLfr3QTA2fMYK/DQ/X+GO/VX6YxylfH nightly-backup@departing-msp.test"
)


def test_fingerprint_equals_ssh_keygen():
    keygen = subprocess.run(
        ["ssh-keygen", "-lf", str(ROOT / "playbooks/lab/files/msp_tech_ed25519.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert rules.parse_key_line(MSP_PUB)["fingerprint"] == keygen == MSP_FP


def test_key_line_with_quoted_options_and_garbage():
    key = rules.parse_key_line(UNDOC)
    assert key["comment"] == "nightly-backup@departing-msp.test"
    assert key["options"].startswith('from="127.0.0.0/8"')
    assert rules.parse_key_line("# ssh-ed25519 AAAA comment") is None
    assert rules.parse_key_line("ssh-ed25519 not-base64!!") is None
    assert rules.parse_key_line("") is None


@pytest.mark.parametrize("given", [MSP_FP, MSP_FP[7:], MSP_FP[7:] + "=", "sha256:" + MSP_FP[7:]])
def test_fingerprints_are_normalized(given):
    assert rules.normalize_fingerprint(given) == MSP_FP


def test_msp_keys_by_fingerprint_comment_or_owner_and_client_keys_survive_byte_identical():
    text = f"# client admins\n{CLIENT}\n{MSP_PUB}\n\n{UNDOC}\n"
    keys = rules.msp_key_lines(text, False, [MSP_FP], ["*@departing-msp.test"])
    assert [(k["documented"], k["msp"], k["reason"]) for k in keys] == [
        (False, False, ""),
        (True, True, "documented fingerprint"),
        (False, True, "comment matches an MSP pattern"),
    ]
    kept = rules.without_keys(text, [k["fingerprint"] for k in keys if k["msp"]])
    assert kept == f"# client admins\n{CLIENT}\n\n"
    # In an MSP account's own file every key is the MSP's.
    assert all(k["msp"] for k in rules.msp_key_lines(CLIENT, True, [], []))


def test_accounts_documented_or_by_pattern_but_never_a_kept_one():
    passwd = rules.parse_passwd(
        "root:x:0:0:root:/root:/bin/bash\nmspadmin:x:1001:1001::/home/mspadmin:/bin/bash\n"
        "msp-tech2:x:1002:1002::/home/msp-tech2:/bin/bash\nmsp-keep:x:1003:1003::/h:/bin/sh\n"
        "alice:x:1004:1004::/home/alice:/bin/bash\n"
    )
    found = rules.msp_account_names(passwd, ["mspadmin"], ["msp-*"], ["msp-keep"])
    assert found == {"mspadmin": "documented", "msp-tech2": "pattern"}


def test_shadow_state_never_returns_the_hash():
    shadow = rules.parse_shadow("a:$6$salt$hash:20000:0:99999:7::1:\nb:!$6$x$y:20000::::::\nc:*:1:::::::\n")
    assert shadow["a"] == {"password_state": "set", "last_change": 20000, "expire": 1}
    assert shadow["b"]["password_state"] == "locked" and shadow["c"]["password_state"] == "none"
    assert "$6$" not in repr(shadow)


def test_sudoers_rules_msp_only_mixed_and_others():
    text = (
        "# comment\nDefaults env_reset\nUser_Alias OPS = alice, mspadmin\n"
        "alice ALL=(ALL:ALL) ALL\nmspadmin ALL=(ALL) NOPASSWD: ALL\n%msp-admins ALL=(ALL) ALL\n"
        "alice,msp-tech2 ALL=(root) /usr/bin/systemctl\n@includedir /etc/sudoers.d\n"
    )
    got = rules.classify_sudoers(text, ["mspadmin", "msp-tech2"], ["msp-admins"])
    assert got["msp_lines"] == ["mspadmin ALL=(ALL) NOPASSWD: ALL", "%msp-admins ALL=(ALL) ALL"]
    assert got["mixed_lines"] == ["alice,msp-tech2 ALL=(root) /usr/bin/systemctl"]
    assert got["other_rules"] == 1
    assert rules.remove_lines(text, got["msp_lines"]).count("\n") == text.count("\n") - 2


ACCESS = {
    "accounts": [
        {"name": "mspadmin", "kind": "local", "action": "revoke"},
        {"name": "msp-legacy"},
        {"name": "clientadmin", "kind": "local", "action": "keep"},
        {"name": "msp-tech1", "kind": "directory", "action": "revoke"},
        {"name": "gone-admin", "kind": "directory", "action": "keep"},
    ],
    "account_patterns": ["msp-*"],
    "ssh_key_fingerprints": [MSP_FP, "SHA256:neverseen"],
    "directory": {"msp_ou": "OU=MSP", "msp_groups": ["MSP Admins"]},
}


def test_scope_splits_local_and_directory_accounts():
    scope = flt.access_scope(ACCESS)
    assert scope["accounts"] == ["mspadmin", "msp-legacy"] and scope["keep_accounts"] == ["clientadmin"]
    assert scope["directory"]["accounts"] == ["msp-tech1"] and scope["directory"]["keep_accounts"] == [
        "gone-admin"
    ]
    assert scope["key_fingerprints"] == [MSP_FP, "SHA256:neverseen"]


def test_report_both_directions():
    found = {
        "accounts": [
            {"name": "mspadmin", "documented": True},
            {"name": "msp-tech2", "documented": False},
        ],
        "keys": [
            {"fingerprint": MSP_FP, "msp": True, "documented": True, "path": "/root/.ssh/a", "owner": "root"},
            {
                "fingerprint": "SHA256:x",
                "msp": True,
                "documented": False,
                "path": "/p",
                "owner": "o",
                "reason": "r",
            },
            {"fingerprint": "SHA256:c", "msp": False, "documented": False, "path": "/p", "owner": "o"},
        ],
        "sudoers": [
            {"path": "/etc/sudoers.d/x", "whole_file": False, "msp_lines": [], "mixed_lines": ["a,b ALL"]}
        ],
        "admin_members": [],
        "kept_present": ["clientadmin"],
        "directory": {
            "is_dc": True,
            "accounts": [{"name": "msp-tech2", "documented": False, "matched_by": "msp_ou"}],
            "groups": [],
            "kept_present": [],
        },
    }
    report = flt.access_report(
        [{"host": "h1", "os": "linux", "found": found}, {"host": "h2", "found": None, "reason": "down"}],
        ACCESS,
        "c",
    )
    kinds = sorted((u["kind"], u["name"].split(" ")[0]) for u in report["undocumented_found"])
    assert kinds == [
        ("account", "msp-tech2"),
        ("directory_account", "msp-tech2"),
        ("ssh_key", "SHA256:x"),
        ("sudoers_mixed", "a,b"),
    ]
    assert report["documented_not_found"] == [
        {"kind": "account", "name": "msp-legacy"},
        {"kind": "ssh_key", "name": "SHA256:neverseen"},
        {"kind": "directory_account", "name": "msp-tech1"},
        {"kind": "directory_kept_account", "name": "gone-admin"},
    ]
    assert report["hosts"][1] == {"host": "h2", "inventoried": False, "reason": "down"}
    markdown = flt.access_markdown(report)
    assert "msp-legacy" in markdown and "not inventoried (down)" in markdown and "Graph" in markdown


def test_nothing_is_called_missing_when_no_host_was_inventoried():
    report = flt.access_report([{"host": "h", "found": None}], ACCESS)
    assert report["documented_not_found"] == []


def test_login_attempts_hold_names_only():
    attempts = flt.login_attempts(
        ["/k1"], ["root", "mspadmin", "root"], ["mspadmin", "msp-backup"], ["mspadmin"]
    )
    assert attempts == [
        {"method": "ssh_key", "user": "root", "key_file": "/k1"},
        {"method": "ssh_key", "user": "mspadmin", "key_file": "/k1"},
        {"method": "ssh_password", "user": "mspadmin", "key_file": ""},
    ]
    assert flt.login_attempts(["/k1"], ["root"], ["u"], ["u"], True) == [
        {"method": "winrm", "user": "u", "key_file": ""}
    ]


def test_windows_findings_are_judged_like_linux():
    raw = {
        "users": [{"name": "mspadmin", "enabled": True}, {"name": "clientadmin", "enabled": True}],
        "admins": ["HOST\\mspadmin", "HOST\\clientadmin"],
        "key_files": [
            {"path": "C:/ProgramData/ssh/administrators_authorized_keys", "owner": "x", "content": MSP_PUB}
        ],
    }
    found = flt.classify_raw(raw, ACCESS, "Administrators")
    assert [a["name"] for a in found["accounts"]] == ["mspadmin"]
    assert found["accounts"][0]["admin_groups"] == ["Administrators"]
    assert [k["fingerprint"] for k in found["keys"] if k["msp"]] == [MSP_FP]


def test_attempt_outcomes_keep_no_task_argument():
    secret = "canary-arg-5d1c"
    probes = [
        {
            "__try": {"method": "ssh_password", "user": "u", "key_file": ""},
            "outcome": "refused",
            "detail": "authentication refused",
            "attempted_at": "2026-11-25T22:00:00Z",
            "address": "127.0.10.3:2222",
            "invocation": {"module_args": {"password": secret}},
        },
        {"__try": {"method": "ssh_key", "user": "root"}, "skipped": True},
    ]
    got = flt.probe_results(probes, "__try")
    assert [(g["method"], g["user"], g["outcome"]) for g in got] == [("ssh_password", "u", "refused")]
    binds = flt.bind_results(
        [{"__du": "msp-tech1", "rc": 49, "invocation": {"module_args": {"stdin": secret}}}], "__du"
    )
    assert binds == [{"user": "msp-tech1", "rc": 49, "start": ""}]
    assert secret not in repr(got) + repr(binds)
