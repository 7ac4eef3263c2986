# Copyright: the offboard project contributors
# Apache-2.0
"""Callback: write the run's evidence records (records.jsonl), for wrapper and plain ansible-playbook runs.

Writes one JSON line per `offboard_record` task result (also inside loops), per unreachable host in a
phase, a `phase_start` when a phase play begins running tasks and a per-host `phase_end` (ok, failed,
unreachable) when it ends, so the ledger tells "phase finished for this host" from "never reached".

Under the wrapper (OFFBOARD_EVIDENCE_RUN_DIR and OFFBOARD_RUN_ID set) it only writes records; the
wrapper keeps metadata, artifacts and the manifest. For a plain ansible-playbook run it creates
evidence/<client>/<run-id>/ itself when the first phase starts, and at the end writes metadata.json
and seals the run into the client's hash chain, so `offboard status` and `offboard verify` include it.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible_collections.offboard.msp.plugins.module_utils import offboard_guard
from ansible_collections.offboard.msp.plugins.module_utils.offboard_vocabulary import (
    names_secret as _names_secret,
)

DOCUMENTATION = r"""
name: offboard_evidence
type: notification
short_description: Evidence records, metadata and hash-chained manifest for offboarding runs
description:
  - Collects offboard_record results, unreachable hosts and per-host phase outcomes into records.jsonl.
  - For runs not started by the offboard wrapper, also writes metadata.json and the manifest.
  - Needs the offboard Python package (the wrapper) importable; otherwise warns once and stays idle.
requirements: [offboard (pip install -e . in the repository)]
"""

try:
    from offboard import evidence as _evidence
    from offboard import paths as _paths
    from offboard import scrub as _scrub
    from offboard.lock import LockHeld as _LockHeld
    from offboard.records import Record as _Record
    from offboard.records import RecordError as _RecordError
    from offboard.records import utc_now as _utc_now

    _IMPORT_ERROR: str | None = None
except ImportError as _exc:  # pragma: no cover - exercised only without the package
    _IMPORT_ERROR = str(_exc)


_CLIENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Refused(Exception):
    """The run must stop before the next phase play touches a host; the message says what to fix."""


_VALIDATION_ACTIONS = frozenset(("validate_argument_spec", "ansible.builtin.validate_argument_spec"))


def _children(pid: int) -> list[int]:
    """Direct children of pid, from /proc (Linux); empty elsewhere."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _start_watchdog(wrapper_pid: int, callback: Any) -> None:
    """Stop this ansible-playbook when the wrapper that started it dies (kill -9, OOM, lost session).

    Otherwise the orphan would go on changing hosts and appending records to a run that the next
    `offboard run` seals as incomplete. ansible-playbook runs in its own session under ansible-runner
    (pexpect), so killing its process group takes the forks and their commands with it.
    """

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != wrapper_pid:
                with contextlib.suppress(Exception):
                    if callback.writer is not None:
                        callback.writer.close()
                # Ansible's forks run in sessions of their own: end them and what they started first.
                for child in _children(os.getpid()):
                    with contextlib.suppress(OSError):
                        os.killpg(child, signal.SIGKILL)
                    with contextlib.suppress(OSError):
                        os.kill(child, signal.SIGKILL)
                if os.getpgrp() == os.getpid():
                    os.killpg(os.getpgrp(), signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="offboard-watchdog", daemon=True).start()


