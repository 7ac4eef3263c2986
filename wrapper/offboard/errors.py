"""Exit codes and the usage error every command shares (kept apart from `cli` so no module imports the
entry point, and `python -m offboard.cli` needs no second import of itself).

Exit codes, for people and CI jobs alike:
  0  done: nothing outstanding
  1  error: something failed; the message says what to do
  2  usage: bad arguments or input, nothing was run
  75 pending: devices still outstanding (EX_TEMPFAIL), try again later
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PENDING = 75


class UsageError(Exception):
    """Bad input from the user: reported with exit code 2 before anything runs."""
