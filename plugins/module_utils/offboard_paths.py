# Copyright: the offboard project contributors
# Apache-2.0
"""Path safety shared by the modules that delete things on a host (agent_footprint,
msp_scheduled_footprint): one list, so a fix to it protects every role at once."""

from __future__ import annotations

import os

# Deleting any of these (or their parents) would wreck the host: a catalog or inventory typo must
# never do that.
PROTECTED = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib64",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/bin",
        "/usr/lib",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/lib",
        "/usr/local/sbin",
        "/usr/local/share",
        "/usr/sbin",
        "/usr/share",
        "/var",
        "/var/lib",
        "/var/log",
        "/etc/systemd",
        "/etc/systemd/system",
        "/lib/systemd",
        "/lib/systemd/system",
        "/usr/lib/systemd",
        "/usr/lib/systemd/system",
        "/etc/cron.d",
        "/Applications",
        "/Library",
        "/Library/LaunchDaemons",
        "/Library/LaunchAgents",
        "/Library/Application Support",
        "/System",
        "/Users",
        "/private",
        "/private/var",
        "/etc/profile.d",
        "/var/tmp",
    }
)


def safe_path(path):
    """True when a path may be deleted: absolute, normalised, no glob, not a protected folder, and at
    least two levels deep."""
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in "*?["):
        return False
    norm = os.path.normpath(path)
    return norm == path.rstrip("/") and norm not in PROTECTED and norm.count("/") >= 2
