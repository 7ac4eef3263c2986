# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: write text made on the controller (a report, an encrypted hand-over file) into the
current run's evidence folder, and return its path and sha256 for the `export` field of a record.

The controller-side sibling of offboard_export (which copies a file from the host). The folder is
`<run>/exports/<phase>/` of the evidence run in progress (OFFBOARD_EVIDENCE_RUN_DIR, set by the wrapper
or, for plain ansible-playbook runs, by the offboard_evidence callback); the run's manifest covers it.
Without an evidence run (molecule, OFFBOARD_NO_EVIDENCE=1) the file goes to `fallback_dir`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
module: offboard_export_text
short_description: Write controller-made text into the run's evidence folder; return its path and sha256
options:
  phase: {description: Phase folder below exports/., type: str, required: true}
  name: {description: File name (relative; sub-folders allowed, no ..)., type: str, required: true}
  content: {description: Text content., type: str}
  content_b64: {description: Binary content, base64., type: str}
  src: {description: A controller file to move in (e.g. written by age); removed after the move., type: path}
  fallback_dir: {description: Folder used when no evidence run is open., type: path, required: true}
"""

RETURN = r"""
path: {description: Relative to the run folder (absolute without a run)., type: str, returned: always}
abs_path: {description: Absolute path of the written file., type: str, returned: always}
sha256: {description: sha256 of the file., type: str, returned: always}
"""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@/-]*$")


def export_root(fallback: str) -> Path:
    run_dir = os.environ.get("OFFBOARD_EVIDENCE_RUN_DIR")
    if run_dir:
        return Path(run_dir) / "exports"
    return Path(fallback)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("phase", "name", "content", "content_b64", "src", "fallback_dir"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        name = str(args.get("name") or "")
        if not _NAME_RE.match(name) or ".." in name.split("/"):
            raise AnsibleActionFail(f"name {name!r} must be a plain relative file name")
        sources = [k for k in ("content", "content_b64", "src") if args.get(k) is not None]
        if len(sources) != 1:
            raise AnsibleActionFail("give exactly one of content, content_b64, src")
        target = export_root(str(args["fallback_dir"])) / str(args["phase"]) / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if args.get("src") is not None:
            data = Path(args["src"]).read_bytes()
        elif args.get("content_b64") is not None:
            data = base64.b64decode(args["content_b64"])
        else:
            data = str(args["content"]).encode("utf-8")
        tmp_path = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_path, target)
        if args.get("src") is not None:
            os.unlink(args["src"])
        run_dir = os.environ.get("OFFBOARD_EVIDENCE_RUN_DIR")
        # Inside an evidence run the record names the file relative to the run folder (as offboard_export).
        recorded = str(target.relative_to(run_dir)) if run_dir else str(target)
        result.update(
            changed=False, path=recorded, abs_path=str(target), sha256=hashlib.sha256(data).hexdigest()
        )
        return result
