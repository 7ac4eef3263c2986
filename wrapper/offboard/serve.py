"""`offboard serve`: the PSA webhook receiver that starts a client's plan (issue 17).

POST /psa/<name> (name: a PSA file, e.g. connectwise, halopsa). Each call is authenticated (the PSA's
signature where it has one, else its shared secret; constant-time), read through that PSA's field
mapping, checked against the delivery ids already handled (persisted beside the evidence), and mapped to
a client by offboard_psa in the inventories. A status change to the PSA's offboarding value runs
`offboard start` for that client once and sends the kick-off notices; a second delivery, or the same
change again, starts nothing. Bad calls get a 4xx and one log line, never a traceback, never a start.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from offboard import checklist, cmdshared, jsonout, notify, paths, psa
from offboard.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, UsageError
from offboard.evidence import EvidenceStore
from offboard.helptext import add_command

log = logging.getLogger("offboard.serve")
DEFAULT_PORT = 8765
DEFAULT_MAX_BODY = 256 * 1024  # a ConnectWise company callback carries the whole record: a few KiB


class Receiver:
    """Everything one request needs, shared by the handler threads."""

    def __init__(
        self, store: EvidenceStore, configs: dict[str, psa.PsaConfig], max_body: int, extra: Path | None
    ):
        self.store = store
        self.configs = configs
        self.max_body = max_body
        self.extra = extra
        self.deliveries = psa.DeliveryLog(store.root / psa.DELIVERIES)
        self.lock = threading.Lock()  # one delivery at a time: "once" holds across threads

    def handle(self, name: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any], str]:
        """(HTTP status, JSON answer, log line) for one call; raises only PsaError."""
        cfg = self.configs.get(name)
        if cfg is None:
            raise psa.PsaError(404, f"no PSA named {name!r} (known: {', '.join(sorted(self.configs))})")
        needs_payload = cfg.auth["scheme"] == "connectwise_signature"  # its key URL is in the body
        if not needs_payload:
            psa.authenticate(cfg, headers, body, None)  # nothing of an unauthenticated body is read
        try:
            payload: Any = json.loads(body)
        except ValueError:
            raise psa.PsaError(400, "body is not JSON") from None
        if needs_payload:
            psa.authenticate(cfg, headers, body, payload)
        delivery = psa.read_delivery(cfg, payload)
        tag = f"delivery {delivery.delivery_id}"
        with self.lock:
            if self.deliveries.seen(cfg.name, delivery.delivery_id):
                return 200, {"status": "duplicate"}, f"{tag}: replayed delivery ignored"
            if not delivery.matched:
                self._done(delivery, "ignored")
                return 202, {"status": "ignored"}, f"{tag}: ignored ({delivery.why_ignored})"
            if delivery.status.lower() != cfg.offboarding_status.lower():
                self._done(delivery, "ignored")
                return (
                    202,
                    {"status": "ignored"},
                    f"{tag}: company {delivery.company_id} status {delivery.status!r} is not "
                    f"{cfg.offboarding_status!r}",
                )
            found = psa.find_client(paths.project_root(), cfg, delivery.company_id)
            if found is None:
                # Not remembered: once the inventory maps this company, the PSA's retry starts it.
                raise psa.PsaError(
                    422,
                    f"{tag}: no client inventory has offboard_psa.{cfg.name}.{cfg.client_key} = "
                    f"{delivery.company_id}",
                )
            client, link = found
            if delivery.ticket_id:
                link = psa.Link(link.psa, link.company_id, delivery.ticket_id)
            if checklist.read_history(self.store, client).plan is not None:
                self._done(delivery, f"already started: {client}")
                return (
                    200,
                    {"status": "already started", "client": client},
                    f"{tag}: {client} already has a plan",
                )
            code = self._start(client, link, delivery)
            if code is not None:
                raise psa.PsaError(422, f"{tag}: cannot start client {client}: {code}")
            self._done(delivery, f"started: {client}")
            return 201, {"status": "started", "client": client}, f"{tag}: plan of client {client} started"

    def _done(self, delivery: psa.Delivery, outcome: str) -> None:
        self.deliveries.add(delivery.psa, delivery.delivery_id, outcome, psa.now_iso())

    def _start(self, client: str, link: psa.Link, delivery: psa.Delivery) -> str | None:
        """Run `start` (plan recorded with the PSA link) and the kick-off notices; None when started."""
        try:
            checklist.start.start(
                client,
                evidence_dir=self.store.root,
                psa_link={**link.as_dict(), "delivery_id": delivery.delivery_id, "status": delivery.status},
            )
        except UsageError as exc:
            return str(exc)
        cvars = checklist.load_client_vars(client, paths.project_root())
        ch = notify.channels(cvars.values.get("offboard_notify"))
        if ch.names:
            checklist.remind_client(client, ch, evidence_dir=self.store.root)
        else:
            log.warning("%s: no notification channel configured: kick-off notices not sent", client)
        return None


class Handler(BaseHTTPRequestHandler):
    receiver: Receiver
    server_version = "offboard"
    sys_version = ""
    timeout = 15  # a client that stalls mid-request does not hold a thread forever

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        name = path[len("/psa/") :] if path.startswith("/psa/") else ""
        where = f"{self.client_address[0]} POST {path}"
        try:
            if not name:
                raise psa.PsaError(404, "unknown path (POST /psa/<psa name>)")
            if self.headers.get("Transfer-Encoding"):
                raise psa.PsaError(411, "chunked bodies are not accepted: send Content-Length")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise psa.PsaError(411, "no Content-Length") from None
            if length < 0 or length > self.receiver.max_body:
                raise psa.PsaError(
                    413, f"body of {length} bytes is over the limit of {self.receiver.max_body}"
                )
            body = self.rfile.read(length)
            status, answer, line = self.receiver.handle(name, self.headers, body)
            log.info("%s -> %d %s", where, status, line)
            self._answer(status, answer)
        except psa.PsaError as exc:
            log.warning("%s -> %d %s", where, exc.status, exc.reason)
            self._answer(exc.status, {"error": exc.reason})
        except Exception as exc:  # a bug must not kill the receiver nor print a traceback with data in it
            log.error("%s -> 500 internal error (%s)", where, type(exc).__name__)
            self._answer(500, {"error": "internal error"})

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            self._answer(200, {"status": "ok", "psa": sorted(self.receiver.configs)})
        else:
            self._answer(405, {"error": "POST /psa/<psa name>"})

    do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per call comes from do_POST, without headers


def make_server(
    store: EvidenceStore,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    max_body: int = DEFAULT_MAX_BODY,
    extra: Path | None = None,
) -> ThreadingHTTPServer:
    configs = psa.load_configs(extra)
    handler = type("BoundHandler", (Handler,), {"receiver": Receiver(store, configs, max_body, extra)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _evidence_root(args: argparse.Namespace) -> Path:
    return args.evidence_dir.resolve() if args.evidence_dir else paths.evidence_root()


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted. With --json: one document when listening (or refused), one when stopped."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        try:
            server = make_server(
                EvidenceStore(_evidence_root(args)), args.bind, args.port, args.max_body, args.psa_config
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from None
    except UsageError as exc:
        if not args.json:
            raise
        print(f"offboard: {exc}", file=sys.stderr)
        return jsonout.emit("serve", EXIT_USAGE, {"state": "refused", "error": str(exc)})
    host, port = server.server_address[:2]
    names = sorted(server.RequestHandlerClass.receiver.configs)  # type: ignore[attr-defined]
    if args.bind not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "listening on %s: put a TLS reverse proxy in front; every call is authenticated", args.bind
        )
    log.info("listening on http://%s:%d/psa/<%s>", host, port, "|".join(names))
    if args.json:
        listening = {"state": "listening", "url": f"http://{host}:{port}/psa/", "psas": names}
        jsonout.emit("serve", EXIT_OK, listening)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    if args.json:
        return jsonout.emit("serve", EXIT_OK, {"state": "stopped"})
    return EXIT_OK


def cmd_psa_sync(args: argparse.Namespace) -> int:
    out = sys.stderr if args.json else sys.stdout  # with --json, stdout carries the one JSON document
    records = psa.sync_client(EvidenceStore(_evidence_root(args)), args.client, args.psa_config, out=out)
    code = EXIT_OK if all(r["ok"] for r in records) else EXIT_ERROR
    if not records:
        print(
            f"{args.client}: nothing to post (no completed step unreported, or no PSA API configured)",
            file=out,
        )
    if args.json:
        keys = ("step", "psa", "target", "http_status", "attempts", "ok", "error")
        posts = [{k: r[k] for k in keys} for r in records]
        return jsonout.emit("psa-sync", code, {"client": args.client, "posts": posts})
    return code


def _add_store_and_psa_files(p: argparse.ArgumentParser) -> None:
    """--json, --evidence-dir and --psa-config: what serve and psa-sync both take."""
    jsonout.add_flag(p)
    cmdshared.add_evidence_dir(p)
    p.add_argument(
        "--psa-config",
        type=Path,
        metavar="DIR",
        help="directory of PSA files (<name>.yml) adding to or replacing the shipped ones "
        "(default: $OFFBOARD_PSA_CONFIG_DIR)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    _register_serve(sub)
    _register_psa_sync(sub)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve")
    _add_store_and_psa_files(p)
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)"
    )
    p.add_argument(
        "--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES", help="largest body accepted"
    )
    p.set_defaults(func=cmd_serve)


def _register_psa_sync(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "psa-sync")
    p.add_argument("client", metavar="CLIENT")
    _add_store_and_psa_files(p)
    p.set_defaults(func=cmd_psa_sync)
