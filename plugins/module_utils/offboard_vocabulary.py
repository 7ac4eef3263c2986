# Copyright: the offboard project contributors
# Apache-2.0
"""The record vocabulary, written once: phases (in run order), record actions, verification results,
phase outcomes, record kinds and the words that name a secret, with the checks built on them.

Imported by the offboard_record action plugin, the offboard_preflight action, the evidence callback and
the wrapper (offboard.records); docs/record.schema.json and the module docs' choices agree with it
(tests/unit/test_vocabulary.py). Pure Python, no Ansible import: the wrapper loads it outside a run.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

# The phases, in the order offboard.yml runs them (docs before anything is removed).
PHASES = ("docs", "access", "agents", "infra")
# What a role did to one item (offboard_record action).
ACTIONS = (
    "removed",
    "none",
    "would_remove",
    "failed",
    "exported",
    "rotated",
    "disabled",
    "would_change",
    "reset",
    "handed_over",
    "refused",
)
# Actions that mean the item is done (the ledger's "done"); the others leave it pending or failed.
DONE_ACTIONS = ("removed", "exported", "rotated", "disabled", "reset", "handed_over")
# How the outcome was checked afterwards (verification.result).
VERIFICATION_RESULTS = (
    "verified_absent",
    "verified_changed",
    "verified_refused",
    "verified_equal",
    "still_present",
    "not_verified",
)
# A host's outcome at the end of a phase play (phase_end records).
OUTCOMES = ("ok", "failed", "unreachable")
# Lines of a run's records.jsonl (written during ansible-playbook runs)...
RUN_KINDS = ("item", "unreachable", "phase_start", "phase_end")
# ...and the checklist's records (plan, attestations, notices, PSA updates).
CHECKLIST_KINDS = ("plan", "attestation", "notification", "psa_update")
KINDS = RUN_KINDS + CHECKLIST_KINDS
# Fields an offboard_record task may set.
ITEM_ARGS = ("phase", "component", "item", "before", "action", "after", "verification", "error", "export")

# A key naming secret material is refused anywhere in a record (values are never inspected for this).
# Keys are split into words (snake, kebab, dotted, camelCase) so "footprint" or "bypass_list" pass.
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "privatekey",
        "credential",
        "credentials",
        "bearer",
        "pin",
        "otp",
        "cookie",
        "vault",
    }
)
SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("ssh", "key"),
        ("auth", "key"),
        ("client", "secret"),
        ("access", "key"),
        ("secret", "key"),
        ("key", "material"),
    }
)
_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(str(name))]


def looks_secret(key: str) -> bool:
    """True when a field name suggests it holds a secret value."""
    words = _words(key)
    return any(w in SECRET_WORDS for w in words) or any(p in SECRET_PAIRS for p in itertools.pairwise(words))


def names_secret(name: str) -> bool:
    """True when a variable's name says its value is a secret: its last word is a secret word, or its last two
    words a secret pair (`__credential_rotation_secret`, `new_password`, `api_key`). Stricter than
    looks_secret: a role prefix such as `credential_rotation_` names the role, not a secret value."""
    words = _words(name)
    if not words:
        return False
    return words[-1] in SECRET_WORDS or tuple(words[-2:]) in SECRET_PAIRS


def secret_keys(value: Any, path: str = "") -> list[str]:
    """Dotted paths of every mapping key in `value` that looks like it holds secret material."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, sub in value.items():
            where = f"{path}.{key}" if path else str(key)
            if looks_secret(str(key)):
                found.append(where)
            found.extend(secret_keys(sub, where))
    elif isinstance(value, list | tuple):
        for index, sub in enumerate(value):
            found.extend(secret_keys(sub, f"{path}[{index}]"))
    return found


def check_item_args(args: Mapping[str, Any]) -> None:
    """Check an offboard_record task's arguments against the vocabulary; ValueError naming what is wrong."""
    unknown = set(args) - set(ITEM_ARGS)
    if unknown:
        raise ValueError(
            f"unknown argument(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(ITEM_ARGS))}"
        )
    for name in ("phase", "component", "item", "action"):
        if not isinstance(args.get(name), str) or not args.get(name):
            raise ValueError(f"'{name}' is required and must be a non-empty string")
    if args["phase"] not in PHASES:
        raise ValueError(f"unknown phase {args['phase']!r}: use one of {', '.join(PHASES)}")
    if args["action"] not in ACTIONS:
        raise ValueError(f"unknown action {args['action']!r}: use one of {', '.join(ACTIONS)}")
    for name in ("before", "after", "verification", "export"):
        if args.get(name) is not None and not isinstance(args[name], Mapping):
            raise ValueError(f"'{name}' must be a mapping")
    result = (args.get("verification") or {}).get("result")
    if result is not None and result not in VERIFICATION_RESULTS:
        raise ValueError(
            f"unknown verification.result {result!r}: use one of {', '.join(VERIFICATION_RESULTS)}"
        )
    export = args.get("export")
    if export is not None and not {"path", "sha256"} <= set(export):
        raise ValueError("'export' needs 'path' and 'sha256'")
    leaked = secret_keys(dict(args))
    if leaked:
        raise ValueError(
            f"refusing to record field(s) that look secret: {', '.join(leaked)}. Refer to a secret by an "
            "opaque handle (e.g. credential_ref), never by its value"
        )
