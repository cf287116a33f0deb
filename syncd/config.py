"""Configuration: the TOML schema and its validation, default paths, and the API key.

Owns everything between the config file and the frozen `Config` the rest of syncd reads: the
schema (one declarative table per section), per-key validation that fails with a one-line
`ConfigError` (`<file>: <key>: <problem>; <fix>`, black's style), the default config and state
paths. The API key is read elsewhere (`syncd.apikey`): it never lives in the config file.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pathspec

from syncd.errors import ConfigError
from syncd.paths import default_state_path

__all__ = [
    "Config",
    "DamConfig",
    "FolderConfig",
    "StateConfig",
    "SyncConfig",
    "config_from_dict",
    "load_config",
]

_MIB: Final = 1024 * 1024
_Parse = Callable[[Any, Path], Any]  # (typed value, config file's directory) -> value


@dataclass(frozen=True, slots=True)
class DamConfig:
    """How to reach the DAM project ([dam]) and how hard to push it."""

    token: str  # the project token: the {token} in https://api.filerobot.com/{token}/v4/...
    base_url: str  # API origin, no trailing slash
    key_file: Path | None  # the API key's file, when neither env nor a credential has it
    timeout_s: float  # total, per request
    connect_timeout_s: float
    workers: int
    stream_threshold_bytes: int  # larger files use the streaming PUT upload
    max_requests_per_second: float  # 0: no hard cap (the pacer still backs off on 429)
    max_attempts: int  # per request, before a file is parked
    backoff_base_s: float  # first retry waits up to this; doubles per attempt
    backoff_max_s: float  # no retry waits longer


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where the local state database lives ([state])."""

    path: Path


@dataclass(frozen=True, slots=True)
class FolderConfig:
    """One local root mirrored into one DAM folder ([[folders]]), [sync] limits merged in."""

    local: Path  # absolute and resolved; an existing directory when loaded
    remote: str  # "/" or "/a/b": leading "/", no trailing "/", no empty, "." or ".." segment
    exclude: tuple[str, ...]  # gitignore-style patterns
    delete_unknown: bool  # also delete remote files syncd never uploaded
    max_delete_percent: float  # a run deleting more than this share of the synced files ...
    max_delete_count: int  # ... and more than this many files is refused
    force_polling: bool = False  # watch by polling (network filesystems); [sync] default
    label: str = field(default="", compare=False)  # `local` as written in the file

    @property
    def name(self) -> str:
        """A short name for messages and logs: the local path as written in the file."""
        return self.label or str(self.local)


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """How the daemon paces itself ([sync]); the delete limits are merged into folders."""

    settle_ms: int = 300  # a file must keep its size and mtime this long before upload
    reconcile_interval_s: float = 600.0  # full stat+state reconcile, catching missed events
    shutdown_grace_s: float = 30.0  # on SIGTERM, in-flight uploads get this long to finish


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; `source` is the file, as given."""

    source: Path
    dam: DamConfig
    state: StateConfig
    folders: tuple[FolderConfig, ...]  # in file order, never empty
    sync: SyncConfig = field(default_factory=SyncConfig)


class _Invalid(Exception):
    """One problem with one key; `key` is a dotted path, or a suffix such as `[2]`."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message, key)
        self.message, self.key = message, key


