"""The redactor: replaces known secret values (and their JSON-escaped forms) with a mask.

Which values are secrets is found in secret_sources.py; where the redactor is applied, in scrub.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from offboard.records import looks_secret

MASK = "********"
MIN_SECRET_LINE_LEN = 16
MIN_SECRET_LEN = 6
SHORT_SECRET_MIN = 3  # below this, not even a whole value is masked ("ok", "0" would go everywhere)


class ShortSecretError(ValueError):
    """A secret too short to be masked in free text (see docs/evidence.md, Short secrets)."""


# `scheme://user:password@host`: the password part of URL userinfo, in any value, whoever set it.
_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"\\]*:)(?P<pw>[^\s/@'\"\\]+)@")
# Keys of a no_log task's registered result whose string values are taken as secrets.


class Redactor:
    """Replaces known secret values (and their JSON-escaped forms) with a mask.

    Short-secret policy (docs/evidence.md): values of MIN_SECRET_LEN characters or more are masked
    wherever they occur; shorter ones cannot be masked in free text without masking ordinary words, so
    they are masked only in key-aware contexts: a whole string value of a record or event equal to one.
    Values under a key that looks secret (password, token, ...) are masked whatever their length, and
    the password of any URL's userinfo (`scheme://user:PASSWORD@host`) is masked wherever it appears.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._needles: set[str] = set()
        self.short: set[str] = set()
        self.needles: list[str] = []
        self._re: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[Any], short: bool = False, lines: bool = True) -> None:
        """Learn more secret values (e.g. a password generated during the run).

        Parts shorter than MIN_SECRET_LEN are ignored unless `short` (values known to be secrets, e.g.
        an environment variable named like a token): those are masked as whole values only. `lines=False`
        (values learned from a run's output) masks whole values only, never each line of them."""
        before = len(self._needles)
        for value in values:
            if value is None or isinstance(value, bool):
                continue
            value = str(value)
            # A multi-line secret (a key, a config) is also masked line by line, but only lines long enough
            # to be its own material: a line such as "backup" would mask that word all over the evidence.
            parts = (
                [ln for ln in value.splitlines() if len(ln.strip()) >= MIN_SECRET_LINE_LEN] if lines else []
            )
            for part in [value, *parts, *url_passwords(value)]:
                part = part.strip() if part is not value else part
                if len(part) >= MIN_SECRET_LEN:
                    self._needles.add(part)
                    escaped = json.dumps(part)[1:-1]
                    if escaped != part:
                        self._needles.add(escaped)
                elif short and len(part.strip()) >= SHORT_SECRET_MIN and part != MASK:
                    self.short.add(part)
        if len(self._needles) != before:
            # Longest first, so a secret containing another is masked whole.
            self.needles = sorted(self._needles, key=len, reverse=True)
            self._re = re.compile("|".join(map(re.escape, self.needles)))

    def __call__(self, text: str) -> str:
        if "://" in text:
            text = _URL_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
        return self._re.sub(MASK, text) if self._re else text

    def data(self, value: Any, key: str = "") -> Any:
        """Redact structured data (a record, an event): every string, plus whole short values and
        every value under a secret-looking key."""
        if isinstance(value, str):
            if value and (value in self.short or (key and looks_secret(key) and value != MASK)):
                return MASK
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, key) for v in value]
        return value

    def __bool__(self) -> bool:
        return bool(self.needles or self.short)


def url_passwords(value: str) -> list[str]:
    """The password parts of every `scheme://user:password@host` in a value."""
    return [m.group("pw") for m in _URL_USERINFO.finditer(value)] if "://" in value else []
