"""offboard_login_probe's SSH classification against a real sshd on 127.0.0.1 (the fixture of
test_preflight_ssh.py starts its own, no lab, no lock): accepted, refused, unreachable."""

from __future__ import annotations

from tests.conftest import load_module
from tests.integration.test_preflight_ssh import LOOPBACK, _free_port, sshd  # noqa: F401 (fixture)

probe = load_module("login_probe", "plugins/action/offboard_login_probe.py")


def test_a_working_key_is_accepted_a_foreign_key_and_a_password_are_refused(sshd):  # noqa: F811
    ok = probe.probe_ssh(LOOPBACK, sshd.port, "root", key_file=str(sshd.good_key), password=None, timeout=5)
    assert ok[0] == "accepted", ok
    bad = probe.probe_ssh(LOOPBACK, sshd.port, "root", key_file=str(sshd.bad_key), password=None, timeout=5)
    assert bad[0] == "refused", bad
    pw = probe.probe_ssh(LOOPBACK, sshd.port, "root", key_file=None, password="canary-pw-1f2e", timeout=5)
    assert pw[0] == "refused" and "canary-pw-1f2e" not in pw[1], pw


def test_no_answer_is_unreachable_not_refused():
    out = probe.probe_ssh(LOOPBACK, _free_port(), "root", key_file=None, password="x", timeout=2)
    assert out[0] == "unreachable", out
