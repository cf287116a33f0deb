"""The building blocks of the config schema: schema entries and the per-key value checks.

Owns `Key` (one schema entry), the TOML kinds a key may have (`KINDS`, `typed`), the
`Invalid` exception a check raises (`syncd.config.schema` turns it into the one-line `ConfigError`),
how values are shown in messages (`show`), and every validator that turns a written value into
what `Config` holds: numbers in range (`rule`, `POSITIVE`, ...), the base URL, paths relative
to the config file, local roots, remote folders, exclude patterns, the CA bundle and
`host:port` addresses. Each message reads `<problem>; <fix>`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import re
import ssl
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pathspec

from syncd.redact import without_password

__all__ = [
    "COUNT",
    "KEY_PREFIX",
    "KINDS",
    "PERCENT",
    "POSITIVE",
    "REQUIRED",
    "TOKEN",
    "Invalid",
    "Key",
    "Parse",
    "base_url",
    "ca_bundle",
    "host_port",
    "local_root",
    "path",
    "patterns",
    "redis_url",
    "remote",
    "rule",
    "show",
    "typed",
]

Parse = Callable[[Any, Path], Any]  # (typed value, config file's directory) -> value


class Invalid(Exception):
    """One problem with one key; `key` is a dotted path, or a suffix such as `[2]`."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message, key)
        self.message, self.key = message, key


