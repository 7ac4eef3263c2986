# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: put an exported file into the evidence of the current run and return its path and
sha256 for the record's `export` field. The one way roles write into a run's `exports/` folder.

Two sources:
  from the host        `src` (a file on the managed host: a GPO backup, a removed definition) is read
                       with slurp and written to exports/<dest>; its sha256 may be checked against
                       the host's own (`sha256`). In check mode nothing is exported (skipped).
  from the controller  `name` plus one of `content` (text), `content_b64` (bytes) or `local_src` (a
                       controller file, moved in: e.g. what age wrote): written to
                       exports/<folder>/<name>, folder = `folder` or the inventory host name. Also in
                       check mode (a rehearsal's reports are evidence of the rehearsal). With no content
                       at all it only creates and returns the folder, for modules delegated to the
                       controller that write their exports there themselves.

The run folder is the one the wrapper passes in OFFBOARD_EVIDENCE_RUN_DIR or, for a plain
ansible-playbook run, the one the offboard_evidence callback opened (it sets the same variable in the
controller process before any task runs); the run's manifest then covers the files like every other
evidence file. Outside an offboarding (molecule, OFFBOARD_NO_EVIDENCE=1) `export_dir` (argument) or
`offboard_export_dir` (variable) names a folder instead. Files are owner-only (0600, folders 0700).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:  # the secrets this run knows (vault, environment, generated), shared by the offboard_evidence callback
    from offboard.scrub import active as _active_redactor
    from offboard.scrub import redact_bytes as _redact_bytes
except ImportError:  # pragma: no cover - only without the offboard package
    _active_redactor = None

DOCUMENTATION = r"""
module: offboard_export
short_description: Put an exported file into the current run's evidence folder; return its path and sha256
description:
  - From the host (O(src), O(dest)) or from the controller (O(name) with O(content), O(content_b64) or
    O(local_src)). Changes nothing on any managed host; changed is always false.
options:
  src: {description: Path of the file on the managed host (read with slurp)., type: str}
  dest:
    description: Path below the run's exports folder for O(src), e.g. C(lab-dc01/gpo/x.tar.gz).
    type: str
  sha256: {description: Expected sha256 of O(src) as computed on the host., type: str}
  name:
    description: File name below exports/<folder>/ for controller content (one sub-folder allowed).
    type: str
  folder:
    description: Folder below exports/ for controller content; default the inventory host name.
    type: str
  content: {description: Text to write., type: str}
  content_b64: {description: Bytes to write, base64., type: str}
  local_src: {description: A controller file to move in (removed after the move)., type: path}
  export_dir: {description: Folder to use when no evidence run is open., type: path}
"""

RETURN = r"""
path: {description: Path of the file relative to the run folder (absolute outside a run)., type: str}
relpath: {description: Same as path., type: str}
abs_path: {description: Absolute path of the file on the controller., type: str}
dir: {description: Absolute folder of controller content (exports/<folder>)., type: str}
reldir: {description: The same folder relative to the run folder., type: str}
sha256: {description: sha256 of the written file., type: str}
size: {description: Size in bytes., type: int}
"""

EXPORTS = "exports"
_HOST_ARGS = frozenset(("src", "dest", "sha256", "export_dir"))
_CONTROLLER_ARGS = frozenset(("name", "folder", "content", "content_b64", "local_src", "export_dir"))
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]+(/[A-Za-z0-9_.@+-]+)?$")


# --- where exports go ---------------------------------------------------------------------------
def export_target(dest: str, run_dir: str | None, export_dir: str | None) -> tuple[Path, str]:
    """(absolute path to write, path to record) for `dest`; refuses paths that leave the folder."""
    rel = PurePosixPath(dest)
    if not dest or rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        raise AnsibleActionFail(f"offboard_export: dest {dest!r} must be a relative path without '..'")
    if run_dir:
        return Path(run_dir) / EXPORTS / rel, str(PurePosixPath(EXPORTS) / rel)
    if export_dir:
        target = Path(export_dir) / rel
        return target, str(target)
    raise AnsibleActionFail(
        "offboard_export: no evidence run folder (OFFBOARD_EVIDENCE_RUN_DIR is unset: evidence is off, "
        "e.g. OFFBOARD_NO_EVIDENCE=1). Pass export_dir to keep the export elsewhere."
    )


def export_root(task_vars: dict, export_dir: str | None = None) -> tuple[Path, Path]:
    """(run folder, exports folder) for controller content; says what to set when neither is known."""
    run_dir = os.environ.get("OFFBOARD_EVIDENCE_RUN_DIR")
    if run_dir:
        return Path(run_dir), Path(run_dir) / EXPORTS
    fallback = export_dir or task_vars.get("offboard_export_dir")
    if fallback:
        return Path(str(fallback)), Path(str(fallback)) / EXPORTS
    raise AnsibleActionFail(
        "offboard_export: this run has no evidence folder (OFFBOARD_EVIDENCE_RUN_DIR is unset): run through "
        "`offboard run` or with the offboard_evidence callback enabled (ansible.cfg), or set "
        "offboard_export_dir for a run that is not an offboarding"
    )


