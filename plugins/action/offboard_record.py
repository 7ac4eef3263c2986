# Copyright: the offboard project contributors
# Apache-2.0
"""Action plugin: the RECORD step of every role. Returns one evidence record; never touches the host.

The offboard_evidence callback picks `offboard_record` out of the result and writes it to the run's
records.jsonl. The vocabulary (phases, actions, verification results, secret words) and its checks are
module_utils/offboard_vocabulary.py, shared with the callback and the wrapper.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.offboard.msp.plugins.module_utils.offboard_vocabulary import (  # noqa: F401 (tests)
    ACTIONS,
    PHASES,
    VERIFICATION_RESULTS,
    check_item_args,
    looks_secret,
)

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
    choices:
      - removed
      - none
      - would_remove
      - failed
      - exported
      - rotated
      - disabled
      - would_change
      - reset
      - handed_over
      - refused
  after: {description: State after the change., type: dict}
  verification:
    description: How the outcome was verified (method, result).
    type: dict
    suboptions:
      method: {description: How it was checked., type: str}
      result:
        description: The outcome of the check.
        type: str
        choices: [verified_absent, verified_changed, verified_refused, verified_equal, still_present,
          not_verified]
  error: {description: Why the action failed., type: str}
  export: {description: For exports, the path and sha256 of the exported file., type: dict}
"""

EXAMPLES = r"""
- name: RMM | record | Evidence for NinjaOne
  offboard.msp.offboard_record:
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


def validate(args: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields from the task args; ValueError naming what is wrong."""
    check_item_args(args)
    error = args.get("error")
    export = args.get("export")
    return {
        "phase": args["phase"],
        "component": args["component"],
        "item": args["item"],
        "before": dict(args.get("before") or {}),
        "action": args["action"],
        "after": dict(args.get("after") or {}),
        "verification": dict(args.get("verification") or {}),
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
