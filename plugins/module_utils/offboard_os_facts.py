# Copyright: the offboard project contributors
# Apache-2.0
"""The OS facts an action plugin needs to pick its module, gathered only when no earlier task did (controller
side: used by the agent engine and the scheduled-task action)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

# The smallest setup that still says which OS family the host is.
SUBSET = ["!all", "!min", "distribution"]


def os_facts(
    execute_module: Callable[..., dict[str, Any]],
    task_vars: dict[str, Any],
    result: MutableMapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(facts, None), or (facts, setup's result) when gathering failed or the host was unreachable.

    Facts come from task_vars when they hold os_family; otherwise one minimal setup runs and its facts are
    also returned to the play through result["ansible_facts"], so no later task gathers them again."""
    facts = dict(task_vars.get("ansible_facts") or {})
    if "os_family" in facts:
        return facts, None
    setup = execute_module(
        module_name="ansible.legacy.setup", module_args={"gather_subset": SUBSET}, task_vars=task_vars
    )
    if setup.get("unreachable") or setup.get("failed"):
        return facts, setup
    result["ansible_facts"] = setup.get("ansible_facts") or {}
    facts.update(result["ansible_facts"])
    return facts, None
