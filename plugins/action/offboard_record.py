# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: the RECORD step of every role. Returns one evidence record; never touches the host.

The offboard_evidence callback picks `offboard_record` out of the result and writes it to the run's
records.jsonl. Self-contained on purpose (roles must work where the wrapper package is not
installed); tests/unit/test_records.py keeps its vocabularies equal to offboard.records.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
module: offboard_record
short_description: Record one evidence record for one discovered item on one host
description:
  - Validates the record and returns it as C(offboard_record); the offboard_evidence callback stores it.
  - Runs on the controller only, never connects to the host. Supports check mode; changed is always false.
  - Refuses any field whose name looks like it holds a secret (password, token, secret, key material...).
options:
  phase: {description: Offboarding phase., type: str, required: true, choices: [docs, access, agents, infra]}
  component: {description: What kind of thing, e.g. rmm_agent., type: str, required: true}
  item: {description: Which one, e.g. ninjaone., type: str, required: true}
  before: {description: State found by discovery (found, versions, paths, services...)., type: dict}
  action:
    description: What was done.
    type: str
    required: true
    choices: [removed, none, would_remove, failed, exported, rotated, disabled, would_change]
  after: {description: State after the change., type: dict}
  verification:
    description: How the outcome was verified; result is one of verified_absent, verified_changed,
      still_present, not_verified.
    type: dict
  error: {description: Why the action failed., type: str}
  export: {description: For exports, the path and sha256 of the exported file., type: dict}
"""

EXAMPLES = r"""
- name: RMM | record | Evidence for NinjaOne
  offboard_record:
    phase: agents
    component: rmm_agent
    item: ninjaone
    before: {found: true, services: [NinjaRMMAgent]}
    action: "{{ 'would_remove' if ansible_check_mode else 'removed' }}"
    after: {found: false}
    verification: {method: service and path probe, result: verified_absent}
"""

RETURN = r"""
offboard_record:
  description: The record, with host, client and recorded_at added.
  type: dict
  returned: always
"""

PHASES = ("docs", "access", "agents", "infra")
ACTIONS = (
    "removed",
    "none",
    "would_remove",
    "failed",
    "exported",
    "rotated",
    "disabled",
    "would_change",
    "reset",
    "handed_over",
    "refused",
)
VERIFICATION_RESULTS = (
    "verified_absent",
    "verified_changed",
    "verified_refused",
    "verified_equal",
    "still_present",
    "not_verified",
)
_ARGS = frozenset(
    ("phase", "component", "item", "before", "action", "after", "verification", "error", "export")
)
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "privatekey",
        "credential",
        "credentials",
        "bearer",
        "pin",
        "otp",
        "cookie",
        "vault",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("ssh", "key"),
        ("auth", "key"),
        ("client", "secret"),
        ("access", "key"),
        ("secret", "key"),
        ("key", "material"),
    }
)
_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def looks_secret(key: str) -> bool:
    words = [w.lower() for w in _WORD_RE.findall(str(key))]
    return any(w in _SECRET_WORDS for w in words) or any(
        p in _SECRET_PAIRS for p in itertools.pairwise(words)
    )


def secret_keys(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, sub in value.items():
            where = f"{path}.{key}" if path else str(key)
            if looks_secret(str(key)):
                found.append(where)
            found.extend(secret_keys(sub, where))
    elif isinstance(value, list | tuple):
        for index, sub in enumerate(value):
            found.extend(secret_keys(sub, f"{path}[{index}]"))
    return found


def validate(args: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields from the task args; ValueError naming what is wrong."""
    unknown = set(args) - _ARGS
    if unknown:
        raise ValueError(
            f"unknown argument(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_ARGS))}"
        )
    for name in ("phase", "component", "item", "action"):
        if not isinstance(args.get(name), str) or not args.get(name):
            raise ValueError(f"'{name}' is required and must be a non-empty string")
    if args["phase"] not in PHASES:
        raise ValueError(f"unknown phase {args['phase']!r}: use one of {', '.join(PHASES)}")
    if args["action"] not in ACTIONS:
        raise ValueError(f"unknown action {args['action']!r}: use one of {', '.join(ACTIONS)}")
    for name in ("before", "after", "verification", "export"):
        if args.get(name) is not None and not isinstance(args[name], Mapping):
            raise ValueError(f"'{name}' must be a mapping")
    verification = dict(args.get("verification") or {})
    result = verification.get("result")
    if result is not None and result not in VERIFICATION_RESULTS:
        raise ValueError(
            f"unknown verification.result {result!r}: use one of {', '.join(VERIFICATION_RESULTS)}"
        )
    export = args.get("export")
    if export is not None and not {"path", "sha256"} <= set(export):
        raise ValueError("'export' needs 'path' and 'sha256'")
    leaked = secret_keys(dict(args))
    if leaked:
        raise ValueError(
            f"refusing to record field(s) that look secret: {', '.join(leaked)}. Refer to a secret by an "
            "opaque handle (e.g. credential_ref), never by its value"
        )
    error = args.get("error")
    return {
        "phase": args["phase"],
        "component": args["component"],
        "item": args["item"],
        "before": dict(args.get("before") or {}),
        "action": args["action"],
        "after": dict(args.get("after") or {}),
        "verification": verification,
        "error": str(error) if error else None,
        "export": dict(export) if export else None,
    }


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        try:
            record = validate(self._task.args)
        except ValueError as exc:
            raise AnsibleActionFail(f"offboard_record: {exc}") from None
        record["host"] = task_vars.get("inventory_hostname", "")
        record["client"] = str(task_vars.get("offboard_client_id") or "")
        record["recorded_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record["check_mode"] = bool(self._task.check_mode or task_vars.get("ansible_check_mode"))
        result.update(changed=False, offboard_record=record)
        return result
