#!/usr/bin/python
# Copyright: the offboard project contributors
# Apache-2.0
"""Documentation of the PowerShell module win_agent_footprint.ps1 (Ansible's way for Windows modules)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: win_agent_footprint
short_description: Find an MSP agent's footprint on Windows by catalog names and by evidence; remove it in
  layers and verify
description:
  - The Windows side of the footprint engine shared by rmm_agent_removal, backup_agent_removal and
    security_software_transition; M(agent_footprint) is the Linux/macOS side, with the same options and
    the same result. The code is C(win_agent_footprint.ps1); this file only documents it.
  - One call handles every in-scope product of a host. Host-wide snapshots (services and drivers, processes,
    Add/Remove Programs entries, scheduled tasks, Run/RunOnce values) are read once per discovery round.
  - "Discovery starts from the catalog: the item's C(paths), its C(leftovers.paths) and the install folder
    read from C(install_dir_from) are the vendor's folders (the I(roots)). It then derives, marking each
    derived entry with C(derived_from): services (and drivers) whose C(ImagePath) points into a root;
    scheduled tasks whose program action (program, arguments or working folder) does; Run/RunOnce values
    (machine, both registry views, every loaded user hive) that do; Add/Remove Programs entries (64- and
    32-bit views) whose C(InstallLocation), C(UninstallString) or C(DisplayIcon) point into a root;
    processes whose program lies under a root, or script hosts (powershell, cmd, wscript, rundll32, ...)
    whose command line names one. A root matches as a whole path component only."
  - Named facts still count. Services named by the catalog, processes by name (C(.exe) optional) for
    items without an instance, Add/Remove Programs entries by C(display_name) (exact, prefix or regex),
    registry keys and single registry values.
  - "Instance scoping: an item with an C(instance) matches processes by path only, never by name; its
    catalog paths that do not contain the instance id are neither deleted nor used as roots (reported under
    C(refused)), so a client's own instance of the same tool (same service prefix, same program names,
    another folder) is never touched."
  - "With O(state=absent), for each product found, in layers, each only when something is still there:
    lift the uninstall protection where the catalog has a command for it (the code comes from O(secrets));
    the vendor uninstaller (the first applicable catalog step: msiexec /x {ProductCode} of the named
    Add/Remove Programs entries with the catalog's C(msi_args), or the catalog command when its
    C(when_exists) file exists); the package manager (msiexec /x /qn /norestart for every MSI entry, named
    or derived, that is still there and was not tried yet); forced cleanup (services and drivers disabled,
    stopped and deleted with sc.exe, processes killed, scheduled tasks unregistered, Run values deleted,
    non-MSI Add/Remove Programs entries deleted, vendor paths and registry keys/values deleted). After each
    layer the whole derived set is probed again; C(removal.method) names the layer after which it was
    empty."
  - Every program run (protection lift, uninstaller, msiexec) is bounded by O(timeout) (or the catalog
    step's shorter C(timeout)) and waited for with every process it starts (Inno Setup and NSIS
    uninstallers hand over to a copy in %TEMP% and exit); on timeout the whole process tree is killed.
    Its exit code is recorded. An uninstaller that fails or times out never stops the next layer. Its
    output is drained and dropped, its stdin closed.
  - "C(verified_absent) is true only when the final re-probe of the whole derived set, including what
    was found before removal even where its pointer into the vendor folder is gone, finds nothing. A
    service marked for deletion until the next boot still counts as present."
  - Never globs. Folders are deleted without following junctions or symbolic links (a link is removed as a
    link). Refused (reported under C(refused), never touched, never counted as found) are drive roots,
    C(C:\Windows) and the operating-system subtrees below it (C(System32), C(SysWOW64), C(WinSxS),
    C(Installer), ...; vendor folders below C(config\systemprofile\AppData\Local|Roaming) excepted),
    C(C:\Program Files), C(C:\Program Files (x86)), C(C:\ProgramData), C(C:\Users), whole user profiles and
    their standard folders, shared folders such as C(Common Files) and the Start Menu, paths with wildcards
    or C(..); registry hives, hive roots of user hives, shared containers such as C(HKLM:\SOFTWARE),
    C(...\CurrentVersion\Run), C(...\Uninstall), C(HKLM:\SYSTEM\...\Services\EventLog), and every parent of
    one of those. A leftover service whose program exists outside the vendor's folders is not touched
    (reported under C(kept)).
options:
  items:
    description:
      - Footprint items as built by the C(offboard_agent_scope) filter from the agent catalog's
        C(windows) sections.
      - Each has C(key), C(product), C(name), C(category), optional C(instance), and the lists
        C(services), C(processes), C(paths), C(registry), C(uninstall_entries), C(uninstall),
        C(leftovers) (C(paths), C(registry), C(services)); optional C(install_dir_from) and C(protection).
      - Facts may be strings or dicts (C(name)/C(display_name), C(key)/C(value)). C({install_dir}) is
        replaced by the folder read from C(install_dir_from) (or, when that value is missing, the folder of
        the program of the first catalog-named service); a fact that needs it is skipped when the folder is
        unknown. C({secret}) in a command or C(msi_args) is replaced by the item's code from O(secrets) for
        the run only.
    type: list
    elements: dict
    required: true
  state:
    description:
      - V(query) only reads (safe in check mode, and the engine's discovery).
      - V(absent) removes in layers and re-probes (see the description); in check mode it changes nothing
        and returns what would be removed and the planned steps under C(removal.planned).
    type: str
    choices: [query, absent]
    default: query
  timeout:
    description: Upper bound in seconds for any one program run (protection lift, vendor uninstaller,
      msiexec).
    type: int
    default: 300
  secrets:
    description:
      - Uninstall or tamper-protection codes, by item C(key) (for example V(sentinelone) or
        V(screenconnect:abc)) or else by C(product).
      - Never returned; every occurrence of a code in any text of the result is replaced by C(********).
        A step that needs a code which is not given is not run and is recorded as such.
    type: dict
    default: {}
  remove_leftovers:
    description: With O(state=absent), the forced layer also deletes paths, registry keys/values and non-MSI
      Add/Remove Programs entries. Without it they stay, and the removal cannot be verified absent.
    type: bool
    default: true
supports_check_mode: true
notes:
  - Returns C(changed) when something was (or in check mode would be) removed.
  - "Verification status: NOT run on Windows in this project's CI. No Windows host and no PowerShell runtime
    exist where the tests run. What is verified here: the script parses without errors with
    tree-sitter-powershell (tests/unit/test_powershell_parse.py, part of C(make lint)); static tests
    (tests/unit/test_win_agent_footprint_static.py) check the options against this documentation, that
    every contract result key is produced, the refusal lists against required and catalog paths, that
    every destructive call is reachable only from the removal outside check mode, that codes never reach
    a result, and that no string from the catalog is evaluated as code. Behaviour on a real host is
    exercised by the opt-in scenario molecule/rmm_agent_removal_windows (needs OFFBOARD_WINRM_HOST)."
  - Not covered by discovery are user hives that are not loaded (users not logged on) for Run values, per-user
    Add/Remove Programs entries, Startup-folder shortcuts other than catalog paths, 8.3 short paths in
    service command lines, drivers in the driver store (pnputil).
  - A code passed in O(secrets) is on the uninstaller's command line while it runs, visible to local
    administrators' process listings for that time; that is how the vendors' tools take it.
seealso:
  - module: agent_footprint
author: offboard project
"""

