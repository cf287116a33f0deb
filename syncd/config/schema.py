"""Configuration: the TOML schema and its validation, default paths, and the API key.

Owns everything between the config file and the frozen `Config` the rest of syncd reads: the
config dataclasses, the schema (one declarative table per section), checking a document
against it with a one-line `ConfigError` (`<file>: <key>: <problem>; <fix>`, black's style),
and the keys refused on purpose (an inline API key, turning TLS verification off). The
per-key value checks live in `syncd.config.rules`. The API key is read elsewhere
(`syncd.config.apikey`): it never lives in the config file.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from syncd.config.paths import default_state_path
from syncd.config.rules import (
    COUNT,
    KEY_PREFIX,
    PERCENT,
    POSITIVE,
    REQUIRED,
    TOKEN,
    Invalid,
    Key,
    base_url,
    ca_bundle,
    host_port,
    local_root,
    path,
    patterns,
    redis_url,
    remote,
    rule,
    show,
    typed,
)
from syncd.errors import ConfigError

__all__ = [
    "Config",
    "DamConfig",
    "FleetConfig",
    "FolderConfig",
    "MetricsConfig",
    "StateConfig",
    "SyncConfig",
    "config_from_dict",
    "load_config",
]

_MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DamConfig:
    """How to reach the DAM project ([dam]) and how hard to push it."""

    token: str  # the project token: the {token} in https://api.filerobot.com/{token}/v4/...
    base_url: str  # API origin, no trailing slash
    key_file: Path | None  # the API key's file, when neither env nor a credential has it
    timeout_s: float  # total, per request
    connect_timeout_s: float
    workers: int  # the most requests in flight
    min_workers: int  # the fewest the pacer may go down to
    stream_threshold_bytes: int  # larger files use the streaming PUT upload
    max_requests_per_second: float  # 0: no hard cap (the pacer still backs off on 429)
    max_attempts: int  # per request, before a file is parked
    backoff_base_s: float  # first retry waits up to this; doubles per attempt
    backoff_max_s: float  # no retry waits longer
    # Extra CA certificates (PEM) trusted besides the system's, for a TLS-inspecting proxy.
    ca_bundle: Path | None = None
    # How far the DAM's listings may lag behind its writes (docs/dam-api.md, "listing lag"):
    # how long an upload whose outcome is unknown is looked for before it is sent again.
    listing_lag_s: float = 5.0


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
class MetricsConfig:
    """Where the Prometheus metrics endpoint listens ([metrics]); None: no endpoint."""

    listen: tuple[str, int] | None = None  # (host, port); an IPv6 host without brackets


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The Redis through which several syncd hosts share one project's quota ([fleet])."""

    # None: no fleet, this host paces itself. May hold a password: never shown whole.
    redis_url: str | None = field(default=None, repr=False)
    key_prefix: str = ""  # "": the project token, so hosts of one project meet by default
    ca_bundle: Path | None = None  # extra CA certificates for rediss://


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; `source` is the file, as given."""

    source: Path
    dam: DamConfig
    state: StateConfig
    folders: tuple[FolderConfig, ...]  # in file order, never empty
    sync: SyncConfig = field(default_factory=SyncConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)


# The schema: adding a key is one line here plus a field on the dataclass. Defaults are in
# file units and go through `parse` like written values.
_DAM: Final = {
    "token": Key("string", parse=TOKEN),
    "base_url": Key("string", "https://api.filerobot.com", base_url),
    "key_file": Key("string", None, path),
    "timeout_s": Key("number", 120.0, POSITIVE),
    "connect_timeout_s": Key("number", 10.0, POSITIVE),
    # The most requests in flight; the pacer finds how many the DAM takes, down to
    # min_workers (docs/dam-api.md §7).
    "workers": Key("integer", 64, rule(lambda v: 1 <= v <= 256, "1 to 256")),
    "min_workers": Key("integer", 2, rule(lambda v: 1 <= v <= 256, "1 to 256")),
    "stream_threshold_mb": Key(
        "number", 64, lambda v, b: max(1, int(POSITIVE(v, b) * _MIB)), "stream_threshold_bytes"
    ),
    "max_requests_per_second": Key(
        "number", 0.0, rule(lambda v: 0 <= v < math.inf, "0 (off) or more", to=float)
    ),
    "max_attempts": Key("integer", 6, rule(lambda v: 1 <= v <= 100, "1 to 100")),
    "backoff_base_s": Key("number", 0.5, POSITIVE),
    "backoff_max_s": Key("number", 30.0, POSITIVE),
    "ca_bundle": Key("string", None, ca_bundle),
    "listing_lag_s": Key(
        "number", 5.0, rule(lambda v: 0 <= v <= 600, "0 to 600 seconds", to=float)
    ),
}
_STATE: Final = {"path": Key("string", None, path)}  # None: default_state_path()
_SYNC: Final = {
    "max_delete_percent": Key("number", 10.0, PERCENT),
    "max_delete_count": Key("integer", 25, COUNT),
    "force_polling": Key("boolean", False),
    "settle_ms": Key("integer", 300, rule(lambda v: 0 <= v <= 600_000, "0 to 600000")),
    "reconcile_interval_s": Key("number", 600.0, POSITIVE),
    "shutdown_grace_s": Key(
        "number", 30.0, rule(lambda v: 0 <= v < math.inf, "0 or more", to=float)
    ),
}
_FOLDER: Final = {
    "local": Key("string", parse=local_root),
    "remote": Key("string", parse=remote),
    "exclude": Key("array", (), patterns),
    "delete_unknown": Key("boolean", False),
    "max_delete_percent": Key("number", None, PERCENT),  # None: [sync]
    "max_delete_count": Key("integer", None, COUNT),
    "force_polling": Key("boolean", None),  # None: [sync]
}
_METRICS: Final = {"listen": Key("string", None, host_port)}  # None: no metrics endpoint
_FLEET: Final = {
    "redis_url": Key("string", None, redis_url),  # None: no fleet
    "key_prefix": Key("string", "", KEY_PREFIX),  # "": the project token
    "ca_bundle": Key("string", None, ca_bundle),
}
_SECTIONS: Final = {
    "dam": _DAM,
    "state": _STATE,
    "sync": _SYNC,
    "metrics": _METRICS,
    "fleet": _FLEET,
    "folders": _FOLDER,
}
_HEADERS: Final = {
    "dam": "[dam]",
    "state": "[state]",
    "sync": "[sync]",
    "metrics": "[metrics]",
    "fleet": "[fleet]",
    "folders": "[[folders]]",
}
# Where people paste an API key inline; refused with a pointer to where it belongs.
_SECRET_KEYS: Final = frozenset({"key", "api_key", "apikey", "api-key", "secret", "api_secret"})
_NO_INLINE_KEY: Final = (
    "the API key must not be in the config file; put it in $SYNCD_API_KEY or in the file "
    "named by dam.key_file"
)
# Where people look for a switch to skip certificate checks; there is none, and why.
_TLS_OFF_KEYS: Final = frozenset(
    {
        "verify_tls",
        "verify_ssl",
        "tls_verify",
        "ssl_verify",
        "verify_certificate",
        "insecure",
        "no_verify",
        "skip_verify",
        "skip_tls_verify",
        "insecure_skip_verify",
    }
)
_NO_TLS_OFF: Final = (
    "TLS verification cannot be turned off; use dam.ca_bundle for a private CA or a"
    " TLS-inspecting proxy"
)


def _check_keys(table: Mapping[str, object], known: Mapping[str, object], where: str) -> None:
    """Refuse keys the schema does not know, with a did-you-mean hint."""
    for name in [name for name in table if name not in known]:
        key = f"{where}.{name}" if where else name
        if name.lower() in _SECRET_KEYS:
            raise Invalid(_NO_INLINE_KEY, key)
        if name.lower().replace("-", "_") in _TLS_OFF_KEYS:
            raise Invalid(_NO_TLS_OFF, key)
        homes = [_HEADERS[s] for s, schema in _SECTIONS.items() if name in schema]
        if close := difflib.get_close_matches(name, list(known), n=1):
            hint = f"did you mean '{close[0]}'?"
        elif homes:  # e.g. a [dam] key written below a [[folders]] table lands in it
            hint = f"it belongs under {homes[0]}"
        else:
            hint = f"remove it (known keys: {', '.join(known)})"
        raise Invalid(f"unknown key; {hint}", key)


def _section(table: object, section: str, where: str, base: Path) -> dict[str, Any]:
    """Validate one table against its section's schema; returns dataclass field -> value."""
    schema, header = _SECTIONS[section], _HEADERS[section]
    if not isinstance(table, Mapping):
        raise Invalid(f"expected a table, got {show(table)}; write it as {header}", where)
    _check_keys(table, schema, where)
    out: dict[str, Any] = {}
    for name, key in schema.items():
        value = table.get(name, key.default)
        if value is REQUIRED:
            raise Invalid(f"missing required key; add it under {header}", f"{where}.{name}")
        if value is not None:
            try:
                value = typed(value, key.kind)
                value = key.parse(value, base) if key.parse else value
            except Invalid as exc:
                raise Invalid(exc.message, f"{where}.{name}{exc.key}") from None
        out[key.field or name] = value
    return out


