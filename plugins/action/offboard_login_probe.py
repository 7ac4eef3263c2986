# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: try to log in the way the departing MSP would, from the controller, and say whether
the login was refused. Used by the access_verification role after revocation.

Runs on the controller only (never through the host's connection): a login attempt must travel the
same path as the MSP's own (SSH, WinRM, LDAP), not a management channel. The outcome is one of
`refused` (the server answered and denied the credential: verified), `accepted` (the credential still
works), `unreachable` (no answer within the timeout: not verified) or `error` (something else: not
verified). The password is never returned; tasks calling this set no_log and record the outcome in a
separate offboard_record task.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
module: offboard_login_probe
short_description: Attempt the MSP's login (SSH key or password, LDAP bind, WinRM); report refused or accepted
description:
  - Connects from the controller with a short timeout; never runs anything on the host when a login succeeds.
  - Set no_log on the task when a password is passed; the result holds no secret.
options:
  method: {description: Login method., type: str, required: true,
           choices: [ssh_key, ssh_password, ldap_bind, winrm]}
  address: {description: Address to connect to., type: str, required: true}
  port: {description: TCP port (22, 389, 5985/5986 by default per method)., type: int}
  user: {description: Login name (for ldap_bind a DN or user@realm)., type: str, required: true}
  key_file: {description: Private key file for ssh_key., type: path}
  password: {description: Password for ssh_password, ldap_bind, winrm., type: str}
  timeout: {description: Seconds for connect and authentication., type: int, default: 8}
  winrm_transport: {description: pywinrm transport., type: str, default: ntlm}
"""

RETURN = r"""
outcome: {description: refused, accepted, unreachable or error., type: str, returned: always}
detail: {description: What the server said (no secret)., type: str, returned: always}
method: {description: The method tried., type: str, returned: always}
attempted_at: {description: UTC time of the attempt (ISO 8601)., type: str, returned: always}
"""

_DEFAULT_PORTS = {"ssh_key": 22, "ssh_password": 22, "ldap_bind": 389, "winrm": 5985}


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def probe_ssh(
    address: str, port: int, user: str, *, key_file: str | None, password: str | None, timeout: int
) -> tuple[str, str]:
    """One SSH authentication attempt with exactly one credential (no agent, no default keys)."""
    import paramiko  # controller dependency (pyproject); imported late so other plugins never need it

    client = paramiko.SSHClient()
    # The probe proves a credential is dead; it opens no session and sends only that credential.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            address,
            port=port,
            username=user,
            key_filename=key_file,
            password=password,
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            auth_timeout=timeout,
            banner_timeout=timeout,
        )
    except paramiko.AuthenticationException as exc:
        return "refused", f"authentication refused by the server: {type(exc).__name__}"
    except (TimeoutError, ConnectionRefusedError, OSError) as exc:
        return "unreachable", f"no SSH answer from {address}:{port}: {type(exc).__name__}: {exc}"
    except paramiko.SSHException as exc:
        return "error", f"SSH error before authentication finished: {exc}"
    finally:
        transport = client.get_transport()
        authenticated = bool(transport and transport.is_authenticated())
        client.close()
    if authenticated:
        return "accepted", f"{user} logged in over SSH to {address}:{port}"
    return "error", "SSH connect returned without an authenticated session"


def probe_ldap(address: str, port: int, user: str, password: str, timeout: int) -> tuple[str, str]:
    """A simple bind with ldapwhoami (ldap-utils): rc 49 is invalidCredentials (also disabled AD users)."""
    if shutil.which("ldapwhoami") is None:
        return "error", "ldapwhoami is not installed on the controller (apt-get install ldap-utils)"
    proc = subprocess.run(
        [
            "ldapwhoami",
            "-x",
            "-H",
            f"ldap://{address}:{port}",
            "-D",
            user,
            "-y",
            "/dev/stdin",
            "-o",
            f"nettimeout={timeout}",
        ],
        input=password,
        text=True,
        capture_output=True,
        timeout=timeout + 5,
        check=False,
    )
    said = (proc.stderr or proc.stdout).strip().splitlines()
    first = said[0] if said else ""
    if proc.returncode == 0:
        return "accepted", f"LDAP bind as {user} succeeded ({proc.stdout.strip()})"
    if proc.returncode == 49 or "Invalid credentials" in proc.stderr:
        # AD adds the reason code: data 533 = account disabled, 52e = bad password, 775 = locked out.
        return "refused", f"LDAP bind refused: {(proc.stderr.strip().splitlines() or [''])[-1][:200]}"
    if proc.returncode == 255 or "Can't contact LDAP server" in proc.stderr:
        return "unreachable", f"no LDAP answer from {address}:{port}: {first[:200]}"
    return "error", f"ldapwhoami rc {proc.returncode}: {first[:200]}"


def probe_winrm(
    address: str, port: int, user: str, password: str, timeout: int, transport: str
) -> tuple[str, str]:
    """Open a WinRM shell as the MSP's user (pywinrm); HTTP 401 is a refused login."""
    import winrm  # pywinrm, a project dependency
    from winrm.exceptions import InvalidCredentialsError, WinRMTransportError

    scheme = "https" if port == 5986 else "http"
    session = winrm.Session(
        f"{scheme}://{address}:{port}/wsman",
        auth=(user, password),
        transport=transport,
        server_cert_validation="ignore",
        read_timeout_sec=timeout + 2,
        operation_timeout_sec=timeout,
    )
    try:
        session.run_cmd("hostname")
    except InvalidCredentialsError as exc:
        return "refused", f"WinRM refused the credentials: {str(exc)[:200]}"
    except (WinRMTransportError, OSError) as exc:
        return "unreachable", f"no WinRM answer from {address}:{port}: {str(exc)[:200]}"
    except Exception as exc:  # requests raises its own ConnectionError/Timeout family
        return "unreachable", f"WinRM connection failed: {type(exc).__name__}: {str(exc)[:200]}"
    return "accepted", f"{user} opened a WinRM shell on {address}:{port}"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(
        ("method", "address", "port", "user", "key_file", "password", "timeout", "winrm_transport")
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args: dict[str, Any] = dict(self._task.args)
        method = args.get("method")
        if method not in _DEFAULT_PORTS:
            raise AnsibleActionFail(f"method must be one of {sorted(_DEFAULT_PORTS)}, got {method!r}")
        for required in ("address", "user"):
            if not args.get(required):
                raise AnsibleActionFail(f"{required} is required")
        port = int(args.get("port") or _DEFAULT_PORTS[method])
        timeout = int(args.get("timeout") or 8)
        password = args.get("password")
        attempted_at = _utc_now()
        if method == "ssh_key":
            if not args.get("key_file"):
                raise AnsibleActionFail("ssh_key needs key_file (the MSP's private key on the controller)")
            outcome, detail = probe_ssh(
                args["address"], port, args["user"], key_file=args["key_file"], password=None, timeout=timeout
            )
        elif not password:
            raise AnsibleActionFail(f"{method} needs password")
        elif method == "ssh_password":
            outcome, detail = probe_ssh(
                args["address"], port, args["user"], key_file=None, password=password, timeout=timeout
            )
        elif method == "ldap_bind":
            outcome, detail = probe_ldap(args["address"], port, args["user"], password, timeout)
        else:
            outcome, detail = probe_winrm(
                args["address"], port, args["user"], password, timeout, args.get("winrm_transport") or "ntlm"
            )
        result.update(
            changed=False,
            outcome=outcome,
            detail=detail,
            method=method,
            attempted_at=attempted_at,
            address=f"{args['address']}:{port}",
        )
        return result
