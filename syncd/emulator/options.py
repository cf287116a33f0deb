"""Runtime-tunable settings of the DAM emulator: project policies, response shape options,
switches for the DAM behaviour no source documents (docs/dam-api.md §12) and fault injection
rates, with the validation shared by the command line and `/_emulator/options`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from syncd.emulator.permissions import PERMISSIONS

__all__ = [
    "Duplicates",
    "Malice",
    "Naming",
    "Options",
    "QMatch",
    "RenameInfoName",
    "RetryAfterStyle",
    "SameAssetBy",
    "SameName",
    "SortRule",
    "UpdatedAfterRule",
]

Naming = Literal["keep", "suffix", "uuid"]
SameName = Literal["override", "version", "refuse"]
Duplicates = Literal["accept", "refuse"]
RetryAfterStyle = Literal["seconds", "date", "none"]
RateLimitScope = Literal["project", "key"]
QMatch = Literal["stored", "both", "words", "ignored"]
RenameInfoName = Literal["kept", "rewritten"]
UpdatedAfterRule = Literal["exact", "second", "ignored"]
SameAssetBy = Literal["stored", "sent"]
SortRule = Literal["honoured", "ignored"]
# The deliberately hostile answers of syncd.emulator.malice.
Malice = Literal[
    "off",
    "echo_key",
    "endless_pages",
    "repeat_pages",
    "uncounted_pages",
    "gzip_bomb",
    "trickle",
    "wrong_types",
]

_CHOICES: dict[str, tuple[str, ...]] = {
    "naming": get_args(Naming),
    "same_name": get_args(SameName),
    "duplicates": get_args(Duplicates),
    "retry_after_style": get_args(RetryAfterStyle),
    "rate_limit_scope": get_args(RateLimitScope),
    "q_match": get_args(QMatch),
    "rename_info_name": get_args(RenameInfoName),
    "same_asset_by": get_args(SameAssetBy),
    "updated_after": get_args(UpdatedAfterRule),
    "sort": get_args(SortRule),
    "malice": get_args(Malice),
}
_RATES = ("error_rate", "reset_before_commit_rate", "reset_after_commit_rate", "error_body_rate")
_NUMBERS = (*_RATES, "rate_limit", "rate_burst", "slow_ms", "jitter_ms", "listing_lag_s")
# option -> (lowest, highest, what the error message asks for)
_INTEGERS = {
    "max_upload_bytes": (0, math.inf, "an integer >= 0"),
    "same_asset_status": (200, 599, "an HTTP status 200-599"),
}
_BOOLS = ("size_as_int", "folder_trailing_slash", "page_drift", "listing_sha1", "noop_conflict")


@dataclass(slots=True)
class Options:
    """Everything about the emulator's behaviour that may change while it runs.

    The instance is shared by the store and the request handlers and is read on every request,
    so assigning an attribute (or calling `update`) takes effect immediately.

    The attributes from `q_match` on are switches for DAM behaviour that no source documents
    (docs/dam-api.md §12). Each default is the least convenient reading that costs no time; lag,
    page drift, a missing sha1 and denied permissions are opt-in.

    Attributes:
        naming: the project's file naming rule (docs/dam-api.md §2.3): keep the original name, add
            a random 8-character suffix, or use a random hex name.
        same_name: what an upload does when the folder already holds a file of that name with
            different content.
        duplicates: whether identical content elsewhere in the project is refused.
        same_asset_status: HTTP status of the `SAME_ASSET_EXISTS_SKIP_UPLOAD` and
            `ERROR_SHA1_CONFLICT` replies; the real status is undocumented (docs/dam-api.md §12.5).
        size_as_int: send `size` as a plain byte count (legacy shape) instead of an object.
        folder_trailing_slash: send a file's `folder.name` as `/a/b/` instead of `/a/b`.
        rate_limit: token-bucket rate in requests per second; 0 turns it off.
        rate_burst: the bucket's size, the requests let through at once; 0: one second's
            worth (`rate_limit`, at least 1).
        retry_after_style: how a 429 states when to come back.
        rate_limit_scope: unknown (docs/dam-api.md §7.1, §12.9): one bucket for the
            project, whatever the key (`project`, the default: hosts with keys of their
            own still share it), or one bucket per API key (`key`).
        error_rate: chance of a random 500/502/503 reply.
        reset_before_commit_rate: chance an upload's connection drops before it is stored.
        reset_after_commit_rate: chance an upload's connection drops after it is stored.
        slow_ms: delay added to every API request (the DAM's distance).
        jitter_ms: each request's delay varies uniformly by up to this much either way.
        max_upload_bytes: uploads larger than this are refused with 413
            `ERR_FILE_TOO_LARGE` (the real POST limit is undocumented, docs/dam-api.md §12.1);
            0 means no limit.
        error_body_rate: chance of an HTTP 200 whose body says `"status":"error"`.
        seed: seed of the emulator's random generator; None seeds from the OS.
        q_match: unknown (docs/dam-api.md §12.19): `q` matches a substring of the stored name,
            of it or `info.name` (`both`), a whole word of the stored name, or nothing.
        listing_lag_s: unknown (docs/dam-api.md §12.21): file listings show the project as it was
            this many seconds ago; details, uploads, writes and folder listings stay live.
        rename_info_name: unknown (docs/dam-api.md §12.20): whether a rename keeps `info.name` (the
            name sent at upload) or rewrites it too.
        updated_after: unknown (docs/dam-api.md §12.21): `updated_after` compares milliseconds,
            whole seconds (a change in the threshold's own second is missed), or nothing.
        sort: unknown (docs/dam-api.md §3.1): whether `sort`/`order` is honoured or listings always
            come in the default `filename:asc` order (stored name ascending).
        page_drift: unknown (docs/dam-api.md §12.7): listings come newest first whatever is asked,
            so adds and deletes while a client pages by offset repeat or skip items.
        listing_sha1: unknown (docs/dam-api.md §3.3): whether listed files carry `hash.sha1`
            (upload replies and file details always do).
        noop_conflict: unknown (docs/dam-api.md §12.22): a rename to the current name or a move
            into the current folder answers 409 `E801_ALREADY_EXIST`.
        same_asset_by: unknown (docs/dam-api.md §2.3, §12.5): whether the built-in "identical
            content, same name, same folder" skip compares the stored name (so under a
            renaming rule a re-sent upload is stored again, as a second asset) or the name
            sent (`info.name`, so the re-send is answered `SAME_ASSET_EXISTS_SKIP_UPLOAD`).
        denied_permissions: unknown (docs/dam-api.md §1.3): permissions the key lacks; requests
            needing one get 403 `PERMISSION_DENIED`.
        malice: a deliberately hostile DAM (see `syncd.emulator.malice`): echo the key in
            errors, endless or repeated listing pages, a gzip bomb, trickled upload replies,
            or wrong types in every answer; `off` by default.
    """

    naming: Naming = "keep"
    same_name: SameName = "override"
    duplicates: Duplicates = "accept"
    same_asset_status: int = 409
    size_as_int: bool = False
    folder_trailing_slash: bool = False
    rate_limit: float = 0.0
    rate_burst: float = 0.0
    retry_after_style: RetryAfterStyle = "seconds"
    rate_limit_scope: RateLimitScope = "project"
    error_rate: float = 0.0
    reset_before_commit_rate: float = 0.0
    reset_after_commit_rate: float = 0.0
    slow_ms: float = 0.0
    jitter_ms: float = 0.0
    max_upload_bytes: int = 0
    error_body_rate: float = 0.0
    seed: int | None = None
    q_match: QMatch = "stored"
    listing_lag_s: float = 0.0
    rename_info_name: RenameInfoName = "kept"
    updated_after: UpdatedAfterRule = "second"
    sort: SortRule = "ignored"
    page_drift: bool = False
    listing_sha1: bool = True
    noop_conflict: bool = True
    same_asset_by: SameAssetBy = "stored"
    denied_permissions: list[str] = field(default_factory=list)
    malice: Malice = "off"

    def __post_init__(self) -> None:
        # Validate through the same path as runtime updates, so a bad constructor argument
        # fails with the same message as a bad `/_emulator/options` request.
        self.update(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """Return the options as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Validate `changes` and apply them all, or none of them.

        Args:
            changes: option names (snake_case; dashes are accepted too) mapped to new values.

        Raises:
            ValueError: an unknown name or a value of the wrong type or range; nothing changed.
        """
        checked = {
            key.replace("-", "_"): _check(key.replace("-", "_"), value)
            for key, value in changes.items()
        }
        for key, value in checked.items():
            setattr(self, key, value)


def _check(key: str, value: Any) -> Any:
    """Return `value` converted for option `key`, or raise ValueError naming the key."""
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ValueError(f"{key} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        return value
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if key in _NUMBERS:
        return _number(key, value)
    if key in _INTEGERS:
        low, high, wanted = _INTEGERS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{key} must be {wanted}, got {value!r}")
        return value
    if key == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"seed must be an integer or null, got {value!r}")
        return value
    if key == "denied_permissions":
        return _permissions(value)
    raise ValueError(f"unknown option {key!r}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value!r}")
    if key in _RATES and value > 1:
        raise ValueError(f"{key} must be between 0 and 1, got {value!r}")
    return float(value)


def _permissions(value: Any) -> list[str]:
    """Return `value` as a list of permission names without repeats, or raise ValueError."""
    if isinstance(value, list | tuple):
        unknown = [name for name in value if name not in PERMISSIONS]
        if not unknown:
            return list(dict.fromkeys(value))
        raise ValueError(
            f"denied_permissions: unknown permission {unknown[0]!r}; docs/dam-api.md §1.3 names"
            f" {', '.join(PERMISSIONS)}"
        )
    raise ValueError(f"denied_permissions must be a list of permission names, got {value!r}")
