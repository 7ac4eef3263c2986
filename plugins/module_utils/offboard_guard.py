# Copyright: the offboard project contributors
# Apache-2.0
"""The run-scoped proof that this ansible-playbook's preflight passed (controller side only).

The preflight action (in a worker forked from ansible-playbook) writes a token naming the client and the
validated hosts, keyed on the ansible-playbook process: its pid and its start time (so a reused pid never
finds an old token). Every phase play's `hosts:` asks the offboard_preflight_hosts lookup, in the
ansible-playbook process itself, for the validated hosts; without this run's token the lookup refuses,
before any host is contacted. Tags, --start-at-task and running a phase playbook on its own cannot skip
a play's `hosts:`.

Not a secret and not a signature: someone who writes the token by hand has chosen to bypass the guard
(docs/threat-model.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

CLIENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def guard_dir() -> Path:
    """Owner-only folder of the tokens; one per user."""
    path = Path(tempfile.gettempdir()) / f"offboard-guard-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{path} is not owner-only: remove it (it only holds run tokens)")
    return path


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), '' where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def token_path(pid: int) -> Path:
    return guard_dir() / f"{pid}-{start_time(pid) or 'x'}.json"


def write_token(pid: int, data: dict[str, Any]) -> Path:
    """Record that the preflight of ansible-playbook process `pid` passed (atomically, owner-only)."""
    folder = guard_dir()
    for old in folder.glob("*.json"):  # tokens of processes that are gone
        old_pid = old.name.split("-", 1)[0]
        if old_pid.isdigit() and not os.path.exists(f"/proc/{old_pid}"):
            with contextlib.suppress(OSError):
                old.unlink()
    path = token_path(pid)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({**data, "pid": pid, "written_at": time.time()}, handle)
    os.replace(tmp, path)
    return path


def read_token(pid: int) -> dict[str, Any] | None:
    """This process's token, or None when its preflight has not passed."""
    try:
        data = json.loads(token_path(pid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("pid") != pid or not CLIENT_RE.match(str(data.get("client"))):
        return None
    hosts = data.get("hosts")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        return None
    return data


def clear_token(pid: int) -> None:
    with contextlib.suppress(OSError):
        token_path(pid).unlink()
