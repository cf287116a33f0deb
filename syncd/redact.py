"""Secrets and hostile text: the registry of secrets (the API key, a password in a URL)
that are masked wherever text leaves the process, and `escape()` for text bound for a
terminal. Masking covers the whole secret and any run of `_FRAGMENT` or more of its
characters, so a message cut short (a truncated traceback value, a DAM echo cut at some
length) cannot leak part of it. File names and DAM text may hold control characters (ANSI
escapes, a carriage return that hides a line, a fake new line); `escape()` shows them."""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "escape",
    "mask",
    "redact",
    "scrub",
    "secrets_registered",
    "url_password",
    "without_password",
]

_secrets: set[str] = set()
# A run of this many characters of a secret is masked wherever it stands: short enough to
# catch a key cut at a truncation, long enough not to mask ordinary words.
_FRAGMENT = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def redact(secret: str) -> None:
    """Mask `secret` in every log event, and in everything `scrub` sees, from now on."""
    if secret:
        _secrets.add(secret)


def scrub(text: str) -> str:
    """`text` with every registered secret masked, whole or in part (for text that is
    stored or printed outside logs: DAM messages, parked reasons, the summary)."""
    masked = mask(text)
    assert isinstance(masked, str)
    return masked


def url_password(url: str) -> str | None:
    """The password in `url`'s user info (`redis://:pw@host`), as written, or None."""
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    _user, colon, password = userinfo.partition(":")
    return password or None if at and colon else None


def without_password(url: str) -> str:
    """`url` with the password in its user info shown as `***` (all of the user info when
    it has no `:`, as some write the password alone there), for messages and status. The
    user info ends at the last `@` (a password may hold `/`, `?` or `#`)."""
    scheme, sep, tail = url.partition("://")
    userinfo, at, rest = tail.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}://{shown}@{rest}"


def escape(text: str) -> str:
    """`text` with control characters (C0, DEL, C1) and lone surrogates shown as escapes
    such as `\\x1b`, so a name or a DAM message cannot move the cursor or forge a line."""
    return _CONTROL.sub(_escaped, text)


def _escaped(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _mask_text(value: str) -> str:
    for secret in _secrets:
        if secret in value:
            value = value.replace(secret, "***")
        if len(secret) > _FRAGMENT:
            value = _mask_fragments(value, secret)
    return value


def _mask_fragments(value: str, secret: str) -> str:
    """Mask every run of at least `_FRAGMENT` characters that `value` shares with
    `secret`: each window of the secret is looked for, and each hit widened to the
    longest run the two share there."""
    spans: list[tuple[int, int]] = []
    for i in range(len(secret) - _FRAGMENT + 1):
        start = value.find(secret[i : i + _FRAGMENT])
        while start != -1:
            lo, hi, k, j = start, start + _FRAGMENT, i + _FRAGMENT, i
            while hi < len(value) and k < len(secret) and value[hi] == secret[k]:
                hi, k = hi + 1, k + 1
            while lo > 0 and j > 0 and value[lo - 1] == secret[j - 1]:
                lo, j = lo - 1, j - 1
            spans.append((lo, hi))
            start = value.find(secret[i : i + _FRAGMENT], start + 1)
    if not spans:
        return value
    out, at = [], 0
    for lo, hi in sorted(spans):
        if hi <= at:
            continue
        out.append(value[at:lo] if lo > at else "")
        out.append("***" if lo >= at else "")
        at = hi
    out.append(value[at:])
    return "".join(out)


def mask(value: Any) -> Any:
    """`value` (text, or dicts, lists and tuples of it) with every registered secret masked."""
    if isinstance(value, str):
        return _mask_text(value) if _secrets else value
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask(v) for v in value)
    return value


def secrets_registered() -> bool:
    """True once a secret has been registered (the log chain skips masking until then)."""
    return bool(_secrets)