def _install_redaction(get: Any) -> None:
    """Redact everything this process prints or hands to ansible-runner, before it leaves the process.

    Display.display carries every console line (also -vvvv and what the forks send up); ansible-runner's
    event context writes each event's data to a partial file for the wrapper. Both pass through the
    callback's redactor (`get()`), which learns secrets as the run goes (vault, generated passwords).
    """
    from ansible.utils.display import Display

    if not getattr(Display.display, "_offboard_redacts", False):
        original = Display.display

        def display(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
            redact = get()
            if redact is not None and isinstance(msg, str):
                msg = redact(msg)
            return original(self, msg, *args, **kwargs)

        display._offboard_redacts = True  # type: ignore[attr-defined]
        Display.display = display
    for module in list(sys.modules.values()):
        context_ = getattr(module, "event_context", None)
        cache = getattr(context_, "cache", None)
        setter = getattr(cache, "set", None)
        if setter is None or getattr(setter, "_offboard_redacts", False):
            continue

        def redacted_set(key: Any, value: Any, _setter: Any = setter) -> Any:
            redact = get()
            try:
                return _setter(key, redact.data(value) if redact is not None else value)
            except OSError:
                # The event cannot reach the wrapper (disk full): the run must not go on without
                # evidence. Raising here would only kill Ansible's results thread and hang the run.
                _stop_from_any_thread()
                return None

        redacted_set._offboard_redacts = True  # type: ignore[attr-defined]
        cache.set = redacted_set


_STOPPING = threading.Event()


def _stop_from_any_thread() -> None:
    """Stop ansible-playbook: SystemExit in the main thread; from another thread (Ansible's results
    thread, where an exception would only end that thread and leave the run hanging) a KeyboardInterrupt
    delivered to the main thread, which Ansible handles by ending the run and its workers."""
    first = not _STOPPING.is_set()
    _STOPPING.set()
    if threading.current_thread() is threading.main_thread():
        raise EvidenceUnwritable(1)
    if first:
        _thread.interrupt_main()


class EvidenceUnwritable(SystemExit):
    """Evidence cannot be written (disk full, permissions): the run must not go on without it."""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "offboard_evidence"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None) -> None:
        super().__init__(display=display)
        # `disabled` would silence this plugin entirely (ansible stops calling it): the guard of the phase
        # plays must stay, so only `off` (no evidence) is set for lab planting, molecule, no package.
        self.disabled = False
        self.off = False
        self.preflight: dict[str, Any] | None = None  # this run's passed preflight (client, hosts, ...)
        self.store_checked = False
        self.override_recorded = False
        self.writer: Any = None
        self.lock: Any = None
        self.run: Any = None  # the evidence.Run of a plain ansible-playbook run (the wrapper keeps its own)
        self.run_dir: Path | None = None
        self.client = ""
        self.inventory: Any = None
        self.redact: Any = None  # the run's redactor, once evidence is on (below)
        self.unreachable: dict[str, str] = {}  # host -> reason, for the whole playbook (ansible drops them)
        self.preflight_down: dict[str, dict[str, str]] = {}
        self.wrapped = False
        self.run_id = ""
        self._reset_play(None)
        if os.environ.get("OFFBOARD_NO_EVIDENCE") == "1":
            # Lab planting and molecule scenarios are not offboardings: they must not enter a client's chain.
            self.off = True
            return
        if _IMPORT_ERROR is not None:
            self._display.warning(
                f"offboard_evidence: the offboard package is not importable ({_IMPORT_ERROR}); no evidence "
                "is written for this run. Install it into the Python that runs ansible: pip install -e ."
            )
            self.off = True
            return
        self.wrapped = bool(os.environ.get("OFFBOARD_EVIDENCE_RUN_DIR"))
        self.run_id = os.environ.get("OFFBOARD_RUN_ID") or _evidence.new_run_id()
        self.run_dir = Path(os.environ["OFFBOARD_EVIDENCE_RUN_DIR"]) if self.wrapped else None
        try:
            self.preflight_down = json.loads(os.environ.get("OFFBOARD_PREFLIGHT_DOWN") or "{}")
        except ValueError:
            self.preflight_down = {}
        self.var_manager: Any = None
        # Secrets this run must never write or print: the environment's now, the vault's once the
        # playbook's loader has them, and values the run creates (generated passwords) as they appear.
        self.redact = _scrub.env_redactor(os.environ)
        _scrub.set_active(self.redact)
        _install_redaction(lambda: self.redact)
        if self.wrapped and os.environ.get("OFFBOARD_WRAPPER_PID", "").isdigit():
            _start_watchdog(int(os.environ["OFFBOARD_WRAPPER_PID"]), self)

    # --- state ---------------------------------------------------------------------------------
    def _reset_play(self, play: Any) -> None:
        self.play = play
        self.phase: str | None = None
        self.play_hosts: list[str] = []
        self.phase_started = False
        self.last: dict[str, str] = {}  # host -> ok | failed | unreachable (last event in this play)
        if play is None:
            return
        phase = (play.vars or {}).get("offboard_phase") if hasattr(play, "vars") else None
        self.phase = str(phase) if phase else None
        try:
            manager = play.get_variable_manager()
            self.var_manager = manager
            self.inventory = manager._inventory
            self.play_hosts = [h.name for h in self.inventory.get_hosts(play.hosts)]
        except Exception:
            self.play_hosts = []

    @property
    def check_mode(self) -> bool:
        return bool(context.CLIARGS.get("check", False))

    def _record(self, **fields: Any) -> _Record:
        fields.setdefault("recorded_at", _utc_now())
        fields.setdefault("check_mode", self.check_mode)
        return _Record(run_id=self.run_id, client=self.client, **fields)

    def _write(self, record: Any) -> None:
        try:
            if self.writer is None:
                self._open()
            if self.writer is not None:
                self.writer.write(record)
        except OSError as exc:
            self._stop_unwritable(exc)
        except _RecordError as exc:  # breaks docs/record.schema.json: a bug, and lost evidence if ignored
            self._stop_unwritable(OSError(errno.EINVAL, str(exc)))

    def _stop_unwritable(self, exc: OSError) -> None:
        """Evidence cannot be written: say why (disk full), seal what is there as incomplete, stop."""
        full = exc.errno == errno.ENOSPC
        why = "the disk is full (ENOSPC)" if full else (exc.strerror or str(exc))
        self.off = True
        with contextlib.suppress(Exception):
            if self.writer is not None:
                self.writer.close()
        self.writer = None
        if not self.wrapped and self.run is not None:
            with contextlib.suppress(Exception):
                reason = f"evidence could not be written: {why}; the run was stopped"
                self.run.finish(_evidence.STATUS_INCOMPLETE, reason, self.run.meta.exit_code).seal()
        where = f" in {self.run_dir}" if self.run_dir else ""
        with contextlib.suppress(Exception):  # under the wrapper, displaying writes an event too
            self._display.error(
                f"offboard_evidence: evidence cannot be written{where}: {why}. Stopping the run: an "
                "offboarding without evidence is not done. Free space (or fix the store) and run it again."
            )
        if self.lock is not None:
            with contextlib.suppress(Exception):
                self.lock.release()
            self.lock = None
        _stop_from_any_thread()

    def _stop_secret(self, message: str) -> None:
        self.off = True
        self._display.error(f"offboard_evidence: refused: {message}")
        _stop_from_any_thread()

    # --- secrets -------------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook) -> None:
        if self.off:
            return
        loader = getattr(playbook, "_loader", None)
        vault = getattr(loader, "_vault", None)
        secrets = list(getattr(vault, "secrets", None) or [])
        sources = context.CLIARGS.get("inventory") or []
        roots = [Path(s) for s in sources if isinstance(s, str) and "," not in s and os.path.exists(s)]
        try:
            self.redact.add(_scrub.vault_values(secrets, roots))
        except _scrub.ShortSecretError as exc:
            self._stop_secret(str(exc))

    def _learn(self, result) -> None:
        """Secrets created during the run: facts the roles mark secret, what a no_log task returned."""
        task = result._task
        res = result._result if hasattr(result, "_result") else {}
        no_log = bool(getattr(task, "no_log", False) or res.get("_ansible_no_log"))
        found = _scrub.secrets_from_result(res, no_log=False)
        cache = {}
        if self.var_manager is not None:
            with contextlib.suppress(Exception):
                cache = self.var_manager._nonpersistent_fact_cache.get(result._host.get_name()) or {}
        action = str(getattr(task, "action", ""))
        if action.endswith("set_fact"):
            keys = [str(k) for k in getattr(task, "args", {}) or {} if k in cache]
            # A no_log set_fact that names its secret (`__role_secret` beside `__role_handle`) marks that
            # key only; one that names none marks every value it sets.
            named = [k for k in keys if _names_secret(k)]
            for key in keys:
                if not (key in named or (no_log and not named)):
                    continue
                value = cache[key]
                if isinstance(value, str):
                    found.extend([value] if value.strip() else [])
                else:
                    # A structure (hosts, accounts, dates, handles): only what its own keys mark secret. Every
                    # leaf would mask host names and dates all over the evidence and break the ledger.
                    found.extend(_scrub.secrets_from_result(value, no_log=False))
        register = getattr(task, "register", None)
        if register and register in cache and (no_log or _names_secret(str(register))):
            found.extend(_scrub.secrets_from_result(cache[register], no_log=True))
        if found:
            # Whole values only: a no_log task's output listed line by line would mask hosts and dates.
            self.redact.add(found, lines=False)

    def _refuse(self, message: str) -> None:
        """End ansible-playbook here, before the next play touches a host (a callback's exceptions are
        only warnings to ansible; SystemExit is not caught)."""
        self._display.error(f"REFUSED before any host: {message}", wrap_text=False)
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        with contextlib.suppress(Exception):
            offboard_guard.clear_token(os.getpid())
        raise SystemExit(1)

    def _check_store(self) -> None:
        """Plain runs: take the client's run lock and make sure the store can be written, or refuse."""
        if self.store_checked or self.off or self.wrapped:
            return
        store = _evidence.EvidenceStore(_paths.evidence_root())
        try:
            client_dir = store.client_dir(self.client, create=True)
            probe = client_dir / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            why = "the disk is full (ENOSPC)" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise Refused(
                f"evidence cannot be written in the store {store.root}: {why}. A run without evidence is "
                "not an offboarding. Fix its permissions or free space, or point OFFBOARD_EVIDENCE_DIR "
                "elsewhere"
            ) from None
        try:
            self.lock = _evidence.run_lock(store, self.client, self.run_id, "ansible-playbook")
        except _LockHeld as exc:
            raise Refused(str(exc)) from None
        except OSError as exc:
            why = "the disk is full (ENOSPC)" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise Refused(
                f"evidence cannot be written: cannot take the run lock in {client_dir}: {why}"
            ) from None
        self.store_checked = True

    def _guard_phase_play(self) -> None:
        """A phase play runs only after this run's preflight passed, on the hosts it validated."""
        if self.preflight is None:
            raise Refused(
                "this run's preflight has not passed, so no phase play may run. Run the whole playbook for "
                "one client: ansible-playbook offboard.yml -l <client> [--tags <phase>] (the preflight "
                "cannot be left out with --skip-tags or --start-at-task)"
            )
        token = offboard_guard.read_token(os.getpid())
        if token is None or token.get("client") != self.preflight["client"]:
            raise Refused("this run's preflight token is missing or names another client: start again")
        extra = sorted(set(self.play_hosts) - set(self.preflight["hosts"]))
        if extra:
            raise Refused(
                f"phase play '{self.play.get_name()}' targets host(s) the preflight did not validate: "
                f"{', '.join(extra[:10])}"
            )
        self._check_store()

    def _observe_preflight(self, result) -> None:
        """Keep the client and hosts of this run's passed preflight (the offboard_preflight action)."""
        action = str(getattr(result._task, "action", ""))
        if action.rsplit(".", 1)[-1] != "offboard_preflight":
            return
        res = result._result if hasattr(result, "_result") else {}
        client = str(res.get("client") or "")
        hosts = res.get("host_names")
        if not _CLIENT_RE.match(client) or not isinstance(hosts, list):
            return
        self.preflight = {
            "client": client,
            "hosts": [str(h) for h in hosts],
            "contract_end_override": res.get("contract_end_override") or {},
        }
        # The evidence client is the validated one, never the environment's (the preflight refused a
        # wrapper run whose OFFBOARD_CLIENT disagrees).
        self.client = client

    def _client_of(self, hosts: list[str]) -> str:
        return self.preflight["client"] if self.preflight else ""

    def _open(self) -> None:
        if self.wrapped:
            self.writer = _evidence.RecordWriter(self.run_dir, redact=self.redact)
            return
        self.client = self._client_of(self.play_hosts)
        if not self.client or not self.store_checked:
            # Unreachable for phase plays (they refuse first); kept so a record never lands in a guess.
            self._display.warning("offboard_evidence: no preflight in this run; no evidence kept")
            self.off = True
            return
        args = context.CLIARGS
        self.run = _evidence.Run.open(
            _evidence.EvidenceStore(_paths.evidence_root()),
            self.client,
            source="ansible-playbook",
            command="ansible-playbook",
            run_id=self.run_id,
            project=_paths.project_root(),
            tags=list(args.get("tags") or []),
            skip_tags=list(args.get("skip_tags") or []),
            limit=args.get("subset"),
            check_mode=self.check_mode,
            hosts=list(self.play_hosts),
        )
        self.run_dir = self.run.dir
        self.writer = self.run.records(redact=self.redact)
        # Roles put exports (zone files, configuration backups) into the run's evidence through the
        # offboard_export action, which finds the folder here, as under the wrapper. Tasks run in forks
        # of this process started after this point, so they inherit it.
        os.environ["OFFBOARD_EVIDENCE_RUN_DIR"] = str(self.run_dir)

    # --- plays and tasks -----------------------------------------------------------------------
    def v2_playbook_on_play_start(self, play) -> None:
        if not self.off:
            self._end_play()
        self._reset_play(play)
        if self.phase:
            try:
                self._guard_phase_play()
            except Refused as exc:
                self._refuse(str(exc))

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        if self.off or not self.phase or self.phase_started:
            return
        if getattr(task, "action", "") in _VALIDATION_ACTIONS:
            # A role's argument validation is tagged `always`: it runs in every phase play, also when the
            # run's tags select another phase. It alone does not start a phase (else `--tags docs` would
            # record the agents phase as finished on every host); a failed validation does (below).
            return
        self._start_phase()

    def _start_phase(self) -> None:
        self.phase_started = True
        self.client = self._client_of(self.play_hosts)
        self._write(self._record(kind="phase_start", phase=self.phase, hosts=list(self.play_hosts)))
        override = (self.preflight or {}).get("contract_end_override")
        if override and not self.override_recorded:
            self.override_recorded = True
            self._write(
                self._record(
                    kind="item",
                    phase=self.phase,
                    host="localhost",
                    component="preflight",
                    item="contract-end-override",
                    before={
                        "override_reason": override.get("reason"),
                        "approved_by": override.get("approved_by"),
                    },
                    action="none",
                    after={"override_used": True},
                    verification={"method": "none", "result": "not_verified"},
                    task="preflight",
                )
            )
        # Hosts that will not run this phase: down at the wrapper's preflight, or unreachable earlier.
        for host, info in sorted(self.preflight_down.items()):
            self._write(
                self._record(
                    kind="unreachable",
                    phase=self.phase,
                    host=host,
                    reason=f"preflight: {info.get('reason', '')}",
                    recorded_at=info.get("at") or _utc_now(),
                    task="preflight",
                )
            )
        for host in self.play_hosts:
            if host in self.unreachable:
                self._write(
                    self._record(
                        kind="unreachable",
                        phase=self.phase,
                        host=host,
                        reason=self.unreachable[host],
                        task="earlier in this run",
                    )
                )

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _end_play(self) -> None:
        if not self.phase_started or not self.phase:
            return
        for host in self.play_hosts or sorted(self.last):
            outcome = self.last.get(host)
            if outcome is None and host in self.unreachable:
                outcome = "unreachable"
            if outcome is None:
                continue  # never ran in this play: the ledger keeps it pending
            self._write(
                self._record(
                    kind="phase_end",
                    phase=self.phase,
                    host=host,
                    outcome=outcome,
                    reason=self.unreachable.get(host, "") if outcome == "unreachable" else "",
                )
            )
        self.phase_started = False

    # --- results -------------------------------------------------------------------------------
    def _records_from(self, result) -> None:
        res = result._result if hasattr(result, "_result") else {}
        found = [res.get("offboard_record")] + [
            r.get("offboard_record") for r in res.get("results") or [] if isinstance(r, dict)
        ]
        for data in found:
            if isinstance(data, dict):
                self._write_item(data, result)
        if res.get("censored") and getattr(result._task, "action", "").endswith("offboard_record"):
            self._display.warning(
                f"offboard_evidence: task '{result._task.get_name()}' has no_log set, so its evidence "
                "record was censored and is lost: remove no_log from offboard_record tasks (records never "
                "hold secrets)"
            )

    def _write_item(self, data: dict[str, Any], result) -> None:
        host = data.get("host") or result._host.get_name()
        if not self.client:
            self.client = data.get("client") or self._client_of([host])
        self._write(
            self._record(
                kind="item",
                host=host,
                phase=data.get("phase") or self.phase or "",
                component=data.get("component", ""),
                item=data.get("item", ""),
                before=data.get("before") or {},
                action=data.get("action", ""),
                after=data.get("after") or {},
                verification=data.get("verification") or {},
                error=data.get("error"),
                export=data.get("export"),
                recorded_at=data.get("recorded_at") or _utc_now(),
                check_mode=bool(data.get("check_mode", self.check_mode)),
                task=result._task.get_name(),
            )
        )

    def v2_runner_on_ok(self, result) -> None:
        self._observe_preflight(result)
        if self.off:
            return
        self._learn(result)
        self._records_from(result)
        self.last[result._host.get_name()] = "ok"

    def v2_runner_on_skipped(self, result) -> None:
        if not self.off:
            self.last[result._host.get_name()] = "ok"

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        if self.off:
            return
        if (
            self.phase
            and not self.phase_started
            and getattr(result._task, "action", "") in _VALIDATION_ACTIONS
        ):
            self._start_phase()  # bad input for this phase: the host's phase ends failed, not silently
        self._learn(result)
        self._records_from(result)
        self.last[result._host.get_name()] = "ok" if ignore_errors else "failed"

    def v2_runner_on_unreachable(self, result) -> None:
        if self.off:
            return
        host = result._host.get_name()
        res = result._result if hasattr(result, "_result") else {}
        reason = str(res.get("msg") or "unreachable")
        self.unreachable[host] = reason
        self.last[host] = "unreachable"
        if self.phase and self.phase_started:
            self._write(
                self._record(
                    kind="unreachable",
                    phase=self.phase,
                    host=host,
                    reason=reason,
                    task=result._task.get_name(),
                )
            )

    # --- the end -------------------------------------------------------------------------------
    def v2_playbook_on_stats(self, stats) -> None:
        with contextlib.suppress(Exception):
            offboard_guard.clear_token(os.getpid())
        if self.off:
            return
        try:
            self._seal(stats)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def _seal(self, stats) -> None:
        self._end_play()
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError as exc:
                self._stop_unwritable(exc)
            self.writer = None
        if self.wrapped or self.run is None:
            return
        summary = {h: stats.summarize(h) for h in sorted(stats.processed)}
        self.run.meta.stats = summary
        failed = any(s.get("failures") for s in summary.values())
        dark = any(s.get("unreachable") for s in summary.values())
        try:
            self.run.finish(_evidence.STATUS_COMPLETE, None, 2 if failed else 4 if dark else 0).seal()
        except OSError as exc:
            self._stop_unwritable(exc)
        self._display.display(f"offboard evidence: {self.run_dir}")
