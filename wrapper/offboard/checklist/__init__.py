"""The offboarding checklist: start, plan, attest, remind, rehearse (issue 8).

The whole process, not only what Ansible automates: every step of process.yml with an owner (a person
from the client inventory's offboard_team) and a due date. Everything the checklist does is evidence:
each `start`, `attest` and `remind` that sends something writes one run folder in the client's
evidence store (records.jsonl with kind plan | attestation | notification, attached files, plan.json),
sealed into the same manifest chain as the Ansible runs. The state of a step is derived every time
from those records and from the ledger of the Ansible runs, never stored.

Modules: client (inputs, through inventory.py), history (the evidence it reads and writes), state (step
state), notices (message texts), one module per command (start, plan, attest, remind, rehearse).
"""

from __future__ import annotations

import argparse

from offboard.checklist import attest, plan, rehearse, remind, start
from offboard.checklist.attest import cmd_attest
from offboard.checklist.client import ClientVars, find_person, hosts, load_client_vars, project
from offboard.checklist.history import CHECKLIST_LOCK, History, read_history, write_run
from offboard.checklist.notices import notices
from offboard.checklist.plan import cmd_plan
from offboard.checklist.rehearse import cmd_rehearse, missing_inputs
from offboard.checklist.remind import cmd_remind, remind_client
from offboard.checklist.start import build_plan, cmd_start, plan_gaps
from offboard.checklist.state import Context, EvidenceView, StepState, evidence_view, step_states

# Names older callers use (psa.py, c19b's to move; tests/unit/test_psa_serve.py).
write_checklist_run = write_run
_hosts = hosts
_project = project

__all__ = [
    "CHECKLIST_LOCK",
    "ClientVars",
    "Context",
    "EvidenceView",
    "History",
    "StepState",
    "build_plan",
    "cmd_attest",
    "cmd_plan",
    "cmd_rehearse",
    "cmd_remind",
    "cmd_start",
    "evidence_view",
    "find_person",
    "load_client_vars",
    "missing_inputs",
    "notices",
    "plan_gaps",
    "read_history",
    "register",
    "remind_client",
    "step_states",
    "write_run",
]


def register(sub: argparse._SubParsersAction) -> None:
    """The checklist's subcommands, in the order `offboard --help` lists them."""
    for module in (start, plan, attest, remind, rehearse):
        module.register(sub)
