"""Owner-only files and folders (0700 / 0600), atomic writes, and advisory file locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


class SymlinkRefused(OSError):
    """The evidence store follows no symlink: a path that should be ours is a link."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(errno.ELOOP, f"{path} is a symlink; the evidence store follows none: remove it")
        self.filename = str(path)


def private_dir(path: Path, tighten: bool = True) -> Path:
    """Create path (and missing parents) owner-only; a symlink is refused, never followed.

    An existing folder keeps its mode unless `tighten` (a client folder, which is ours); the store's
    root, possibly a shared folder someone made (1777), is never chmodded.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, DIR_MODE)
            tighten = True  # ours: owner-only whatever the umask
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise SymlinkRefused(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{path} is not a folder", str(path))
    if tighten and stat.S_IMODE(st.st_mode) != DIR_MODE:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, DIR_MODE)
        finally:
            os.close(fd)
    return path


def _lstat_mode(path: Path | str) -> int:
    """The mode of path itself (a symlink is not followed); 0 when there is nothing to stat."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def is_link(path: Path | str) -> bool:
    """lstat-based: True for a symlink (dangling or not)."""
    return stat.S_ISLNK(_lstat_mode(path))


def is_regular_file(path: Path | str) -> bool:
    """lstat-based is_file: a symlink to a file is not one."""
    return stat.S_ISREG(_lstat_mode(path))


def is_real_dir(path: Path | str) -> bool:
    """lstat-based is_dir: a symlink to a folder is not one."""
    return stat.S_ISDIR(_lstat_mode(path))


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path via a private temp file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_private(path: Path, mode: str = "a"):
    """Open a text file for writing, created 0600; a symlink at path is refused (O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkRefused(path) from None
        raise
    return os.fdopen(fd, mode, encoding="utf-8")


def open_nofollow(path: Path | str, mode: str = "rb"):
    """Open a file for reading without following a symlink (ELOOP when it is one)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    return os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, encoding="utf-8", errors="replace")


def tighten_tree(root: Path) -> None:
    """chmod a whole tree owner-only (folders 0700, files 0600); symlinks are neither followed nor kept."""
    if is_link(root):
        raise SymlinkRefused(root)
    os.chmod(root, DIR_MODE)
    for base, dirs, files in os.walk(root):
        for name in list(dirs):
            path = os.path.join(base, name)
            if is_link(path):
                dirs.remove(name)
                os.unlink(path)  # not evidence, and a seal must not hash what it points to
                continue
            os.chmod(path, DIR_MODE)
        for name in files:
            path = os.path.join(base, name)
            if is_link(path):
                os.unlink(path)
            else:
                os.chmod(path, FILE_MODE)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on path (created 0600) for the duration of the block, waiting for it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
