"""Bypass and bad-input cases against hosts that count connection attempts (docs/threat-model.md).

Every case runs the real thing (ansible-playbook from a project folder, or `offboard run`) against a
throw-away inventory of two clients, acme and beta, whose hosts all point at a TCP listener on
127.0.0.1 that counts the connections it accepts (ssh connection: each one is an attempt to reach a
host). A refused case must end with a message saying what to fix and ZERO attempts; the control cases
must show attempts (the listener closes at once, so the hosts end up unreachable: nothing else is needed).

The cases run concurrently in one module fixture (each with its own listener and project), then each
is asserted on its own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ROOT

LINKED = ("ansible.cfg", "offboard.yml", "playbooks", "plugins", "roles", "collections")
DATES = {"start": "2026-11-02", "contract_end": "2099-12-31", "access_revocation": "2026-11-16"}
PAST = {"start": "2026-01-05", "contract_end": "2026-02-27", "access_revocation": "2026-02-02"}
ACCESS = {
    "accounts": [{"name": "msp-admin", "kind": "local", "action": "revoke"}],
    "account_patterns": ["msp-*"],
    "sudoers_patterns": ["msp*"],
    "ssh_key_comment_patterns": ["*@msp.example.net"],
}
FOOTPRINT = {
    "name_patterns": ["^msp[-_]"],
    "path_patterns": ["/opt/msp-scripts/"],
    "script_dirs": ["/opt/msp-scripts", "C:\\MSP\\Scripts"],
}
BACKUP = {"retention_until": "2027-02-28", "msp_data": [{"path": "/var/backups/msp"}]}


class Listener:
    """Counts TCP connections accepted on 127.0.0.1:<port>; closes each at once."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.last = time.monotonic()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.count += 1
            self.last = time.monotonic()
            conn.close()

    def settle(self) -> int:
        """The count once no connection has come for a moment (late accepts from the backlog)."""
        time.sleep(0.3)
        self._stop = True
        self.thread.join()
        self.sock.close()
        return self.count


@dataclass
class Project:
    root: Path
    port: int

    @property
    def inv(self) -> Path:
        return self.root / "inventories"

    def vars_of(self, client: str) -> Path:
        return self.inv / client / "group_vars" / f"{client}.yml"

    def update(self, client: str, **values: object) -> None:
        path = self.vars_of(client)
        data = yaml.safe_load(path.read_text())
        data.update(values)
        path.write_text(yaml.safe_dump(data))

    def drop(self, client: str, *names: str) -> None:
        path = self.vars_of(client)
        data = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k not in names}
        path.write_text(yaml.safe_dump(data))

    def write(self, rel: str, text: str) -> None:
        path = self.inv / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def host_vars(self, host: str, **values: object) -> None:
        client = host.split("-", 1)[0]
        self.write(f"{client}/host_vars/{host}.yml", yaml.safe_dump(values))


def _client(project: Project, client: str, hosts: list[str]) -> None:
    conn = {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": project.port,
        "ansible_user": "offboard-test",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }
    project.write(
        f"{client}/hosts.yml", yaml.safe_dump({client: {"vars": conn, "hosts": {h: {} for h in hosts}}})
    )
    project.write(
        f"{client}/group_vars/{client}.yml",
        yaml.safe_dump(
            {
                "offboard_client_id": client,
                "offboard_dates": DATES,
                "offboard_msp_products": [{"product": "ninjaone"}],
                "offboard_msp_access": ACCESS,
                "offboard_msp_footprint": FOOTPRINT,
                "offboard_backup_terms": BACKUP,
            }
        ),
    )


def make_project(base: Path, port: int) -> Project:
    root = base / "project"
    root.mkdir(parents=True)
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    project = Project(root, port)
    _client(project, "acme", ["acme-a", "acme-b"])
    _client(project, "beta", ["beta-a"])
    return project


@dataclass
class Case:
    id: str
    argv: list[str]  # ansible-playbook arguments, or ["offboard", ...] for the wrapper
    needle: str  # what the message must say (what to fix)
    setup: Callable[[Project], None] = lambda p: None
    env: dict[str, str] = field(default_factory=dict)
    refused: bool = True


