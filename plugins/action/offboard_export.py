# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: copy a file a role exported on the host (a GPO backup, a removed definition...) into
the evidence of the current run, and return its path and sha256 for the record's `export` field.

The file lands in `<run folder>/exports/<dest>`; the manifest of the run then covers it like every other
evidence file (wrapper/offboard/manifest.py hashes the whole run folder). The run folder is the one the
wrapper passes in OFFBOARD_EVIDENCE_RUN_DIR, or, for a plain ansible-playbook run, the one the
offboard_evidence callback opened (it sets the same variable in the controller process). Without an
evidence run (molecule, OFFBOARD_NO_EVIDENCE) pass `export_dir`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
module: offboard_export
short_description: Copy an exported file from the host into the current run's evidence folder
description:
  - Reads O(src) on the host (slurp), writes it to C(<run folder>/exports/<dest>) on the controller
    (folders 0700, file 0600) and checks its sha256 against O(sha256) when given.
  - Changes nothing on the host; changed is always false. In check mode it does nothing (a rehearsal
    exports nothing) and returns skipped.
options:
  src: {description: Path of the file on the host., type: str, required: true}
  dest:
    description: Relative path below the run's exports folder, e.g. C(lab-dc01/gpo/x.tar.gz).
    type: str
    required: true
  sha256: {description: Expected sha256 of the file (as computed on the host)., type: str}
  export_dir: {description: Folder to write to instead of the run's exports folder., type: path}
"""

RETURN = r"""
path: {description: Path of the copy, relative to the run folder (or absolute with export_dir)., type: str}
abs_path: {description: Absolute path of the copy on the controller., type: str}
sha256: {description: sha256 of the copy., type: str}
size: {description: Size in bytes., type: int}
"""

_ARGS = frozenset(("src", "dest", "sha256", "export_dir"))
EXPORTS = "exports"


def export_target(dest: str, run_dir: str | None, export_dir: str | None) -> tuple[Path, str]:
    """(absolute path to write, path to record) for `dest`; refuses paths that leave the folder."""
    rel = PurePosixPath(dest)
    if not dest or rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        raise AnsibleActionFail(f"offboard_export: dest {dest!r} must be a relative path without '..'")
    if export_dir:
        target = Path(export_dir) / rel
        return target, str(target)
    if not run_dir:
        raise AnsibleActionFail(
            "offboard_export: no evidence run folder (OFFBOARD_EVIDENCE_RUN_DIR is unset: evidence is off, "
            "e.g. OFFBOARD_NO_EVIDENCE=1). Pass export_dir to keep the export elsewhere."
        )
    return Path(run_dir) / EXPORTS / rel, str(PurePosixPath(EXPORTS) / rel)


def write_private(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(target.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, target)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        unknown = set(args) - _ARGS
        if unknown:
            raise AnsibleActionFail(f"offboard_export: unknown arguments {', '.join(sorted(unknown))}")
        for name in ("src", "dest"):
            if not args.get(name):
                raise AnsibleActionFail(f"offboard_export: '{name}' is required")
        result["changed"] = False
        if self._task.check_mode:
            result.update(skipped=True, msg="check mode: nothing is exported")
            return result
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
        write_private(target, data)
        result.update(path=recorded, abs_path=str(target), sha256=digest, size=len(data))
        return result
