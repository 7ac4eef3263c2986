#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Documentation of the PowerShell module win_agent_footprint.ps1 (Ansible's way for Windows modules)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: win_agent_footprint
short_description: Find an MSP agent's services, processes, files, registry keys and installer entries on
  Windows; remove what the uninstaller left
description:
  - Probes each catalogued agent footprint item on a Windows host. The code is C(win_agent_footprint.ps1);
    this file only documents it.
  - With O(state=query) it only reads (safe in check mode and for verification). It reports the services
    (with status, start type and C(ImagePath)), the processes (matched by name, C(.exe) optional, or by a
    program path inside the agent's folders; per-instance items by path only), existing paths and
    registry keys, the Add/Remove Programs entries matching the catalog's C(uninstall_entries) in the
    64-bit and the 32-bit (C(WOW6432Node)) hives (with the MSI C(product_code) when the key name is a
    GUID and C(WindowsInstaller=1)), the install folder read from C(install_dir_from), the first
    applicable uninstaller and the uninstall protection command.
  - With O(state=absent) it stops and deletes the leftover services (C(sc.exe delete)), stops the agent's
    processes and, with O(remove_leftovers), deletes its paths and registry keys (or single registry
    values). Vendor uninstallers and the lifting of uninstall protection are run by the calling role
    before this step.
  - Never globs. Refuses (reports under C(refused), never touches, never counts as found) system
    folders such as C(C:\), C(C:\Windows), C(C:\Program Files), C(C:\ProgramData), whole user profiles,
    hives and shared registry containers such as C(HKLM:\SOFTWARE) or C(...\CurrentVersion\Run), and
    their parents. A leftover service whose program still exists outside the agent's folders is not
    deleted (generic driver names can belong to another product).
  - Folders are deleted without following junctions or symbolic links.
options:
  items:
    description:
      - Footprint items as built by the C(offboard_agent_scope) filter from the agent catalog's
        C(windows) sections.
      - Each has C(key), C(product), C(name), C(category), optional C(instance), and the lists
        C(services), C(processes), C(paths), C(registry), C(uninstall_entries), C(uninstall),
        C(leftovers) (C(paths), C(registry), C(services)); optional C(install_dir_from) and C(protection).
      - Facts may be strings or dicts (C(name)/C(display_name), C(key)/C(value)).
        C({install_dir}) is replaced by the folder read from C(install_dir_from); a fact that needs it is
        skipped when the folder is unknown.
    type: list
    elements: dict
    required: true
  state:
    description: V(query) reports; V(absent) removes leftover services, processes, paths and registry keys.
    type: str
    choices: [query, absent]
    default: query
  remove_leftovers:
    description: With O(state=absent), also delete the item's paths and registry keys (and leftover ones).
    type: bool
    default: true
supports_check_mode: true
notes:
  - In check mode O(state=absent) returns what would be removed under C(removed) and changes nothing.
  - Returns C(changed) only when something was (or would be) removed.
seealso:
  - module: agent_footprint
author: offboard project
"""

EXAMPLES = r"""
- name: RMM | discover | find the MSP's agents
  win_agent_footprint:
    items: "{{ offboard_msp_agents | offboard_agent_scope(catalog, 'windows') }}"
  register: found

- name: RMM | remove | delete what the uninstaller left
  win_agent_footprint:
    items: "{{ [one_item] }}"
    state: absent
"""

RETURN = r"""
items:
  description: One entry per item, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    key: {description: product or product:instance, type: str}
    found: {description: whether any trace of the agent exists, type: bool}
    install_dir: {description: the folder read from install_dir_from, or null, type: str}
    services:
      description: "services known to the service manager: name, display_name, status, start, image_path, pid"
      type: list
    processes: {description: "running processes of the agent: pid, name, exe", type: list}
    paths: {description: existing paths of the agent, type: list}
    registry: {description: "existing registry keys (or values): key, value", type: list}
    uninstall_entries:
      description: "matching Add/Remove Programs entries: display_name, display_version, publisher, key, view
        (64 or 32), windows_installer, product_code, uninstall_string, quiet_uninstall_string"
      type: list
    leftovers: {description: "existing leftover paths, registry keys/values and services", type: dict}
    uninstaller:
      description: >-
        The first applicable catalog uninstaller, or null: C({kind: command, command, chdir, timeout}) when
        its when_exists file exists, or C({kind: msi, product_codes, msi_args, timeout}) when an MSI entry
        was found.
      type: dict
    protection:
      description: "uninstall protection: command (null when not runnable), secret_var (a name, not a value)"
      type: dict
    refused: {description: protected or unsafe targets that were skipped, type: list}
    removed:
      description: "with state=absent: services, processes, paths, registry removed (or, in check mode, to be
        removed), refused, errors"
      type: dict
"""
