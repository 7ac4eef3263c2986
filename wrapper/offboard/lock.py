"""One run per client at a time: an flock on evidence/<client>/.run.lock naming its holder.

The kernel drops an flock when its holder dies (also on kill -9), so a stale lock never blocks a
client; the holder details written into the file only serve the refusal message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from offboard.fsutil import FILE_MODE

LOCK_NAME = ".run.lock"


@dataclass(frozen=True)
class Holder:
    run_id: str
    operator: str
    pid: int
    hostname: str
    since: str
    command: str

    def describe(self) -> str:
        return (
            f"run {self.run_id} ({self.command}) by {self.operator} on {self.hostname}, pid {self.pid}, "
            f"since {self.since}"
        )


class LockHeld(Exception):
    """Another run holds the client's lock."""

    def __init__(self, client: str, holder: Holder | None) -> None:
        who = holder.describe() if holder else "another process (details unreadable)"
        super().__init__(
            f"client {client} is already being worked on by {who}. One run per client at a time: "
            "wait for it to finish, then try again"
        )
        self.holder = holder


class RunLock:
    def __init__(self, client_dir: Path, client: str) -> None:
        self.path = client_dir / LOCK_NAME
        self.client = client
        self._fd: int | None = None

    def acquire(self, holder: Holder) -> RunLock:
        # O_NOFOLLOW: a planted .run.lock symlink must not make us truncate the file it points to.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(self.client, read_holder(self.path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(client_dir: Path) -> bool:
    """True while some process holds the client's run lock."""
    path = client_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_holder(path: Path) -> Holder | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as handle:
            return Holder(**json.loads(handle.read()))
    except (OSError, ValueError, TypeError):
        return None


def this_host() -> str:
    return socket.gethostname()
