"""The wrapper's console shows why a task failed, not only where (first lines of the reason, redacted)."""

from __future__ import annotations

import io

from offboard.progress import Progress


def test_a_failed_task_prints_the_first_lines_of_its_reason():
    out = io.StringIO()
    progress = Progress(["h1"], out=out, redact=lambda text: text.replace("s3cret", "********"))
    progress.handle({"event": "playbook_on_task_start", "event_data": {"task": "Validating arguments"}})
    msg = "Validation of arguments failed:\nmissing required arguments: accounts\nkey s3cret\nfour\nfive\nsix"
    progress.handle({"event": "runner_on_failed", "event_data": {"host": "h1", "res": {"msg": msg}}})
    text = out.getvalue()
    assert "FAILED h1: Validating arguments" in text
    assert "    missing required arguments: accounts" in text
    assert "s3cret" not in text and "key ********" in text
    assert "five" not in text and "..." in text
