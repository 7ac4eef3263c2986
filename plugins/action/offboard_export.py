# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: put an exported file (zone export, configuration backup, hand-over package) into the
run's evidence, under exports/<host>/, and return its path and sha256 for the record's `export` field.

Where the run's evidence lives: $OFFBOARD_EVIDENCE_RUN_DIR, which the wrapper sets for its runs and the
offboard_evidence callback sets for plain ansible-playbook runs when a phase starts. Outside an
offboarding (molecule scenarios, OFFBOARD_NO_EVIDENCE=1) the variable `offboard_export_dir` names a
folder instead. Files land before the run is sealed, so the manifest covers them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
module: offboard_export
short_description: Write an exported file into the run's evidence (exports/<host>/<name>)
description:
  - Runs on the controller only. Without C(content) it only returns (and creates) the host's export folder,
    for modules that write their exports there themselves (delegated to localhost).
  - Changes nothing on any managed host, so changed is always false; also writes in check mode (a
    rehearsal's exports are evidence of the rehearsal).
  - Files are created owner-only (0600, folders 0700).
options:
  name: {description: File name below exports/<host>/ (no slashes but single sub-folders)., type: str}
  content: {description: Text to write., type: str}
"""

RETURN = r"""
dir: {description: Absolute export folder of this host., type: str, returned: always}
reldir: {description: The same folder relative to the run's evidence folder., type: str, returned: always}
path: {description: Absolute path of the written file., type: str, returned: when content is given}
relpath:
  description: Path relative to the run's evidence folder.
  type: str
  returned: when content is given
sha256: {description: sha256 of the written file., type: str, returned: when content is given}
size: {description: Bytes written., type: int, returned: when content is given}
"""

_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]+(/[A-Za-z0-9_.@+-]+)?$")


def export_root(task_vars: dict) -> tuple[Path, Path]:
    """(run folder, exports folder); AnsibleActionFail saying what to set when neither is known."""
    run_dir = os.environ.get("OFFBOARD_EVIDENCE_RUN_DIR")
    if run_dir:
        return Path(run_dir), Path(run_dir) / "exports"
    fallback = task_vars.get("offboard_export_dir")
    if fallback:
        return Path(str(fallback)), Path(str(fallback)) / "exports"
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


def write_export(folder: Path, name: str, content: str) -> tuple[Path, str, int]:
    data = content.encode("utf-8")
    dest = folder / check_name(name)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, dest)
    return dest, hashlib.sha256(data).hexdigest(), len(data)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        unknown = set(self._task.args) - {"name", "content"}
        if unknown:
            raise AnsibleActionFail(f"offboard_export: unknown argument(s) {', '.join(sorted(unknown))}")
        run_dir, exports = export_root(task_vars)
        folder = host_dir(exports, str(task_vars.get("inventory_hostname", "controller")))
        result.update(changed=False, dir=str(folder), reldir=str(folder.relative_to(run_dir)))
        content = self._task.args.get("content")
        if content is None:
            return result
        name = self._task.args.get("name")
        if not name:
            raise AnsibleActionFail("offboard_export: 'name' is required with 'content'")
        dest, digest, size = write_export(folder, str(name), str(content))
        result.update(path=str(dest), relpath=str(dest.relative_to(run_dir)), sha256=digest, size=size)
        return result
