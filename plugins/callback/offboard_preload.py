# Copyright: the offboard project contributors
# Apache-2.0
"""Callback: load the Jinja filter and test plugins once, in Ansible's controller, before workers fork.

Ansible runs every task of every host in a worker forked from the controller. The first time a task
template uses a filter or a test, Ansible loads *all* filter and test plugins it can find (the builtin
ones and this project's plugins/filter) into that process. The controller itself rarely templates, so
it never has them, and every worker imports them again, then exits, taking them with it.

py-spy of the agents phase on one lab machine: about a third of the workers' CPU went to that loading.
Loading them in the controller when each play starts means every worker forks with them already in
memory. The numbers are in docs/evidence.md (Performance): on the lab, a plain ansible-playbook
run of the agents phase went from about 99 s to 76 s, and the CPU of its process tree from 114 s to 75 s.

Nothing else changes: the same plugins are loaded from the same paths in the same way, only earlier
and once; a plugin that fails to load fails the same way (when a task uses it). Enabled in ansible.cfg.
"""

from __future__ import annotations

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader

DOCUMENTATION = r"""
name: offboard_preload
type: aggregate
short_description: Load Jinja filter and test plugins in the controller so forked workers inherit them
description:
  - At the start of each play, loads every filter and test plugin Ansible would otherwise load again
    in each worker process (one per task and host).
  - Changes no output and no results; only where and how often the plugins are imported.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "offboard_preload"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_play_start(self, play) -> None:
        # At each play, not once: adding a plugin directory (a role's filter_plugins) empties the
        # loaders' caches. When they are already loaded this returns at once.
        for loader in (filter_loader, test_loader):
            for _plugin in loader.all():
                pass