def check_name(name: str) -> str:
    if not _NAME_RE.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise AnsibleActionFail(f"offboard_export: unsafe export name {name!r}")
    return name


def host_dir(exports: Path, host: str) -> Path:
    folder = exports / check_name(host)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in (exports, folder):
        os.chmod(part, 0o700)
    return folder


# --- writing ------------------------------------------------------------------------------------
def write_private(target: Path, data: bytes) -> None:
    """Write atomically, owner-only: the file 0600, its folders 0700."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, target)


def redact(data: bytes) -> bytes:
    """Mask every secret this run knows in a text export (binary exports are written as they are)."""
    if _active_redactor is None:
        return data
    return _redact_bytes(data, _active_redactor())


def write_export(folder: Path, name: str, content: str | bytes) -> tuple[Path, str, int]:
    data = content.encode("utf-8") if isinstance(content, str) else content
    data = redact(data)
    dest = folder / check_name(name)
    write_private(dest, data)
    return dest, hashlib.sha256(data).hexdigest(), len(data)


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        if "src" in args or "dest" in args:
            unknown = set(args) - _HOST_ARGS
            if unknown:
                raise AnsibleActionFail(
                    f"offboard_export: {', '.join(sorted(unknown))} cannot go with src/dest"
                    " (a file from the host)"
                )
            result.update(self._from_host(args, task_vars))
        else:
            unknown = set(args) - _CONTROLLER_ARGS
            if unknown:
                raise AnsibleActionFail(f"offboard_export: unknown argument(s) {', '.join(sorted(unknown))}")
            result.update(self._from_controller(args, task_vars))
        result["changed"] = False
        return result

    def _from_host(self, args: dict, task_vars: dict) -> dict:
        for name in ("src", "dest"):
            if not args.get(name):
                raise AnsibleActionFail(f"offboard_export: '{name}' is required")
        if self._task.check_mode:
            return {"skipped": True, "msg": "check mode: nothing is exported"}
        target, recorded = export_target(
            str(args["dest"]), os.environ.get("OFFBOARD_EVIDENCE_RUN_DIR"), args.get("export_dir")
        )
        windows = getattr(self._connection._shell, "SHELL_FAMILY", "") == "powershell"
        slurp = self._execute_module(
            module_name="ansible.windows.slurp" if windows else "ansible.builtin.slurp",
            module_args={"src": args["src"]},
            task_vars=task_vars,
        )
        if slurp.get("failed") or "content" not in slurp:
            raise AnsibleActionFail(f"offboard_export: cannot read {args['src']}: {slurp.get('msg', slurp)}")
        data = base64.b64decode(slurp["content"])
        digest = hashlib.sha256(data).hexdigest()
        expected = args.get("sha256")
        if expected and expected.lower() != digest:
            raise AnsibleActionFail(
                f"offboard_export: {args['src']} read back with sha256 {digest}, the host computed {expected}"
            )
        data = redact(data)
        digest = hashlib.sha256(data).hexdigest()
        write_private(target, data)
        return {
            "path": recorded,
            "relpath": recorded,
            "abs_path": str(target),
            "sha256": digest,
            "size": len(data),
        }

    def _from_controller(self, args: dict, task_vars: dict) -> dict:
        run_dir, exports = export_root(task_vars, args.get("export_dir"))
        folder = host_dir(
            exports, str(args.get("folder") or task_vars.get("inventory_hostname", "controller"))
        )
        out: dict[str, Any] = {"dir": str(folder), "reldir": _relative(folder, run_dir)}
        sources = [k for k in ("content", "content_b64", "local_src") if args.get(k) is not None]
        if not sources:
            return out
        if len(sources) > 1:
            raise AnsibleActionFail("offboard_export: give one of content, content_b64, local_src")
        name = args.get("name")
        if not name:
            raise AnsibleActionFail(f"offboard_export: 'name' is required with '{sources[0]}'")
        if args.get("local_src") is not None:
            data: str | bytes = Path(args["local_src"]).read_bytes()
        elif args.get("content_b64") is not None:
            data = base64.b64decode(args["content_b64"])
        else:
            data = str(args["content"])
        dest, digest, size = write_export(folder, str(name), data)
        if args.get("local_src") is not None:
            os.unlink(args["local_src"])
        rel = _relative(dest, run_dir)
        out.update(path=rel, relpath=rel, abs_path=str(dest), sha256=digest, size=size)
        return out