EXAMPLES = r"""
- name: Agents | discover | find the MSP's agents (named and derived)
  offboard.msp.win_agent_footprint:
    items: "{{ __agents_items }}"
    state: query
  check_mode: false
  register: found

- name: Agents | remove | uninstall, fall back, clean up and verify the products found
  offboard.msp.win_agent_footprint:
    items: >-
      {{ __agents_items
         | selectattr('key', 'in', found['items'] | selectattr('found') | map(attribute='key')) }}
    state: absent
    timeout: 600
    secrets: "{{ {'sentinelone': vault_sentinelone_passphrase} }}"
"""

RETURN = r"""
items:
  description: One entry per item, in the order given (the engine contract shared with agent_footprint).
  returned: always
  type: list
  elements: dict
  contains:
    key: {description: product or product:instance, type: str}
    product: {description: the catalog product, type: str}
    instance: {description: the instance id, or null, type: str}
    name: {description: the product's display name from the catalog, type: str}
    category: {description: rmm, remote_access, backup, security, type: str}
    found: {description: whether anything at all (named or derived) exists, type: bool}
    footprint:
      description: What exists now (query) or existed before removal (absent).
      type: dict
      contains:
        packages: {description: always empty on Windows (MSI products are uninstall_entries), type: list}
        services:
          description: "services and drivers: name, display_name, state, start_mode, enabled, image_path, pid,
            derived_from (when found by evidence), pending_delete (in removal.remaining only)"
          type: list
        processes: {description: "pid, name, exe, derived_from", type: list}
        paths: {description: existing catalog paths, type: list}
        startup:
          description: "kind (scheduled_task or run_key), where (task path or registry key), entry (action or
            value=data), value (the Run value name), derived_from"
          type: list
        registry: {description: "existing registry keys, or 'KEY [value]' for single values", type: list}
        uninstall_entries:
          description: "Add/Remove Programs entries: display_name, display_version, publisher, key, view
            (64 or 32), windows_installer, product_code, uninstall_string, quiet_uninstall_string,
            install_location, display_icon, derived_from"
          type: list
    refused: {description: protected, unsafe or not-this-instance targets that were left alone, type: list}
    kept:
      description: leftover services with a generic name whose program lies elsewhere, left alone
      type: list
    install_dir: {description: the install folder, or null, type: str}
    install_dir_source:
      description: where install_dir was read (registry value or a service's ImagePath)
      type: str
    uninstaller:
      description: >-
        The vendor uninstaller planned, or null: C({kind: command, program, command, chdir, timeout,
        needs_secret}) or C({kind: msi, program: msiexec.exe, product_codes, msi_args, timeout,
        needs_secret}). C({secret}) stays a placeholder.
      type: dict
    protection:
      description: "uninstall protection: available (a runnable command), needs_secret, secret_var (a name),
        code_given"
      type: dict
    removal:
      description: With state=absent, for items found.
      returned: state=absent and found
      type: dict
      contains:
        attempts:
          description: >-
            In the order tried: C({method: vendor_uninstaller|package_manager|forced, rc, timed_out, detail}).
            One per program run (one per MSI product code). rc is null for forced, for a run that timed out
            and for a step not run (a missing code); detail shows the command line with C({secret}), never
            the code.
          type: list
        method: {description: "the layer after which the re-probe was clean, or null", type: str}
        remaining:
          description: the final re-probe of the whole derived set (same shape as footprint)
          type: dict
        verified_absent: {description: true only when remaining is completely empty, type: bool}
        protection: {description: "the protection lift: ran, rc, timed_out, detail; or null", type: dict}
        reboot_required:
          description: an installer returned 1641/3010, or a service awaits deletion at the next boot
          type: bool
        planned: {description: in check mode, the steps that would run, type: list}
"""
