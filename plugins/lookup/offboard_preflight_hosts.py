# Copyright: the offboard project contributors
# Apache-2.0
"""Lookup: the hosts this run's preflight validated; refuses when it has not passed.

Every phase play says `hosts: "{{ lookup('offboard_preflight_hosts') }}"`. A play's hosts are resolved in
the ansible-playbook process when the play starts, whatever the tags, --skip-tags, --start-at-task or
playbook file: a phase play run without this run's preflight (skipped, failed, or a phase playbook run on
its own) ends the run there, before any host is contacted, and targets nothing but the validated hosts.

A phase play whose phase this run did not select (`--tags agents` selects agents only; a role's tag selects
its phase) gets no hosts: it would run nothing but its roles' argument validations (Ansible tags those
`always`), for variables the preflight did not check for that phase, at a worker per task and host.
The phase is the play's `offboard_phase` variable (or the `phase` argument).
"""

from __future__ import annotations

import os

from ansible import context
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible_collections.offboard.msp.plugins.module_utils import offboard_guard

DOCUMENTATION = r"""
name: offboard_preflight_hosts
short_description: Hosts validated by this run's offboard preflight (refuses without one)
description:
  - Returns the host names the preflight play of this ansible-playbook process validated.
  - Fails, naming what to do, when this process's preflight has not passed.
  - Returns no hosts for a phase play whose phase this run did not select (the preflight's phases), so the
    play is skipped instead of running its roles' argument validations.
  - In --syntax-check / --list-hosts / --list-tasks / --list-tags runs (nothing is executed) returns C(all).
options:
  phase:
    description:
      - The play's phase; defaults to the play variable C(offboard_phase).
      - Without either, every validated host.
    type: str

"""

RETURN = r"""
_raw: {description: Host names, type: list, elements: str}
"""


REFUSAL = (
    "REFUSED before any host: this run's preflight has not passed, so no phase play may run. Run the "
    "whole playbook for one client: ansible-playbook offboard.yml -l <client> [--tags <phase>] "
    "(a phase playbook cannot run on its own, and the preflight cannot be left out with --skip-tags or "
    "--start-at-task). If the preflight failed above, fix what it names."
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        args = context.CLIARGS
        if any(args.get(k) for k in ("syntax", "listhosts", "listtasks", "listtags")):
            return ["all"]
        token = offboard_guard.read_token(os.getpid())
        if token is None:
            raise AnsibleLookupError(REFUSAL)
        phase = kwargs.get("phase") or (variables or {}).get("offboard_phase")
        selected = token.get("phases")
        if isinstance(phase, str) and isinstance(selected, list) and phase not in selected:
            return []
        return list(token["hosts"])