def _folders(raw: object, sync: Mapping[str, Any], base: Path) -> tuple[FolderConfig, ...]:
    if raw is None or (isinstance(raw, list | tuple) and not raw):
        fix = "add a [[folders]] entry with local and remote"
        raise Invalid(f"no folders configured; {fix}", "folders")
    if not isinstance(raw, list | tuple):
        fix = "write each entry as [[folders]] (double brackets)"
        raise Invalid(f"expected an array of tables, got {show(raw)}; {fix}", "folders")
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
                    raise Invalid(
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
        if dam.min_workers > dam.workers:
            raise Invalid(
                f"{dam.min_workers} is more than dam.workers ({dam.workers}); lower it or"
                " raise workers",
                "dam.min_workers",
            )
        state_path = _section(data.get("state", {}), "state", "state", base)["path"]
        sync = _section(data.get("sync", {}), "sync", "sync", base)
        metrics = MetricsConfig(**_section(data.get("metrics", {}), "metrics", "metrics", base))
        fleet = FleetConfig(**_section(data.get("fleet", {}), "fleet", "fleet", base))
        if fleet.redis_url is None and (fleet.key_prefix or fleet.ca_bundle):
            name = "key_prefix" if fleet.key_prefix else "ca_bundle"
            raise Invalid(
                "has no effect without fleet.redis_url; add it, or remove this", f"fleet.{name}"
            )
        folders = _folders(data.get("folders"), sync, base)
        _check_overlaps(folders)
    except Invalid as exc:  # a value may hold a newline; the message must stay one line
        message = f"{source}: {exc.key}: {exc.message}"
        raise ConfigError(message.replace("\r", "\\r").replace("\n", "\\n")) from None
    state = StateConfig(state_path or default_state_path(env))
    daemon = SyncConfig(
        settle_ms=sync["settle_ms"],
        reconcile_interval_s=sync["reconcile_interval_s"],
        shutdown_grace_s=sync["shutdown_grace_s"],
    )
    return Config(
        source=source,
        dam=dam,
        state=state,
        folders=folders,
        sync=daemon,
        metrics=metrics,
        fleet=fleet,
    )


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