REQUIRED: Final = object()
# kind -> (what "expected ..." says, test). bool is a subclass of int: numbers exclude it.
KINDS: Final[dict[str, tuple[str, Callable[[object], bool]]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "array": ("an array", lambda v: isinstance(v, list | tuple)),
}


@dataclass(frozen=True, slots=True)
class Key:
    """One schema entry. `default` None means "absent"; `field` renames the dataclass field."""

    kind: str
    default: object = REQUIRED
    parse: Parse | None = None  # validates and converts; raises Invalid
    field: str | None = None


def show(value: object) -> str:
    """A value as it looks in TOML, for "got ..." in messages."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | int | float):
        return repr(value).lower()  # true, 8, 1.5, inf
    if isinstance(value, list | tuple | Mapping):
        return "a table" if isinstance(value, Mapping) else "an array"
    return f"a {type(value).__name__}"  # dates and times


def typed(value: object, kind: str) -> Any:
    """`value` if it is of `kind`, else `Invalid` saying what was expected."""
    expected, test = KINDS[kind]
    if test(value):
        return value
    fix = f"set it to {expected}"
    if isinstance(value, str):  # `workers = "8"`: say what would be right
        with contextlib.suppress(tomllib.TOMLDecodeError):
            fix = "remove the quotes" if test(tomllib.loads(f"v = {value}")["v"]) else fix
    raise Invalid(f"expected {expected}, got {show(value)}; {fix}")


def rule(
    ok: Callable[[Any], object],
    use: str,
    problem: str = "is out of range",
    to: Callable[[Any], Any] = lambda v: v,
) -> Parse:
    """`to(value)`, or `Invalid("<value> <problem>; use <use>")` unless `ok(value)`."""

    def parse(value: Any, _: Path) -> Any:
        if not ok(value):  # comparisons with nan are false, so nan never passes
            raise Invalid(f"{show(value)} {problem}; use {use}")
        return to(value)

    return parse


POSITIVE: Final = rule(lambda v: 0 < v < math.inf, "a number greater than 0", to=float)
PERCENT: Final = rule(lambda v: 0 <= v <= 100, "0 to 100", to=float)
COUNT: Final = rule(lambda v: v >= 0, "0 or more")
TOKEN: Final = rule(
    lambda v: re.fullmatch(r"[A-Za-z0-9_-]+", v),
    "the one in the DAM project settings",
    "is not a token",
)
KEY_PREFIX: Final = rule(
    lambda v: re.fullmatch(r"[\x21-\x7e]{0,100}", v),
    "up to 100 printable ASCII characters without spaces",
    "is not a usable key prefix",
)


def _loopback(host: str | None) -> bool:
    """Whether `host` (urlsplit's `hostname`: lower-cased, brackets gone) names this machine:
    `localhost`, or an IP literal in 127.0.0.0/8 or ::1. Decided on the parsed address, so
    `127.evil.example` or `localhost.evil.example` is a name like any other, and short or
    numeric spellings (`127.1`, `2130706433`) are refused rather than guessed at."""
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(value: str, _: Path) -> str:
    try:
        url = urlsplit(value)
        url.port  # noqa: B018  # raises for a port that is not a number from 0 to 65535
    except ValueError:  # an unclosed "[", a port like ":http"
        url = urlsplit("")
    if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
        raise Invalid(
            f"{show(value)} is not an http(s) URL; use one like https://api.filerobot.com"
        )
    if url.scheme == "http" and not _loopback(url.hostname):
        # The API key travels in a header: plain HTTP is only for a DAM on this machine.
        raise Invalid(f"{show(value)} is plain http; use https (http only for loopback)")
    return value.rstrip("/")


def redis_url(value: str, _: Path) -> str:
    """A `redis://` or `rediss://` (TLS) URL with a host, or `unix://` with a socket path;
    shown in messages with its password masked."""
    shown = show(without_password(value))
    fix = "use one like redis://host:6379/0, rediss://host:6380/0 or unix:///run/redis.sock"
    try:
        url = urlsplit(value)
        url.port  # noqa: B018  # raises for a port that is not a number from 0 to 65535
    except ValueError:
        raise Invalid(f"{shown} is not a Redis URL; {fix}") from None
    if url.query:  # redis-py would take them as connection settings, syncd sets its own
        raise Invalid(f"{shown} has a query string; remove it (?... is not supported); {fix}")
    if url.scheme in ("redis", "rediss"):
        if not url.hostname or url.fragment or not re.fullmatch(r"(/\d*)?", url.path):
            raise Invalid(f"{shown} is not a Redis URL (host, then /db); {fix}")
    elif url.scheme != "unix" or not url.path:
        raise Invalid(f"{shown} is not a Redis URL; {fix}")
    if url.username is not None and url.password is None:
        fix = "write the password after a colon, as redis://:PASSWORD@host:6379/0"
        raise Invalid(f"{shown} has a user name and no password; {fix}")
    return value


def path(value: str, base: Path) -> Path:
    """`~` expanded; relative paths are relative to the config file's directory."""
    if not value:
        raise Invalid("must not be empty; give a path")
    try:
        expanded = Path(value).expanduser()
    except RuntimeError:  # "~nobody" for an unknown user
        raise Invalid(f"cannot expand {show(value)}; write the full path") from None
    return expanded if expanded.is_absolute() else base / expanded


def _shown(resolved: Path, value: str) -> str:
    return str(resolved) if str(resolved) == value else f"{resolved} (from {show(value)})"


def local_root(value: str, base: Path) -> Path:
    try:
        root = path(value, base).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise Invalid(f"cannot resolve {show(value)} ({exc}); fix the path") from None
    shown = _shown(root, value)
    try:
        mode = root.stat().st_mode
    except FileNotFoundError:
        raise Invalid(f"{shown} does not exist; create it or fix the path") from None
    except OSError as exc:
        raise Invalid(f"{shown}: {exc.strerror}; fix the path or its permissions") from None
    if not stat.S_ISDIR(mode):
        raise Invalid(f"{shown} is not a directory; point local at a folder")
    return root


def ca_bundle(value: str, base: Path) -> Path | None:
    """A readable PEM file of CA certificates; "" (the example's default) means none."""
    if not value:
        return None
    bundle = path(value, base)
    shown = _shown(bundle, value)
    try:
        mode = bundle.stat().st_mode
        if not stat.S_ISREG(mode):  # checked before opening: opening a FIFO would block
            raise Invalid(f"{shown} is not a file; give a PEM file of CA certificates")
        with bundle.open("rb"):
            pass
    except FileNotFoundError:
        raise Invalid(f"{shown} does not exist; fix the path") from None
    except OSError as exc:
        raise Invalid(f"{shown}: {exc.strerror}; make it readable by syncd's user") from None
    # A file that is not PEM would otherwise only fail when the first connection is made.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=bundle)
    except ssl.SSLError as exc:
        problem = f"holds no usable CA certificate ({exc.reason or exc})"
        raise Invalid(f"{shown} {problem}; give a PEM file of CA certificates") from None
    return bundle


_LABEL: Final = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME: Final = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def host_port(value: str, _: Path) -> tuple[str, int]:
    """`HOST:PORT`, `[IPV6]:PORT`; HOST an IPv4 address or a hostname; PORT 1 to 65535."""
    fix = 'use HOST:PORT, like "127.0.0.1:9150" or "[::1]:9150"'
    if value.startswith("["):
        host, bracket, port = value[1:].partition("]")
        if not bracket or not port.startswith(":"):
            raise Invalid(f"{show(value)} is not HOST:PORT; {fix}")
        port = port[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Invalid(f"{show(value)}: {show(host)} is not an IPv6 address; {fix}") from None
    else:
        host, colon, port = value.rpartition(":")
        if not colon or not host:
            raise Invalid(f"{show(value)} is not HOST:PORT; {fix}")
        if ":" in host:
            raise Invalid(f"{show(value)}: write an IPv6 address in brackets; {fix}")
        if re.fullmatch(r"[\d.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise Invalid(f"{show(value)}: {host} is not an IPv4 address; {fix}") from None
        elif not _HOSTNAME.fullmatch(host):
            raise Invalid(f"{show(value)}: {show(host)} is not a hostname; {fix}")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise Invalid(f"{show(value)}: the port must be a number from 1 to 65535; {fix}")
    return host, int(port)


def remote(value: str, _: Path) -> str:
    if not value.startswith("/"):
        raise Invalid(f"{show(value)} must start with '/'; write \"/{value.strip('/')}\"")
    parts = [part for part in value.split("/") if part]  # drops trailing and doubled slashes
    if any(part in (".", "..") for part in parts):
        raise Invalid(f"{show(value)} has a '.' or '..' segment; write the path plainly")
    return "/" + "/".join(parts)


def patterns(value: Sequence[object], _: Path) -> tuple[str, ...]:
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str) or not pattern.strip():
            raise Invalid(f"expected a pattern, got {show(pattern)}; fix or remove it", f"[{i}]")
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except ValueError as exc:
            raise Invalid(
                f"{show(pattern)} is not a gitignore pattern ({exc}); fix or remove it", f"[{i}]"
            ) from None
    return tuple(value)  # type: ignore[arg-type]  # every item was checked above
