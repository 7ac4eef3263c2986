# Copyright: the offboard project contributors
# Apache-2.0
"""Lookup: the hosts this run's preflight validated; refuses when it has not passed.

Every phase play says `hosts: "{{ lookup('offboard_preflight_hosts') }}"`. A play's hosts are resolved in
the ansible-playbook process when the play starts, whatever the tags, --skip-tags, --start-at-task or
playbook file: a phase play run without this run's preflight (skipped, failed, or a phase playbook run on
its own) ends the run there, before any host is contacted, and targets nothing but the validated hosts.
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
  - In --syntax-check / --list-hosts / --list-tasks / --list-tags runs (nothing is executed) returns C(all).
options: {}
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
        return list(token["hosts"])