_REQUIRED: Final = object()
# kind -> (what "expected ..." says, test). bool is a subclass of int: numbers exclude it.
_KINDS: Final[dict[str, tuple[str, Callable[[object], bool]]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "array": ("an array", lambda v: isinstance(v, list | tuple)),
}


@dataclass(frozen=True, slots=True)
class _Key:
    """One schema entry. `default` None means "absent"; `field` renames the dataclass field."""

    kind: str
    default: object = _REQUIRED
    parse: _Parse | None = None  # validates and converts; raises _Invalid
    field: str | None = None


def _show(value: object) -> str:
    """A value as it looks in TOML, for "got ..." in messages."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | int | float):
        return repr(value).lower()  # true, 8, 1.5, inf
    if isinstance(value, list | tuple | Mapping):
        return "a table" if isinstance(value, Mapping) else "an array"
    return f"a {type(value).__name__}"  # dates and times


def _rule(
    ok: Callable[[Any], object],
    use: str,
    problem: str = "is out of range",
    to: Callable[[Any], Any] = lambda v: v,
) -> _Parse:
    """`to(value)`, or `_Invalid("<value> <problem>; use <use>")` unless `ok(value)`."""

    def parse(value: Any, _: Path) -> Any:
        if not ok(value):  # comparisons with nan are false, so nan never passes
            raise _Invalid(f"{_show(value)} {problem}; use {use}")
        return to(value)

    return parse


_POSITIVE: Final = _rule(lambda v: 0 < v < math.inf, "a number greater than 0", to=float)
_PERCENT: Final = _rule(lambda v: 0 <= v <= 100, "0 to 100", to=float)
_COUNT: Final = _rule(lambda v: v >= 0, "0 or more")
_TOKEN: Final = _rule(
    lambda v: re.fullmatch(r"[A-Za-z0-9_-]+", v),
    "the one in the DAM project settings",
    "is not a token",
)


def _base_url(value: str, _: Path) -> str:
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
        raise _Invalid(
            f"{_show(value)} is not an http(s) URL; use one like https://api.filerobot.com"
        )
    if (
        url.scheme == "http"
        and url.hostname not in ("localhost", "::1")
        and not (url.hostname or "").startswith("127.")
    ):
        # The API key travels in a header: plain HTTP is only for a DAM on this machine.
        raise _Invalid(f"{_show(value)} is plain http; use https (http only for loopback)")
    return value.rstrip("/")


def _path(value: str, base: Path) -> Path:
    """`~` expanded; relative paths are relative to the config file's directory."""
    if not value:
        raise _Invalid("must not be empty; give a path")
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~nobody" for an unknown user
        raise _Invalid(f"cannot expand {_show(value)}; write the full path") from None
    return path if path.is_absolute() else base / path


def _local_root(value: str, base: Path) -> Path:
    try:
        path = _path(value, base).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise _Invalid(f"cannot resolve {_show(value)} ({exc}); fix the path") from None
    shown = str(path) if str(path) == value else f"{path} (from {_show(value)})"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise _Invalid(f"{shown} does not exist; create it or fix the path") from None
    except OSError as exc:
        raise _Invalid(f"{shown}: {exc.strerror}; fix the path or its permissions") from None
    if not stat.S_ISDIR(mode):
        raise _Invalid(f"{shown} is not a directory; point local at a folder")
    return path


def _remote(value: str, _: Path) -> str:
    if not value.startswith("/"):
        raise _Invalid(f"{_show(value)} must start with '/'; write \"/{value.strip('/')}\"")
    parts = [part for part in value.split("/") if part]  # drops trailing and doubled slashes
    if any(part in (".", "..") for part in parts):
        raise _Invalid(f"{_show(value)} has a '.' or '..' segment; write the path plainly")
    return "/" + "/".join(parts)


def _patterns(value: Sequence[object], _: Path) -> tuple[str, ...]:
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str) or not pattern.strip():
            raise _Invalid(f"expected a pattern, got {_show(pattern)}; fix or remove it", f"[{i}]")
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except ValueError as exc:
            raise _Invalid(
                f"{_show(pattern)} is not a gitignore pattern ({exc}); fix or remove it", f"[{i}]"
            ) from None
    return tuple(value)  # type: ignore[arg-type]  # every item was checked above