@dataclass
class Outcome:
    rc: int
    out: str
    attempts: int
    project: Project
    evidence: Path


def _wrong_top_group(p: Project) -> None:
    path = p.inv / "acme" / "hosts.yml"
    path.write_text(path.read_text().replace("acme:", "acme_hosts:", 1))


def _shared_host(p: Project) -> None:
    path = p.inv / "beta" / "hosts.yml"
    data = yaml.safe_load(path.read_text())
    data["beta"]["hosts"]["acme-b"] = {}
    path.write_text(yaml.safe_dump(data))


def _many_hosts(p: Project) -> None:
    path = p.inv / "acme" / "hosts.yml"
    data = yaml.safe_load(path.read_text())
    data["acme"]["hosts"] = {f"acme-{n:05d}": {} for n in range(1500)}
    path.write_text(yaml.safe_dump(data))


def _own_phase_playbook(p: Project) -> None:
    (p.root / "mine.yml").write_text(
        "- name: My phase play\n  hosts: all\n  gather_facts: false\n  vars: {offboard_phase: agents}\n"
        "  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n"
    )


def _hold_lock(p: Project) -> None:
    sys.path.insert(0, str(ROOT / "wrapper"))
    from offboard.lock import Holder, RunLock

    folder = p.root / "evidence" / "acme"
    folder.mkdir(parents=True)
    p.lock = RunLock(folder, "acme").acquire(Holder("other-run", "tess@msp", 1, "ctl", "now", "offboard run"))  # type: ignore[attr-defined]


def _unwritable_store(p: Project) -> None:
    (p.root / "not-a-dir").write_text("")


AGENTS = ["offboard.yml", "-l", "acme", "--tags", "agents"]
PLAIN = ["offboard.yml", "-l", "acme"]
RMM_TASK = "RMM | prepare | load the agent catalog"

