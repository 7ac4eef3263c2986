"""Live progress from ansible-runner events, and the summary table at the end of a run."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

PENDING, RUNNING, FAILED, UNREACHABLE, DOWN = "pending", "running", "failed", "unreachable", "down"


@dataclass
class Progress:
    """Counts hosts per state as events arrive; prints one line per change worth seeing."""

    hosts: list[str]
    out: TextIO = sys.stdout
    redact: Callable[[str], str] = str
    state: dict[str, str] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] | None = None
    task: str = ""
    play: str = ""
    done_this_task: set[str] = field(default_factory=set)
    _last_line: str = ""

    def __post_init__(self) -> None:
        self.state = dict.fromkeys(self.hosts, PENDING)
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()

    def mark_down(self, host: str) -> None:
        self.state[host] = DOWN

    def counts(self) -> dict[str, int]:
        live = [h for h, s in self.state.items() if s not in (FAILED, UNREACHABLE, DOWN)]
        return {
            "done": sum(1 for h in live if h in self.done_this_task or self.stats is not None),
            "pending": sum(1 for h in live if h not in self.done_this_task and self.stats is None),
            "failed": sum(1 for s in self.state.values() if s == FAILED),
            "unreachable": sum(1 for s in self.state.values() if s in (UNREACHABLE, DOWN)),
        }

    def line(self) -> str:
        c = self.counts()
        where = f"{self.play} / {self.task}" if self.task else self.play
        return (
            f"hosts {c['done']} done, {c['pending']} pending, {c['failed']} failed, "
            f"{c['unreachable']} unreachable | {where}"
        )

    def _show(self, force: bool = False) -> None:
        text = self.redact(self.line())
        if text == self._last_line and not force:
            return
        self._last_line = text
        if self.tty:
            self.out.write("\r\033[K" + text[:200])
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def _say(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(self.redact(text) + "\n")
        self.out.flush()

    def handle(self, event: dict[str, Any]) -> None:
        """Update counts from one ansible-runner event (the wrapper's event_handler calls this)."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host") or ""
        if kind == "playbook_on_play_start":
            self.play = data.get("play", "")
            self.task = ""
            self.done_this_task = set()
            self._say(f"play: {self.play}")
        elif kind == "playbook_on_task_start":
            self.task = data.get("task", "")
            self.done_this_task = set()
            if not self.tty:
                return  # one line per finished task, not per started one
            self._show()
        elif kind in ("runner_on_ok", "runner_on_skipped", "runner_on_failed") and host in self.state:
            if kind == "runner_on_failed" and not data.get("ignore_errors"):
                self.state[host] = FAILED
                self._say(f"FAILED {host}: {self.task}")
                # The first lines of the reason: a user must see what to fix, not only where it failed.
                for line in _reason_lines((data.get("res") or {}).get("msg")):
                    self._say(f"    {line}")
            elif self.state[host] != FAILED:
                self.state[host] = RUNNING
            self.done_this_task.add(host)
            self._maybe_task_done()
        elif kind == "runner_on_unreachable" and host in self.state:
            self.state[host] = UNREACHABLE
            msg = ((data.get("res") or {}).get("msg") or "").splitlines()[:1]
            self._say(f"UNREACHABLE {host}: {msg[0] if msg else ''}")
            self._maybe_task_done()
        elif kind == "playbook_on_stats":
            self.stats = {
                k: data.get(k) or {}
                for k in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored", "processed")
            }
            self._show(force=True)
            if self.tty:
                self.out.write("\n")

    def _maybe_task_done(self) -> None:
        live = [h for h, s in self.state.items() if s in (PENDING, RUNNING)]
        if all(h in self.done_this_task for h in live):
            self._show()


def _reason_lines(msg: Any, limit: int = 4) -> list[str]:
    lines = [line.rstrip() for line in str(msg or "").splitlines() if line.strip()]
    return [line[:300] for line in lines[:limit]] + (["    ..."] if len(lines) > limit else [])


def _is_tty(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


def _rich_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], tty: bool) -> Table:
    """On a terminal: a light box and the header in bold; elsewhere no box, no colour, no wrapping."""
    tbl = Table(
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1) if tty else (0, 2, 0, 0),
        header_style="bold" if tty else "",
    )
    for header in headers:
        tbl.add_column(Text(str(header)), overflow="fold" if tty else "ignore", no_wrap=not tty)
    for row in rows:
        tbl.add_row(*(Text("" if c is None else str(c)) for c in row))  # Text: cells are never markup
    return tbl


def write_table(out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table with rich: boxed and bold on a terminal; plain aligned text (no colour, no box
    drawing, one line per row, nothing wrapped) when `out` is a file or a pipe."""
    if _is_tty(out):
        Console(file=out, highlight=False, emoji=False).print(_rich_table(headers, rows, tty=True))
    else:
        out.write(table(headers, list(rows)) + "\n")
    out.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (rich, no box, no colour) as a string."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=1_000_000, no_color=True, highlight=False, emoji=False)
    console.print(_rich_table(headers, rows, tty=False))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
