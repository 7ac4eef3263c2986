# Copyright: the offboard project contributors
# Apache-2.0
"""Load group_vars/ and host_vars/ of every client folder below the configured inventory folder.

ansible.cfg points `inventory` at `inventories/`, so that `ansible-playbook offboard.yml -l acme` works
from the repository root. Ansible's own host_group_vars plugin only looks for group_vars/ next to an
inventory source, i.e. `inventories/group_vars/`, and would ignore `inventories/acme/group_vars/`.
This plugin applies the same loader to each client folder one level down.

A client folder must never hold `group_vars/all.*`: loaded this way it would apply to every other
client's hosts too. That is refused with an error naming the file.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.plugins.vars.host_group_vars import VarsModule as HostGroupVars
from ansible.utils.vars import combine_vars

DOCUMENTATION = """
    name: client_dirs
    short_description: group_vars and host_vars of each client folder below an inventory folder
    description:
      - Applies the host_group_vars loader to every sub-folder of an inventory folder.
      - Refuses a client folder's group_vars/all, which would leak into other clients' hosts.
    options: {}
"""

_SKIP = {"group_vars", "host_vars"}


class VarsModule(HostGroupVars):
    REQUIRES_ENABLED = False

    def get_vars(self, loader, path, entities, cache=True):
        data: dict = {}
        if not os.path.isdir(path):
            return data
        for name in sorted(os.listdir(path)):
            client_dir = os.path.join(path, name)
            if name in _SKIP or name.startswith(".") or not os.path.isdir(client_dir):
                continue
            # Only folders that are inventories themselves (hold hosts) are clients.
            if not os.path.isdir(os.path.join(client_dir, "group_vars")) and not os.path.isdir(
                os.path.join(client_dir, "host_vars")
            ):
                continue
            for candidate in ("all", "all.yml", "all.yaml"):
                leak = os.path.join(client_dir, "group_vars", candidate)
                if os.path.exists(leak):
                    raise AnsibleError(
                        f"{leak} would apply to the hosts of every client in {path}. "
                        f"Move its variables to group_vars/{name}.yml (the client's own group)."
                    )
            data = combine_vars(data, super().get_vars(loader, client_dir, entities, cache=cache))
        return data