# The schema: adding a key is one line here plus a field on the dataclass. Defaults are in
# file units and go through `parse` like written values.
_DAM: Final = {
    "token": _Key("string", parse=_TOKEN),
    "base_url": _Key("string", "https://api.filerobot.com", _base_url),
    "key_file": _Key("string", None, _path),
    "timeout_s": _Key("number", 120.0, _POSITIVE),
    "connect_timeout_s": _Key("number", 10.0, _POSITIVE),
    "workers": _Key("integer", 8, _rule(lambda v: 1 <= v <= 64, "1 to 64")),
    "stream_threshold_mb": _Key(
        "number", 64, lambda v, b: max(1, int(_POSITIVE(v, b) * _MIB)), "stream_threshold_bytes"
    ),
    "max_requests_per_second": _Key(
        "number", 0.0, _rule(lambda v: 0 <= v < math.inf, "0 (off) or more", to=float)
    ),
    "max_attempts": _Key("integer", 6, _rule(lambda v: 1 <= v <= 100, "1 to 100")),
    "backoff_base_s": _Key("number", 0.5, _POSITIVE),
    "backoff_max_s": _Key("number", 30.0, _POSITIVE),
}
_STATE: Final = {"path": _Key("string", None, _path)}  # None: default_state_path()
_SYNC: Final = {
    "max_delete_percent": _Key("number", 10.0, _PERCENT),
    "max_delete_count": _Key("integer", 25, _COUNT),
    "force_polling": _Key("boolean", False),
    "settle_ms": _Key("integer", 300, _rule(lambda v: 0 <= v <= 600_000, "0 to 600000")),
    "reconcile_interval_s": _Key("number", 600.0, _POSITIVE),
    "shutdown_grace_s": _Key(
        "number", 30.0, _rule(lambda v: 0 <= v < math.inf, "0 or more", to=float)
    ),
}
_FOLDER: Final = {
    "local": _Key("string", parse=_local_root),
    "remote": _Key("string", parse=_remote),
    "exclude": _Key("array", (), _patterns),
    "delete_unknown": _Key("boolean", False),
    "max_delete_percent": _Key("number", None, _PERCENT),  # None: [sync]
    "max_delete_count": _Key("integer", None, _COUNT),
    "force_polling": _Key("boolean", None),  # None: [sync]
}
_SECTIONS: Final = {"dam": _DAM, "state": _STATE, "sync": _SYNC, "folders": _FOLDER}
_HEADERS: Final = {"dam": "[dam]", "state": "[state]", "sync": "[sync]", "folders": "[[folders]]"}
# Where people paste an API key inline; refused with a pointer to where it belongs.
_SECRET_KEYS: Final = frozenset({"key", "api_key", "apikey", "api-key", "secret", "api_secret"})
_NO_INLINE_KEY: Final = (
    "the API key must not be in the config file; put it in $SYNCD_API_KEY or in the file "
    "named by dam.key_file"
)


def _check_keys(table: Mapping[str, object], known: Mapping[str, object], where: str) -> None:
    """Refuse keys the schema does not know, with a did-you-mean hint."""
    for name in [name for name in table if name not in known]:
        key = f"{where}.{name}" if where else name
        if name.lower() in _SECRET_KEYS:
            raise _Invalid(_NO_INLINE_KEY, key)
        homes = [_HEADERS[s] for s, schema in _SECTIONS.items() if name in schema]
        if close := difflib.get_close_matches(name, list(known), n=1):
            hint = f"did you mean '{close[0]}'?"
        elif homes:  # e.g. a [dam] key written below a [[folders]] table lands in it
            hint = f"it belongs under {homes[0]}"
        else:
            hint = f"remove it (known keys: {', '.join(known)})"
        raise _Invalid(f"unknown key; {hint}", key)


def _typed(value: object, kind: str) -> Any:
    expected, test = _KINDS[kind]
    if test(value):
        return value
    fix = f"set it to {expected}"
    if isinstance(value, str):  # `workers = "8"`: say what would be right
        with contextlib.suppress(tomllib.TOMLDecodeError):
            fix = "remove the quotes" if test(tomllib.loads(f"v = {value}")["v"]) else fix
    raise _Invalid(f"expected {expected}, got {_show(value)}; {fix}")


def _section(table: object, section: str, where: str, base: Path) -> dict[str, Any]:
    """Validate one table against its section's schema; returns dataclass field -> value."""
    schema, header = _SECTIONS[section], _HEADERS[section]
    if not isinstance(table, Mapping):
        raise _Invalid(f"expected a table, got {_show(table)}; write it as {header}", where)
    _check_keys(table, schema, where)
    out: dict[str, Any] = {}
    for name, key in schema.items():
        value = table.get(name, key.default)
        if value is _REQUIRED:
            raise _Invalid(f"missing required key; add it under {header}", f"{where}.{name}")
        if value is not None:
            try:
                value = _typed(value, key.kind)
                value = key.parse(value, base) if key.parse else value
            except _Invalid as exc:
                raise _Invalid(exc.message, f"{where}.{name}{exc.key}") from None
        out[key.field or name] = value
    return out


