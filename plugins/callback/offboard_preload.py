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
with them already in memory. The measured effect is in docs/evidence.md (Performance); for the
collection's own filters and the collector freeze below, in docs/performance.md (fifth round).

The project's own filters (offboard.msp.*, called by FQCN) are not among those `all()` loads: a
worker whose template names one imported all of the collection's filter files, in every worker again.
They are imported here too, under the module names Ansible's loader gives them, so the loader finds them
in sys.modules.

Before each task's workers fork, the controller's objects are moved out of the cyclic garbage
collector's reach (`gc.freeze()`, the use Python's gc documentation describes for fork without exec):
a collection in a worker would otherwise visit, and so copy, every page of the controller's heap it
inherited. Frozen objects are still freed by reference counting; only cycles that were garbage at the
moment of a freeze stay until the run ends (`gc.unfreeze()` when the playbook's stats arrive).

Nothing else changes: the same plugins are loaded from the same paths in the same way, only earlier
and once; a plugin that fails to load fails the same way (in the worker that uses it). Enabled in
ansible.cfg.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil

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
    process (one per task and host), and this collection's own filter and test files.
  - Before each task, freezes the controller's objects for the cyclic garbage collector (gc.freeze), so
    the workers forked for that task do not copy the controller's memory by collecting it.
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
        _import_own_jinja_plugins()
        try:
            names = _connections_of(play)
        except Exception:
            names = {C.DEFAULT_TRANSPORT}
        for name in sorted(names):
            try:
                connection_loader.get(name, class_only=True)
            except Exception:
                continue

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        # Sent by the strategy before it forks this task's worker for each host.
        gc.freeze()

    def v2_playbook_on_handler_task_start(self, task) -> None:
        gc.freeze()

    def v2_playbook_on_stats(self, stats) -> None:
        gc.unfreeze()


def _import_own_jinja_plugins() -> None:
    """This collection's filter and test files (the roles call them by FQCN, offboard.msp.*). `all()`
    covers only the builtin and configured plugin paths; a collection's files are loaded in the worker
    whose template names one of their filters (all of the collection's filter files, since any of them may
    define it), in every worker again. Imported here under the module names Ansible's loader gives them,
    the loader finds them already in sys.modules in every worker."""
    own = __name__.rpartition(".plugins.")[0]  # ansible_collections.offboard.msp
    if not own.startswith("ansible_collections."):
        return  # loaded from a plain path, not as the collection: nothing to share
    for kind in ("filter", "test"):
        try:
            package = importlib.import_module(f"{own}.plugins.{kind}")
        except ImportError:
            continue
        for info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
            if info.ispkg:
                continue
            try:
                importlib.import_module(info.name)
            except Exception:
                continue  # the worker that needs it reports the failure, as before


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
