# Copyright: the offboard project contributors
# Apache-2.0
"""Callback: load plugins once, in Ansible's controller, before the workers fork.

Ansible runs every task of every host in a worker forked from the controller. The first time a task
template uses a filter or a test, Ansible loads *all* filter and test plugins it can find (the builtin
ones and this project's plugins/filter) into that process; each worker also imports its connection
plugin. The controller rarely does either, so every worker imports them again, then exits, taking
them with it.

py-spy of the workers on one lab machine: about a third of their CPU went to loading the filters and
tests, and with those preloaded, a quarter of the rest to importing community.docker's docker_api
connection. This callback loads both in the controller when each play starts, so every worker forks
with them already in memory. The measured effect is in docs/evidence.md (Performance).

Nothing else changes: the same plugins are loaded from the same paths in the same way, only earlier
and once; a plugin that fails to load fails the same way (in the worker that uses it). Enabled in
ansible.cfg.
"""

from __future__ import annotations

from ansible import constants as C
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import connection_loader, filter_loader, test_loader

DOCUMENTATION = r"""
name: offboard_preload
type: aggregate
short_description: Load filter, test and connection plugins in the controller so workers inherit them
description:
  - At the start of each play, loads every filter and test plugin, and the connection plugins the
    play's hosts name in the inventory, which Ansible would otherwise load again in each worker
    process (one per task and host).
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
        # Only a speed-up: whatever fails here (a templated host pattern, a plugin that does not load)
        # is left to the worker that needs it, which reports it as it always has.
        for loader in (filter_loader, test_loader):
            try:
                for _plugin in loader.all():
                    pass
            except Exception:
                continue
        try:
            names = _connections_of(play)
        except Exception:
            names = {C.DEFAULT_TRANSPORT}
        for name in sorted(names):
            try:
                connection_loader.get(name, class_only=True)
            except Exception:
                continue


def _connections_of(play) -> set[str]:
    """The connection plugins the play's hosts name in the inventory itself (host or group vars of
    the inventory file), plus Ansible's default. Best effort and cheap: one set lookup per host and
    group. A connection set elsewhere (group_vars files, play vars) is simply loaded by the worker."""
    names = {C.DEFAULT_TRANSPORT}
    inventory = getattr(play.get_variable_manager(), "_inventory", None)
    if inventory is None:
        return names
    for host in inventory.get_hosts(play.hosts):
        for source in (host.vars, *(group.vars for group in host.get_groups())):
            name = source.get("ansible_connection")
            if isinstance(name, str) and name and "{" not in name:
                names.add(name)
    return names