CASES = [
    # --- the guard cannot be skipped --------------------------------------------------------------
    Case("skip-tags-always", [*PLAIN, "--skip-tags", "always"], "preflight has not passed"),
    Case("skip-tags-always-agents", [*AGENTS, "--skip-tags", "always"], "preflight has not passed"),
    Case(
        "skip-tags-always-and-preflight-tags",
        [*PLAIN, "--skip-tags", "always,agents"],
        "preflight has not passed",
    ),
    Case(
        "start-at-summary-task",
        [*PLAIN, "--start-at-task", "Preflight | show what this run is about to act on"],
        "preflight has not passed",
    ),
    Case("start-at-role-task", [*PLAIN, "--start-at-task", RMM_TASK], "preflight has not passed"),
    Case("phase-playbook-agents", ["playbooks/agents.yml", "-l", "acme"], "preflight has not passed"),
    Case("phase-playbook-access", ["playbooks/access.yml", "-l", "acme"], "preflight has not passed"),
    Case("phase-playbook-docs-no-limit", ["playbooks/docs.yml"], "preflight has not passed"),
    Case("phase-playbook-infra", ["playbooks/infra.yml", "-l", "acme"], "preflight has not passed"),
    Case(
        "phase-playbook-callback-off",
        ["playbooks/agents.yml", "-l", "acme"],
        "preflight has not passed",
        env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.timer"},
    ),
    Case(
        "phase-playbook-no-evidence",
        ["playbooks/agents.yml", "-l", "acme"],
        "preflight has not passed",
        env={"OFFBOARD_NO_EVIDENCE": "1"},
    ),
    Case("own-phase-play", ["mine.yml", "-l", "acme"], "preflight has not passed", setup=_own_phase_playbook),
    Case(
        "faked-preflight-result",
        [
            *PLAIN,
            "--skip-tags",
            "always",
            "-e",
            '{"__offboard_preflight": {"client": "acme", "summary": "x", "host_names": ["acme-a"]}}',
        ],
        "preflight has not passed",
    ),
    # --- exactly one client ---------------------------------------------------------------------------
    Case("no-limit", ["offboard.yml", "--tags", "agents"], "no --limit given"),
    Case("limit-all", ["offboard.yml", "-l", "all"], "more than one client"),
    Case("two-clients", ["offboard.yml", "-l", "acme,beta"], "more than one client"),
    Case("hosts-of-two-clients", ["offboard.yml", "-l", "acme-a,beta-a"], "more than one client"),
    Case("unknown-tag", [*PLAIN, "--tags", "agnets"], "unknown tag 'agnets'"),
    # --- evidence cannot be sent elsewhere ------------------------------------------------------------
    Case("env-client-other", AGENTS, "OFFBOARD_CLIENT='beta'", env={"OFFBOARD_CLIENT": "beta"}),
    Case("env-client-traversal", AGENTS, "unset OFFBOARD_CLIENT", env={"OFFBOARD_CLIENT": "../../x"}),
    Case(
        "env-run-dir",
        AGENTS,
        "OFFBOARD_EVIDENCE_RUN_DIR",
        env={"OFFBOARD_EVIDENCE_RUN_DIR": "/tmp/elsewhere"},
    ),
    # --- dates ----------------------------------------------------------------------------------------------
    Case(
        "contract-end-past", AGENTS, "is in the past", setup=lambda p: p.update("acme", offboard_dates=PAST)
    ),
    Case(
        "contract-end-past-half-override",
        AGENTS,
        "offboard_contract_end_override",
        setup=lambda p: p.update(
            "acme", offboard_dates=PAST, offboard_contract_end_override={"reason": "late"}
        ),
    ),
    Case(
        "second-host-bad-date",
        AGENTS,
        "acme-b",
        setup=lambda p: p.host_vars("acme-b", offboard_dates={**DATES, "start": "2 Nov 2026"}),
    ),
    Case(
        "contract-end-before-start",
        AGENTS,
        "is before offboard_dates.start",
        setup=lambda p: p.update("acme", offboard_dates={**DATES, "contract_end": "2026-10-01"}),
    ),
    Case(
        "unknown-product",
        AGENTS,
        "unknown product 'ninjaon'",
        setup=lambda p: p.update("acme", offboard_msp_products=[{"product": "ninjaon"}]),
    ),
    # --- paths a role deletes -------------------------------------------------------------------------
    *[
        Case(
            f"msp-data-{label}",
            AGENTS,
            "msp_data[0].path",
            setup=lambda p, path=path: p.update(
                "acme", offboard_backup_terms={**BACKUP, "msp_data": [{"path": path}]}
            ),
        )
        for label, path in (
            ("root", "/"),
            ("etc", "/etc"),
            ("profile", "C:\\Users\\bob"),
            ("drive", "D:\\"),
            ("home", "/home/alice"),
        )
    ],
    *[
        Case(
            f"script-dir-{label}",
            AGENTS,
            "script_dirs[0]",
            setup=lambda p, path=path: p.update(
                "acme", offboard_msp_footprint={**FOOTPRINT, "script_dirs": [path]}
            ),
        )
        for label, path in (
            ("c-drive", "C:\\"),
            ("system32", "C:\\Windows\\System32"),
            ("double-slash", "//"),
            ("etc-ssh", "/etc/ssh"),
            ("applications", "/Applications"),
            ("program-files", "C:\\Program Files"),
            ("usr", "/usr"),
        )
    ],
    Case(
        "second-host-protected-path",
        AGENTS,
        "acme-b",
        setup=lambda p: p.host_vars("acme-b", offboard_msp_footprint={**FOOTPRINT, "script_dirs": ["/var"]}),
    ),
    # --- patterns that match everything or ordinary names ----------------------------------------------
    *[
        Case(
            f"task-{field}-{label}",
            AGENTS,
            f"offboard_msp_footprint.{field}[0]",
            setup=lambda p, field=field, pat=pat: p.update(
                "acme", offboard_msp_footprint={**FOOTPRINT, field: [pat]}
            ),
        )
        for field, label, pat in (
            ("name_patterns", "dot-star", ".*"),
            ("name_patterns", "empty", ""),
            ("name_patterns", "cron", "cron"),
            ("path_patterns", "slash", "/"),
        )
    ],
    *[
        Case(
            f"gpo-{field}-{label}",
            AGENTS,
            f"offboard_gpo.{field}[0]",
            setup=lambda p, field=field, pat=pat: p.update("acme", offboard_gpo={field: [pat]}),
        )
        for field, label, pat in (
            ("name_patterns", "dot-star", ".*"),
            ("setting_patterns", "slash", "/"),
            ("name_patterns", "default-policy", "Default"),
        )
    ],
    *[
        Case(
            f"access-{field}-star",
            ["offboard.yml", "-l", "acme", "--tags", "access"],
            f"{field}[0] '*'",
            setup=lambda p, field=field: p.update("acme", offboard_msp_access={**ACCESS, field: ["*"]}),
        )
        for field in ("account_patterns", "sudoers_patterns", "ssh_key_comment_patterns")
    ],
    Case(
        "access-vars-missing",
        ["offboard.yml", "-l", "acme", "--tags", "access"],
        "offboard_msp_access (with accounts",
        setup=lambda p: p.drop("acme", "offboard_msp_access"),
    ),
    # --- client folders see only themselves ------------------------------------------------------------
    *[
        Case(case_id, AGENTS, needle, setup=lambda p, rel=rel, text=text: p.write(rel, text))
        for case_id, rel, text, needle in (
            ("group-vars-all-json", "acme/group_vars/all.json", '{"x": 1}', "group_vars/all.json"),
            ("group-vars-all-dir", "acme/group_vars/all/main.yml", "x: 1\n", "group_vars/all would apply"),
            (
                "group-vars-foreign-group",
                "acme/group_vars/beta.yml",
                "offboard_client_id: acme\n",
                "group_vars/beta.yml sets variables for 'beta'",
            ),
            (
                "host-vars-foreign-host",
                "acme/host_vars/beta-a.yml",
                "offboard_client_id: acme\n",
                "host_vars/beta-a.yml sets variables for 'beta-a'",
            ),
        )
    ],
    Case("host-in-two-folders", AGENTS, "in the groups of several client folders", setup=_shared_host),
    Case(
        "top-group-not-folder-name",
        ["offboard.yml", "-l", "acme_hosts", "--tags", "agents"],
        "must be exactly one group named 'acme'",
        setup=_wrong_top_group,
    ),
    # --- the lock, the store, the time bound ----------------------------------------------------------
    Case("lock-held", AGENTS, "already being worked on", setup=_hold_lock),
    *[
        Case(case_id, AGENTS, needle, setup=setup, env=env)
        for case_id, needle, setup, env in (
            (
                "store-unwritable",
                "cannot be written",
                _unwritable_store,
                {"OFFBOARD_EVIDENCE_DIR": "{root}/not-a-dir/evidence"},
            ),
            (
                "preflight-time-bound",
                "did not finish within 0.2 s",
                _many_hosts,
                {"OFFBOARD_PREFLIGHT_TIMEOUT": "0.2"},
            ),
        )
    ],
    # --- the wrapper validates before it probes -------------------------------------------------------------
    Case(
        "wrapper-protected-path",
        ["offboard", "run", "acme", "--tags", "agents"],
        "script_dirs[0] '/etc'",
        setup=lambda p: p.update("acme", offboard_msp_footprint={**FOOTPRINT, "script_dirs": ["/etc"]}),
    ),
    Case(
        "wrapper-contract-end-past",
        ["offboard", "run", "acme"],
        "is in the past",
        setup=lambda p: p.update("acme", offboard_dates=PAST),
    ),
    Case(
        "wrapper-access-missing",
        ["offboard", "run", "acme", "--tags", "access"],
        "offboard_msp_access",
        setup=lambda p: p.drop("acme", "offboard_msp_access"),
    ),
    # --- controls: valid runs do reach the hosts ------------------------------------------------------------
    Case("control-plain", AGENTS, "offboard evidence:", refused=False),
    Case(
        "control-agents-only-client",
        AGENTS,
        "offboard evidence:",
        refused=False,
        setup=lambda p: p.drop("acme", "offboard_msp_access"),
    ),
    Case(
        "control-contract-end-override",
        AGENTS,
        "OVERRIDDEN by Lee Lead",
        refused=False,
        setup=lambda p: p.update(
            "acme",
            offboard_dates=PAST,
            offboard_contract_end_override={"reason": "late hand-over", "approved_by": "Lee Lead"},
        ),
    ),
    Case(
        "control-wrapper",
        ["offboard", "run", "acme", "--tags", "agents"],
        "preflight: probing",
        refused=False,
    ),
]


