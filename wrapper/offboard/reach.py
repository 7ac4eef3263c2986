"""Preflight: classify every host as reachable / unreachable / auth_failed in seconds, in parallel.

One short probe per host instead of one connect timeout per task: SSH (TCP + banner, then a
BatchMode login when key auth is configured), WinRM through pywinrm, PSRP through pypsrp (a
WinRS shell and `hostname`, with the psrp connection's own option defaults), and the lab's
community.docker.docker_api connection (a stopped container is unreachable, as an offline device).
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import subprocess
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from offboard.inventory import HostConn

REACHABLE, UNREACHABLE, AUTH_FAILED, NOT_CHECKED = "reachable", "unreachable", "auth_failed", "not_checked"
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Reach:
    host: str
    state: str
    reason: str
    seconds: float
    at: str = ""

    @property
    def usable(self) -> bool:
        return self.state in (REACHABLE, NOT_CHECKED)


def classify_all(hosts: list[HostConn], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Reach]:
    from offboard.records import utc_now

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(64, len(hosts))) as pool:
        results = list(pool.map(lambda h: _timed(h, timeout), hosts))
    return {r.host: Reach(r.host, r.state, r.reason, r.seconds, utc_now()) for r in results}


def _timed(host: HostConn, timeout: float) -> Reach:
    start = time.monotonic()
    try:
        state, reason = classify(host, timeout)
    except Exception as exc:
        state, reason = UNREACHABLE, f"probe error: {type(exc).__name__}: {exc}"
    return Reach(host.name, state, reason, round(time.monotonic() - start, 3))


def classify(host: HostConn, timeout: float) -> tuple[str, str]:
    conn = host.connection
    if conn in ("local",):
        return REACHABLE, "local connection"
    if conn in ("community.docker.docker_api", "docker_api", "community.docker.docker", "docker"):
        return probe_docker(host, timeout)
    if conn in ("winrm", "ansible.builtin.winrm"):
        return probe_winrm(host, timeout)
    if conn in ("psrp", "ansible.builtin.psrp"):
        return probe_psrp(host, timeout)
    if conn in ("ssh", "paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh"):
        return probe_ssh(host, timeout)
    return NOT_CHECKED, f"no preflight probe for connection {conn}"


# --- TCP / SSH ----------------------------------------------------------------------------------
def probe_tcp(address: str, port: int, timeout: float, what: str) -> tuple[str, str]:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return REACHABLE, f"{what} port {port} open"
    except TimeoutError:
        return UNREACHABLE, f"{what} {address}:{port}: no answer within {timeout:g} s"
    except OSError as exc:
        return UNREACHABLE, f"{what} {address}:{port}: {exc.strerror or exc}"


def _ssh_args(host: HostConn) -> list[str]:
    """The inventory's ansible_ssh_common_args / _extra_args, as ansible's ssh connection passes them."""
    args: list[str] = []
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        value = host.extra.get(key)
        if value:
            args += shlex.split(str(value))
    return args


def probe_ssh(host: HostConn, timeout: float) -> tuple[str, str]:
    port = host.port or 22
    if any(a == "-J" or "proxyjump" in a.lower() or "proxycommand" in a.lower() for a in _ssh_args(host)):
        # Reached through a bastion: a direct TCP probe says nothing, the login does.
        return _ssh_login(host, port, timeout)
    try:
        with socket.create_connection((host.address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(256)
    except TimeoutError:
        return UNREACHABLE, f"ssh {host.address}:{port}: no answer within {timeout:g} s"
    except OSError as exc:
        return UNREACHABLE, f"ssh {host.address}:{port}: {exc.strerror or exc}"
    if not banner.startswith(b"SSH-"):
        return UNREACHABLE, f"ssh {host.address}:{port}: not an SSH server"
    if host.password:
        return REACHABLE, "ssh answers (password auth: login not probed)"
    return _ssh_login(host, port, timeout)


def _ssh_login(host: HostConn, port: int, timeout: float) -> tuple[str, str]:
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, int(timeout))}",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-p",
        str(port),
    ]
    if host.key_file:
        argv += ["-i", os.path.expanduser(host.key_file)]
    argv += _ssh_args(host)
    target = f"{host.user}@{host.address}" if host.user else host.address
    try:
        out = subprocess.run(
            [*argv, target, "true"],
            capture_output=True,
            text=True,
            timeout=timeout * 2,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return UNREACHABLE, f"ssh login to {target}: no answer within {timeout * 2:g} s"
    except FileNotFoundError:
        return REACHABLE, "ssh answers (no ssh client here: login not probed)"
    if out.returncode == 0:
        return REACHABLE, "ssh login ok"
    err = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
    if "Permission denied" in out.stderr or "Host key verification failed" in out.stderr:
        return AUTH_FAILED, f"ssh login to {target}: {err}"
    return UNREACHABLE, f"ssh login to {target}: {err}"


# --- WinRM --------------------------------------------------------------------------------------
def probe_winrm(host: HostConn, timeout: float) -> tuple[str, str]:
    scheme = str(host.extra.get("ansible_winrm_scheme") or ("http" if host.port == 5985 else "https"))
    port = host.port or (5985 if scheme == "http" else 5986)
    state, reason = probe_tcp(host.address, port, timeout, "WinRM")
    if state != REACHABLE:
        return state, reason
    if not host.user or not host.password:
        return REACHABLE, f"{reason} (no user/password: login not probed)"
    try:
        import winrm
        from winrm.exceptions import InvalidCredentialsError
    except ImportError:
        return REACHABLE, f"{reason} (pywinrm not installed: login not probed)"
    validation = str(host.extra.get("ansible_winrm_server_cert_validation") or "validate")
    failures: list[tuple[str, str]] = []
    for transport in _winrm_transports(host, scheme):
        try:
            session = winrm.Session(
                f"{scheme}://{host.address}:{port}/wsman",
                auth=(host.user, host.password),
                transport=transport,
                server_cert_validation=validation,
                read_timeout_sec=max(1, int(timeout)) + 1,
                operation_timeout_sec=max(1, int(timeout)),
            )
            result = session.run_cmd("hostname")
        except (InvalidCredentialsError, PermissionError) as exc:
            # PermissionError: requests_ntlm got a 401 without an NTLM challenge (NTLM refused).
            failures.append((AUTH_FAILED, f"WinRM login as {host.user} ({transport}): {exc}"))
            continue
        except Exception as exc:
            failures.append(
                (UNREACHABLE, f"WinRM {host.address}:{port} ({transport}): {type(exc).__name__}: {exc}")
            )
            continue
        if result.status_code != 0:
            return REACHABLE, f"WinRM login ok ({transport}; hostname exited {result.status_code})"
        return REACHABLE, f"WinRM login ok ({transport})"
    state = AUTH_FAILED if any(s == AUTH_FAILED for s, _ in failures) else UNREACHABLE
    return state, "; ".join(reason for _, reason in failures)


# --- PSRP ---------------------------------------------------------------------------------------
def probe_psrp(host: HostConn, timeout: float) -> tuple[str, str]:
    """Log in over WS-Management with pypsrp (what ansible's psrp connection uses) and run `hostname`.

    Options are read as ansible's psrp connection reads them: protocol https unless the port is 5985,
    auth negotiate, certificate validation on, path wsman, message encryption auto."""
    extra = host.extra
    port = host.port or extra.get("ansible_psrp_port")
    protocol = str(extra.get("ansible_psrp_protocol") or ("http" if str(port) == "5985" else "https"))
    port = int(port or (5985 if protocol == "http" else 5986))
    state, reason = probe_tcp(host.address, port, timeout, "PSRP")
    if state != REACHABLE:
        return state, reason
    user = host.user or extra.get("ansible_psrp_user")
    auth = str(extra.get("ansible_psrp_auth") or "negotiate")
    if auth == "certificate":
        return REACHABLE, f"{reason} (certificate auth: login not probed)"
    if not user or not host.password:
        return REACHABLE, f"{reason} (no user/password: login not probed)"
    try:
        from pypsrp.client import Client
        from pypsrp.exceptions import AuthenticationError
    except ImportError:
        return REACHABLE, f"{reason} (pypsrp not installed: login not probed)"
    wait = max(1, int(timeout))
    try:
        client = Client(
            host.address,
            port=port,
            ssl=protocol == "https",
            path=str(extra.get("ansible_psrp_path") or "wsman"),
            auth=auth,
            cert_validation=str(extra.get("ansible_psrp_cert_validation") or "validate") != "ignore",
            username=str(user),
            password=host.password,
            encryption=str(extra.get("ansible_psrp_message_encryption") or "auto"),
            connection_timeout=wait,
            read_timeout=wait + 1,
            operation_timeout=wait,
        )
        _out, _err, rc = client.execute_cmd("hostname")
    except AuthenticationError as exc:
        return AUTH_FAILED, f"PSRP login as {user} ({auth}): {exc}"
    except Exception as exc:
        return UNREACHABLE, f"PSRP {host.address}:{port} ({auth}): {type(exc).__name__}: {exc}"
    if rc != 0:
        return REACHABLE, f"PSRP login ok ({auth}; hostname exited {rc})"
    return REACHABLE, f"PSRP login ok ({auth})"


def _winrm_transports(host: HostConn, scheme: str) -> list[str]:
    """ansible_winrm_transport as ansible's winrm connection reads it: a list (or comma string) tried in
    order; unset, kerberos for a UPN user and basic auth otherwise (plaintext on http, ssl on https)."""
    value = host.extra.get("ansible_winrm_transport")
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    transports = [str(t).strip() for t in items if str(t).strip()]
    if transports:
        return transports
    if host.user and "@" in host.user:
        return ["kerberos"]
    return ["ssl" if scheme == "https" else "plaintext"]


# --- docker_api (the lab) -----------------------------------------------------------------------
class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _docker_connection(docker_host: str, timeout: float) -> http.client.HTTPConnection:
    url = urllib.parse.urlparse(docker_host)
    if url.scheme == "unix":
        return _UnixHTTPConnection(url.path, timeout)
    if url.scheme in ("tcp", "http"):
        return http.client.HTTPConnection(url.hostname or "localhost", url.port or 2375, timeout=timeout)
    raise ValueError(f"unsupported docker_host {docker_host!r}")


def probe_docker(host: HostConn, timeout: float) -> tuple[str, str]:
    docker_host = str(
        host.extra.get("docker_host")
        or host.extra.get("ansible_docker_host")
        or os.environ.get("DOCKER_HOST")
        or "unix:///var/run/docker.sock"
    )
    container = host.address
    try:
        conn = _docker_connection(docker_host, timeout)
        conn.request("GET", f"/containers/{urllib.parse.quote(container)}/json")
        response = conn.getresponse()
        body = response.read()
        conn.close()
    except (OSError, ValueError) as exc:
        return UNREACHABLE, f"docker daemon at {docker_host} not reachable: {exc}"
    if response.status == 404:
        return UNREACHABLE, f"container {container} does not exist"
    if response.status != 200:
        return UNREACHABLE, f"docker API answered {response.status} for container {container}"
    state = json.loads(body).get("State") or {}
    if not state.get("Running"):
        return UNREACHABLE, f"container {container} is {state.get('Status', 'not running')} (device offline)"
    return REACHABLE, f"container {container} running"
