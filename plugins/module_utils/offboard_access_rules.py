# Copyright: the offboard project contributors
# Apache-2.0
"""The rules that say what on a host belongs to the departing MSP: authorized_keys lines and fingerprints,
passwd/shadow/group parsing, MSP account names and sudoers rules. Pure functions, shared by the
local_access module (Linux) and the access filters (Windows and macOS findings are judged the same way)."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
from collections.abc import Iterable

# Key types OpenSSH accepts in authorized_keys (sshd(8) AUTHORIZED_KEYS FILE FORMAT).
KEY_TYPES = frozenset(
    {
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        "ssh-rsa-cert-v01@openssh.com",
        "ssh-ed25519-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    }
)


def fingerprint(blob_b64: str) -> str | None:
    """OpenSSH SHA256 fingerprint (as `ssh-keygen -lf` prints it) of a base64 key blob; None if invalid."""
    try:
        raw = base64.b64decode(blob_b64.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if not raw:
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def normalize_fingerprint(value: str) -> str:
    """Accept `SHA256:xxx` or a bare `xxx` (with or without base64 padding) and return `SHA256:xxx`."""
    value = value.strip()
    if value.upper().startswith("SHA256:"):
        value = value[7:]
    return "SHA256:" + value.rstrip("=")


def _split_options(line: str) -> list[str]:
    """Split an authorized_keys line on whitespace, keeping quoted option values (command="a b") whole."""
    tokens: list[str] = []
    current = []
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char in " \t" and not quoted:
            if current:
                tokens.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


def parse_key_line(line: str) -> dict | None:
    """One authorized_keys line -> {type, fingerprint, comment, options}; None for blanks/comments/garbage."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    tokens = _split_options(text)
    for index, token in enumerate(tokens):
        if token in KEY_TYPES and index + 1 < len(tokens):
            fp = fingerprint(tokens[index + 1])
            if fp is None:
                return None
            return {
                "type": token,
                "fingerprint": fp,
                "comment": " ".join(tokens[index + 2 :]),
                "options": tokens[0] if index == 1 else "",
            }
    return None


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def parse_passwd(text: str) -> list[dict]:
    """Entries of a passwd(5) file."""
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 7 or line.startswith("#"):
            continue
        out.append(
            {
                "name": parts[0],
                "uid": int(parts[2]) if parts[2].isdigit() else -1,
                "gid": int(parts[3]) if parts[3].isdigit() else -1,
                "home": parts[5],
                "shell": parts[6],
            }
        )
    return out


def parse_shadow(text: str) -> dict[str, dict]:
    """name -> {password_state, last_change, expire} from shadow(5); never returns the hash itself."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 8:
            continue
        hashed = parts[1]
        if hashed.startswith("!"):
            state = "locked"
        elif hashed in ("", "*") or hashed.startswith("*"):
            state = "none" if hashed in ("*", "") else "locked"
        else:
            state = "set"
        out[parts[0]] = {
            "password_state": state,
            "last_change": int(parts[2]) if parts[2].isdigit() else None,
            "expire": int(parts[7]) if parts[7].isdigit() else None,
        }
    return out


def parse_group(text: str) -> dict[str, list[str]]:
    """group name -> member names (secondary members, from group(5))."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        out[parts[0]] = [m for m in parts[3].split(",") if m]
    return out


def msp_account_names(
    passwd: list[dict], documented: Iterable[str], patterns: Iterable[str], keep: Iterable[str]
) -> dict[str, str]:
    """Local accounts held by the MSP: name -> how it was identified (`documented` or `pattern`).

    Accounts the client keeps are never the MSP's, even when a pattern matches them.
    """
    documented = set(documented)
    patterns = list(patterns)
    keep = set(keep)
    found: dict[str, str] = {}
    for entry in passwd:
        name = entry["name"]
        if name in keep:
            continue
        if name in documented:
            found[name] = "documented"
        elif matches_any(name, patterns):
            found[name] = "pattern"
    return found


def sudoers_principals(line: str) -> list[str] | None:
    """The user list of a sudoers user specification (`alice,%ops ALL=(ALL) ALL` -> [alice, %ops]).

    None for lines that are not user specifications (comments, Defaults, aliases, includes).
    """
    text = line.strip()
    if not text or text.startswith("#") or text.startswith("@"):
        return None
    first = text.split(None, 1)[0]
    if first.startswith("Defaults") or first.endswith("_Alias") or "=" not in text:
        return None
    return [p.strip() for p in first.split(",") if p.strip()]


def classify_sudoers(text: str, msp_users: Iterable[str], msp_groups: Iterable[str] = ()) -> dict:
    """Which rules of one sudoers file grant the MSP: {msp_lines, mixed_lines, other_rules}.

    A rule is the MSP's when every principal it names is an MSP user or %group; `mixed` rules name
    the MSP together with others and are never rewritten automatically (they need a person).
    """
    principals_msp = set(msp_users) | {"%" + g for g in msp_groups}
    msp_lines: list[str] = []
    mixed: list[str] = []
    other = 0
    for line in text.splitlines():
        principals = sudoers_principals(line)
        if principals is None:
            continue
        hits = [p for p in principals if p in principals_msp]
        if hits and len(hits) == len(principals):
            msp_lines.append(line.strip())
        elif hits:
            mixed.append(line.strip())
        else:
            other += 1
    return {"msp_lines": msp_lines, "mixed_lines": mixed, "other_rules": other}


def remove_lines(text: str, lines: Iterable[str]) -> str:
    """text without the lines whose stripped content is in `lines` (keeps every other byte)."""
    drop = set(lines)
    kept = [line for line in text.splitlines(keepends=True) if line.strip() not in drop]
    return "".join(kept)


def msp_key_lines(
    text: str, owner_is_msp: bool, fingerprints: Iterable[str], comment_patterns: Iterable[str]
) -> list[dict]:
    """Parsed keys of one authorized_keys file, each with `msp` (bool), `documented` and `reason`."""
    documented = {normalize_fingerprint(f) for f in fingerprints}
    patterns = list(comment_patterns)
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        key = parse_key_line(line)
        if key is None:
            continue
        key["line"] = number
        key["documented"] = key["fingerprint"] in documented
        if key["documented"]:
            key["msp"], key["reason"] = True, "documented fingerprint"
        elif key["comment"] and matches_any(key["comment"], patterns):
            key["msp"], key["reason"] = True, "comment matches an MSP pattern"
        elif owner_is_msp:
            key["msp"], key["reason"] = True, "in an MSP account's authorized_keys"
        else:
            key["msp"], key["reason"] = False, ""
        out.append(key)
    return out


def without_keys(text: str, fingerprints: Iterable[str]) -> str:
    """authorized_keys text without the lines of the given fingerprints; other lines byte-identical."""
    drop = set(fingerprints)
    kept = []
    for line in text.splitlines(keepends=True):
        key = parse_key_line(line)
        if key is not None and key["fingerprint"] in drop:
            continue
        kept.append(line)
    return "".join(kept)
