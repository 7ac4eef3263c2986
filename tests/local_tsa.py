"""A real RFC 3161 time-stamp authority on 127.0.0.1 for tests: `openssl ts -reply` behind a tiny HTTP server.

A throwaway CA issues a TSA certificate (extendedKeyUsage critical timeStamping); each POSTed query is
answered by `openssl ts -reply`. Clients check tokens with `openssl ts -verify -CAfile ca.pem`.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class LocalTSA:
    url: str
    ca: Path
    requests: list[int]  # one entry per answered query


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_pki(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=offboard test TSA CA",
             cwd=d)  # fmt: skip
    (d / "tsa.ext").write_text("extendedKeyUsage = critical,timeStamping\nbasicConstraints = CA:FALSE\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=offboard test TSA", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "tsa.pem", "-days", "2", "-extfile", "tsa.ext", cwd=d)  # fmt: skip
    (d / "serial").write_text("01\n")
    (d / "tsa.cnf").write_text(_CONFIG.format(dir=d))


@contextmanager
def running_tsa(home: Path) -> Iterator[LocalTSA]:
    """A TSA whose keys and CA live in `home` (kept after it stops, so tokens can still be checked)."""
    d = home
    d.mkdir(parents=True, exist_ok=True)
    _make_pki(d)
    answered: list[int] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock, tempfile.TemporaryDirectory(dir=d) as work:
                query, reply = Path(work) / "q.tsq", Path(work) / "r.tsr"
                query.write_bytes(body)
                out = subprocess.run(
                    ["openssl", "ts", "-reply", "-config", str(d / "tsa.cnf"), "-queryfile", str(query),
                     "-out", str(reply)],
                    capture_output=True, timeout=60, check=False,
                )  # fmt: skip
                data = reply.read_bytes() if out.returncode == 0 and reply.exists() else b""
            if not data:
                self.send_error(500, "openssl ts -reply failed")
                return
            answered.append(len(data))
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalTSA(f"http://127.0.0.1:{server.server_address[1]}/tsa", d / "ca.pem", answered)
    finally:
        server.shutdown()
        server.server_close()