def _run(case: Case, base: Path) -> Outcome:
    listener = Listener()
    project = make_project(base / case.id, listener.port)
    case.setup(project)
    evidence = project.root / "evidence"
    env = dict(os.environ)
    for key in ("OFFBOARD_EVIDENCE_RUN_DIR", "OFFBOARD_NO_EVIDENCE", "OFFBOARD_CLIENT", "OFFBOARD_RUN_ID"):
        env.pop(key, None)
    env.update(
        ANSIBLE_CONFIG=str(project.root / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        OFFBOARD_PROJECT_DIR=str(project.root),
        OFFBOARD_EVIDENCE_DIR=str(evidence),
        PYTHONPATH=str(ROOT / "wrapper"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update({k: v.format(root=project.root) for k, v in case.env.items()})
    if case.argv[0] == "offboard":
        cmd = [sys.executable, "-m", "offboard.cli", *case.argv[1:], "--preflight-timeout", "2"]
    else:
        cmd = [str(BIN / "ansible-playbook"), *case.argv]
    proc = subprocess.run(
        cmd, cwd=project.root, env=env, text=True, capture_output=True, timeout=240, check=False
    )
    attempts = listener.settle()
    lock = getattr(project, "lock", None)
    if lock is not None:
        lock.release()
    return Outcome(proc.returncode, proc.stdout + proc.stderr, attempts, project, evidence)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> Iterator[dict[str, Outcome]]:
    base = tmp_path_factory.mktemp("guard")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip([c.id for c in CASES], pool.map(lambda c: _run(c, base), CASES), strict=True))
    yield results
    shutil.rmtree(base, ignore_errors=True)


def test_there_are_at_least_forty_refusals():
    assert sum(c.refused for c in CASES) >= 40


@pytest.mark.parametrize("case", [c for c in CASES if c.refused], ids=lambda c: c.id)
def test_refused_before_any_host(outcomes, case):
    got = outcomes[case.id]
    assert got.rc != 0, got.out[-3000:]
    assert case.needle in got.out, got.out[-3000:]
    assert got.attempts == 0, f"{got.attempts} connection attempt(s)\n{got.out[-3000:]}"


@pytest.mark.parametrize("case", [c for c in CASES if not c.refused], ids=lambda c: c.id)
def test_valid_runs_reach_the_hosts(outcomes, case):
    got = outcomes[case.id]
    assert case.needle in got.out, got.out[-3000:]
    assert got.attempts > 0, got.out[-3000:]


def test_the_wrapper_seals_a_refused_run_and_exits_2(outcomes):
    got = outcomes["wrapper-protected-path"]
    assert got.rc == 2
    (run,) = [p for p in (got.evidence / "acme").iterdir() if p.is_dir() and not p.name.startswith(".")]
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "refused" and "script_dirs[0] '/etc'" in meta["reason"]
    assert (run / "MANIFEST.sha256").is_file()


def test_an_override_of_the_contract_end_is_recorded(outcomes):
    got = outcomes["control-contract-end-override"]
    (run,) = [p for p in (got.evidence / "acme").iterdir() if p.is_dir() and not p.name.startswith(".")]
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    override = next(r for r in records if r.get("item") == "contract-end-override")
    assert override["before"] == {"override_reason": "late hand-over", "approved_by": "Lee Lead"}


def test_the_agents_phase_runs_for_a_client_with_only_agents_variables(outcomes):
    got = outcomes["control-agents-only-client"]
    assert "Validation of arguments failed" not in got.out
    assert "PLAY [Phase 3 | agents" in got.out
