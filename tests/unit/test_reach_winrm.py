"""reach.py's WinRM / PSRP classification against a fake WinRM listener on 127.0.0.1.

The listener speaks enough WS-Management for pywinrm's run_cmd (Create, Command, Receive, Signal,
Delete) and authenticates like a Windows listener: Basic, or a real NTLM handshake (pyspnego acceptor)
followed by NTLM-sealed messages over http. No Windows host, no address outside 127.0.0.0/8.
"""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import spnego
from offboard import reach
from offboard.inventory import HostConn

LOOPBACK = "127.0.0.1"
USER, PASSWORD = "ansible", "S3cret!"
NTLM_USER = f"WORKGROUP\\{USER}"
BOUNDARY = b"--Encrypted Boundary"
SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"


# --- the fake listener --------------------------------------------------------------------------
def _soap_reply(request: bytes) -> bytes:
    root = ET.fromstring(request)
    text = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
    action = text.get("Action", "").rsplit("/", 1)[-1]
    shell = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
    if action == "Create":
        body = (
            "<x:ResourceCreated><a:ReferenceParameters><w:SelectorSet>"
            '<w:Selector Name="ShellId">11111111-2222-3333-4444-555555555555</w:Selector>'
            "</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
        )
    elif action == "Command":
        command_id = "C0FFEE00-0000-0000-0000-000000000000"
        body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
    elif action == "Receive":
        out = base64.b64encode(b"WIN-FAKE01\r\n").decode()
        body = (
            f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C">{out}</rsp:Stream>'
            f'<rsp:CommandState CommandId="C" State="{shell}/CommandState/Done">'
            "<rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>"
        )
    elif action == "Signal":
        body = "<rsp:SignalResponse/>"
    else:  # Delete
        body = ""
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        f'xmlns:rsp="{shell}"><s:Header>'
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        f"<a:RelatesTo>{text.get('MessageID', '')}</a:RelatesTo>"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


class _Listener(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # NTLM authenticates the connection: keep it alive
    server: _Server
    ntlm: spnego.ContextProxy | None = None

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self, token: bytes | None = None) -> None:
        negotiate = "Negotiate" + (f" {base64.b64encode(token).decode()}" if token else "")
        headers = [("WWW-Authenticate", negotiate)]
        if self.server.mode == "basic":
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, headers=headers)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        auth = self.headers.get("Authorization", "")
        mode = self.server.mode
        if mode == "not_winrm":
            self._send(404, b"<html>Not Found</html>", [("Content-Type", "text/html")])
        elif mode == "negotiate_only":  # e.g. Kerberos only: NTLM and Basic refused
            self._challenge()
        elif mode == "basic":
            good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if auth != good:
                self._challenge()
            else:
                self._send(200, _soap_reply(body), [("Content-Type", "application/soap+xml;charset=UTF-8")])
        else:
            self._ntlm(body, auth)

    def _ntlm(self, body: bytes, auth: str) -> None:
        if auth.startswith("Negotiate "):
            token = base64.b64decode(auth.split(" ", 1)[1])
            if self.ntlm is None or self.ntlm.complete:
                # pywinrm sends raw NTLM tokens, pypsrp's "negotiate" SPNEGO-wrapped ones: accept both,
                # with NTLM inside (no Kerberos here).
                raw = token.startswith(b"NTLMSSP\x00")
                self.ntlm = (
                    spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
                    if raw
                    else spnego.server(protocol="negotiate", options=spnego.NegotiateOptions.use_negotiate)
                )
            try:
                out = self.ntlm.step(token)
            except spnego.exceptions.SpnegoError:
                self.ntlm = None
                return self._challenge()
            if not self.ntlm.complete:
                return self._challenge(out)
            # SPNEGO ends with the acceptor's last token (mechListMIC) on the accepting reply.
            final = [("WWW-Authenticate", f"Negotiate {base64.b64encode(out).decode()}")] if out else []
        else:
            final = []
        if self.ntlm is None or not self.ntlm.complete:
            return self._challenge()
        if not body:  # pywinrm's blank request that sets up the security context
            return self._send(200, headers=final)
        payload = [p for p in body.split(BOUNDARY + b"\r\n") if p][1]
        stream = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        stream = stream.removesuffix(BOUNDARY + b"--\r\n")
        sig_len = struct.unpack("<i", stream[:4])[0]
        request = self.ntlm.unwrap_winrm(stream[4 : 4 + sig_len], stream[4 + sig_len :])
        reply = _soap_reply(request)
        wrapped = self.ntlm.wrap_winrm(reply)
        sealed = (
            BOUNDARY + b"\r\n"
            b"\tContent-Type: " + SPNEGO_ENCRYPTED.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(reply)).encode()
            + b"\r\n"
            + BOUNDARY
            + b"\r\n\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(wrapped.header))
            + wrapped.header
            + wrapped.data
            + BOUNDARY
            + b"--\r\n"
        )
        content_type = f'multipart/encrypted;protocol="{SPNEGO_ENCRYPTED}";boundary="Encrypted Boundary"'
        self._send(200, sealed, [("Content-Type", content_type), *final])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode = "basic"
    requests = 0