def _folders(raw: object, sync: Mapping[str, Any], base: Path) -> tuple[FolderConfig, ...]:
    if raw is None or (isinstance(raw, list | tuple) and not raw):
        fix = "add a [[folders]] entry with local and remote"
        raise _Invalid(f"no folders configured; {fix}", "folders")
    if not isinstance(raw, list | tuple):
        fix = "write each entry as [[folders]] (double brackets)"
        raise _Invalid(f"expected an array of tables, got {_show(raw)}; {fix}", "folders")
    folders = []
    for i, entry in enumerate(raw):
        values = _section(entry, "folders", f"folders[{i}]", base)
        for name in ("max_delete_percent", "max_delete_count", "force_polling"):
            values[name] = sync[name] if values[name] is None else values[name]
        folders.append(FolderConfig(**values, label=entry["local"]))
    return tuple(folders)


def _check_overlaps(folders: Sequence[FolderConfig]) -> None:
    """Refuse roots that share files: they would be synced, or deleted, twice."""
    inside: dict[str, Callable[[Any, Any], bool]] = {
        "local": Path.is_relative_to,
        "remote": lambda child, root: root == "/" or child.startswith(root + "/"),
    }
    for j, b in enumerate(folders):
        for i, a in enumerate(folders[:j]):
            for name, within in inside.items():
                x, y = getattr(b, name), getattr(a, name)
                rel = "is the same as" if x == y else "is inside" if within(x, y) else "contains"
                if x == y or within(x, y) or within(y, x):
                    fix = "give each [[folders]] entry its own, separate root"
                    raise _Invalid(
                        f"{x} {rel} folders[{i}].{name} ({y}); {fix}", f"folders[{j}].{name}"
                    )


def config_from_dict(
    data: Mapping[str, object], source: Path, *, env: Mapping[str, str] | None = None
) -> Config:
    """Validate an already parsed document: `load_config` minus reading the file.

    Args:
        data: the document, as `tomllib` returns it.
        source: the file it came from: named in messages; relative paths are relative to it.
        env: environment for the default state path (`os.environ` when None).

    Raises:
        ConfigError: one line: `<file>: <key>: <problem>; <fix>`.
    """
    base = source.absolute().parent
    try:
        _check_keys(data, _SECTIONS, "")
        dam = DamConfig(**_section(data.get("dam", {}), "dam", "dam", base))
        state_path = _section(data.get("state", {}), "state", "state", base)["path"]
        sync = _section(data.get("sync", {}), "sync", "sync", base)
        folders = _folders(data.get("folders"), sync, base)
        _check_overlaps(folders)
    except _Invalid as exc:  # a value may hold a newline; the message must stay one line
        message = f"{source}: {exc.key}: {exc.message}"
        raise ConfigError(message.replace("\r", "\\r").replace("\n", "\\n")) from None
    state = StateConfig(state_path or default_state_path(env))
    daemon = SyncConfig(
        settle_ms=sync["settle_ms"],
        reconcile_interval_s=sync["reconcile_interval_s"],
        shutdown_grace_s=sync["shutdown_grace_s"],
    )
    return Config(source=source, dam=dam, state=state, folders=folders, sync=daemon)


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the TOML config file.

    Args:
        path: the config file.
        env: environment for the default state path (`os.environ` when None).

    Raises:
        ConfigError: one line naming the file, the key (or line and column), the problem
            and the fix.
    """
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        fix = "create it from config.example.toml or point $SYNCD_CONFIG at your config file"
        problem = f"file not found; {fix}"
    except IsADirectoryError:
        problem = "is a directory; give the path of the config file"
    except OSError as exc:
        problem = f"cannot read the file ({exc.strerror}); make it readable by syncd's user"
    except UnicodeDecodeError as exc:
        problem = f"byte {exc.start}: not UTF-8; save the file as UTF-8"
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with "(at line L, column C)" or "(at end of document)"
        what, _, where = str(exc).removesuffix(")").rpartition(" (at ")
        where = where.replace("end of document", "end of file")
        problem = f"{where}: invalid TOML: {what}; fix the syntax there"
    else:
        return config_from_dict(data, path, env=env)
    raise ConfigError(f"{path}: {problem}") from None