@pytest.fixture
def listener(tmp_path, monkeypatch) -> Iterator[_Server]:
    users = tmp_path / "ntlm_users"
    users.write_text(f"WORKGROUP:{USER}:{PASSWORD}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))  # the pyspnego NTLM acceptor's credential store
    server = _Server((LOOPBACK, 0), _Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _host(
    port: int, connection: str = "winrm", user: str | None = USER, password: str | None = PASSWORD, **extra
):
    extra.setdefault("ansible_winrm_scheme", "http")
    return HostConn(
        name="acme-win01",
        connection=connection,
        address=LOOPBACK,
        port=port,
        user=user,
        password=password,
        extra={"ansible_connection": connection, "ansible_port": port, **extra},
    )


def _classify(host: HostConn) -> tuple[str, str]:
    start = time.monotonic()
    result = reach.classify(host, timeout=3)
    assert time.monotonic() - start < 5, result
    return result


# --- WinRM ----------------------------------------------------------------------------------------
def test_basic_listener_right_password_is_reachable_with_ansibles_default_transport(listener):
    # No ansible_winrm_transport: ansible uses basic auth (plaintext over http), so must the preflight.
    state, reason = _classify(_host(listener.server_port))
    assert (state, reason) == (reach.REACHABLE, "WinRM login ok (plaintext)")
    assert listener.requests == 5  # Create, Command, Receive, Signal, Delete: a real login and command


def test_basic_listener_wrong_password_is_auth_failed(listener):
    state, reason = _classify(_host(listener.server_port, password="wrong"))
    assert state == reach.AUTH_FAILED, reason
    assert "credentials were rejected" in reason and "wrong" not in reason


def test_ntlm_right_password_is_reachable(listener):
    listener.mode = "ntlm"
    state, reason = _classify(_host(listener.server_port, user=NTLM_USER, ansible_winrm_transport="ntlm"))
    assert (state, reason) == (reach.REACHABLE, "WinRM login ok (ntlm)")


def test_ntlm_wrong_password_is_auth_failed(listener):
    listener.mode = "ntlm"
    host = _host(listener.server_port, user=NTLM_USER, password="wrong", ansible_winrm_transport="ntlm")
    state, reason = _classify(host)
    assert state == reach.AUTH_FAILED, reason
    assert "credentials were rejected" in reason


def test_listener_refusing_the_auth_method_is_auth_failed(listener):
    listener.mode = "negotiate_only"
    for transport in ("ntlm", "plaintext"):
        state, reason = _classify(_host(listener.server_port, ansible_winrm_transport=transport))
        assert state == reach.AUTH_FAILED, (transport, reason)


def test_transport_list_is_tried_in_order_like_ansible(listener):
    # NTLM refused by this basic-only listener, basic accepted: ansible would connect, so reachable.
    state, reason = _classify(_host(listener.server_port, ansible_winrm_transport=["ntlm", "plaintext"]))
    assert (state, reason) == (reach.REACHABLE, "WinRM login ok (plaintext)")
    state, reason = _classify(_host(listener.server_port, ansible_winrm_transport="ntlm, plaintext"))
    assert state == reach.REACHABLE, reason


def test_connection_refused_is_unreachable():
    port = _closed_port()
    state, reason = _classify(_host(port))
    assert state == reach.UNREACHABLE
    assert f"{LOOPBACK}:{port}" in reason and "refused" in reason.lower()


def test_a_web_server_that_is_not_winrm_is_unreachable(listener):
    listener.mode = "not_winrm"
    state, reason = _classify(_host(listener.server_port))
    assert state == reach.UNREACHABLE
    assert "404" in reason


def test_without_credentials_only_the_port_is_probed(listener):
    state, reason = _classify(_host(listener.server_port, user=None, password=None))
    assert state == reach.REACHABLE
    assert "login not probed" in reason
    assert listener.requests == 0


def test_default_transport_follows_ansible():
    assert reach._winrm_transports(_host(5986, ansible_winrm_scheme="https"), "https") == ["ssl"]
    assert reach._winrm_transports(_host(5985), "http") == ["plaintext"]
    assert reach._winrm_transports(_host(5986, user="svc@CORP.EXAMPLE.COM"), "https") == ["kerberos"]
    assert reach._winrm_transports(_host(5986, ansible_winrm_transport="credssp"), "https") == ["credssp"]


def test_classify_all_runs_winrm_hosts_in_parallel(listener):
    hosts = [
        HostConn(
            "acme-ok",
            "winrm",
            LOOPBACK,
            listener.server_port,
            USER,
            PASSWORD,
            extra={"ansible_winrm_scheme": "http"},
        ),
        HostConn(
            "acme-bad",
            "winrm",
            LOOPBACK,
            listener.server_port,
            USER,
            "nope",
            extra={"ansible_winrm_scheme": "http"},
        ),
        HostConn(
            "acme-off",
            "winrm",
            LOOPBACK,
            _closed_port(),
            USER,
            PASSWORD,
            extra={"ansible_winrm_scheme": "http"},
        ),
    ]
    start = time.monotonic()
    results = reach.classify_all(hosts, timeout=3)
    assert time.monotonic() - start < 10
    assert {h: r.state for h, r in results.items()} == {
        "acme-ok": reach.REACHABLE,
        "acme-bad": reach.AUTH_FAILED,
        "acme-off": reach.UNREACHABLE,
    }


# --- PSRP: a real login with pypsrp, options read as ansible's psrp connection reads them ---------
def _psrp(port: int, **extra) -> HostConn:
    extra.setdefault("ansible_psrp_protocol", "http")
    if extra.get("ansible_psrp_auth") == "basic":  # ansible refuses basic over http with encryption on
        extra.setdefault("ansible_psrp_message_encryption", "never")
    return _host(port, connection="psrp", **extra)


def test_psrp_basic_login_right_password_is_reachable(listener):
    state, reason = _classify(_psrp(listener.server_port, ansible_psrp_auth="basic"))
    assert (state, reason) == (reach.REACHABLE, "PSRP login ok (basic)")
    assert listener.requests >= 3  # a shell was created and a command run, not just a port probe


def test_psrp_wrong_password_is_auth_failed_and_the_password_is_not_echoed(listener):
    state, reason = _classify(_psrp(listener.server_port, ansible_psrp_auth="basic", password="wr0ng-pw"))
    assert state == reach.AUTH_FAILED, reason
    assert "wr0ng-pw" not in reason


def test_psrp_default_negotiate_auth_logs_in_with_ntlm(listener):
    listener.mode = "ntlm"
    state, reason = _classify(_psrp(listener.server_port, user=NTLM_USER))
    assert (state, reason) == (reach.REACHABLE, "PSRP login ok (negotiate)")


def test_psrp_closed_port_is_unreachable_and_no_credentials_probes_the_port_only(listener):
    state, reason = _classify(_psrp(_closed_port()))
    assert state == reach.UNREACHABLE and "refused" in reason.lower()
    state, reason = _classify(_psrp(listener.server_port, user=None, password=None))
    assert state == reach.REACHABLE and "login not probed" in reason
    assert listener.requests == 0


def test_psrp_protocol_and_port_defaults_follow_ansible(listener, monkeypatch):
    probed: list[tuple[int, str]] = []
    monkeypatch.setattr(reach, "probe_tcp", lambda a, port, t, what: probed.append((port, what)) or ("x", ""))
    for port, protocol in ((None, None), (5985, None), (None, "http"), (8443, "https")):
        extra = {"ansible_psrp_protocol": protocol} if protocol else {}
        host = HostConn("w", "psrp", LOOPBACK, port, USER, PASSWORD, extra=extra)
        reach.probe_psrp(host, 1)
    assert probed == [(5986, "PSRP"), (5985, "PSRP"), (5985, "PSRP"), (8443, "PSRP")]
