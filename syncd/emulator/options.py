"""Runtime-tunable settings of the DAM emulator: project policies, response shape options and
fault injection rates, with the validation shared by the command line and `/_emulator/options`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = [
    "Duplicates",
    "Naming",
    "Options",
    "RetryAfterStyle",
    "SameName",
]

Naming = Literal["keep", "suffix", "uuid"]
SameName = Literal["override", "version", "refuse"]
Duplicates = Literal["accept", "refuse"]
RetryAfterStyle = Literal["seconds", "date", "none"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "naming": get_args(Naming),
    "same_name": get_args(SameName),
    "duplicates": get_args(Duplicates),
    "retry_after_style": get_args(RetryAfterStyle),
}
_RATES = ("error_rate", "reset_before_commit_rate", "reset_after_commit_rate", "error_body_rate")
_BOOLS = ("size_as_int", "folder_trailing_slash")


@dataclass(slots=True)
class Options:
    """Everything about the emulator's behaviour that may change while it runs.

    The instance is shared by the store and the request handlers and is read on every request,
    so assigning an attribute (or calling `update`) takes effect immediately.

    Attributes:
        naming: the project's file naming rule (dam-api.md §2.3): keep the original name, add
            a random 8-character suffix, or use a random hex name.
        same_name: what an upload does when the folder already holds a file of that name with
            different content.
        duplicates: whether identical content elsewhere in the project is refused.
        same_asset_status: HTTP status of the `SAME_ASSET_EXISTS_SKIP_UPLOAD` and
            `ERROR_SHA1_CONFLICT` replies; the real status is undocumented (dam-api.md §12.5).
        size_as_int: send `size` as a plain byte count (legacy shape) instead of an object.
        folder_trailing_slash: send a file's `folder.name` as `/a/b/` instead of `/a/b`.
        rate_limit: token-bucket rate in requests per second; 0 turns it off.
        retry_after_style: how a 429 states when to come back.
        error_rate: chance of a random 500/502/503 reply.
        reset_before_commit_rate: chance an upload's connection drops before it is stored.
        reset_after_commit_rate: chance an upload's connection drops after it is stored.
        slow_ms: delay added to every API request.
        max_upload_bytes: uploads larger than this are refused with 413
            `ERR_FILE_TOO_LARGE` (the real POST limit is undocumented, dam-api.md §12.1);
            0 means no limit.
        error_body_rate: chance of an HTTP 200 whose body says `"status":"error"`.
        seed: seed of the emulator's random generator; None seeds from the OS.
    """

    naming: Naming = "keep"
    same_name: SameName = "override"
    duplicates: Duplicates = "accept"
    same_asset_status: int = 409
    size_as_int: bool = False
    folder_trailing_slash: bool = False
    rate_limit: float = 0.0
    retry_after_style: RetryAfterStyle = "seconds"
    error_rate: float = 0.0
    reset_before_commit_rate: float = 0.0
    reset_after_commit_rate: float = 0.0
    slow_ms: float = 0.0
    max_upload_bytes: int = 0
    error_body_rate: float = 0.0
    seed: int | None = None

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
    if key == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"seed must be an integer or null, got {value!r}")
        return value
    if key == "max_upload_bytes":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"max_upload_bytes must be an integer >= 0, got {value!r}")
        return value
    if key == "same_asset_status":
        if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
            raise ValueError(f"same_asset_status must be an HTTP status 200-599, got {value!r}")
        return value
    if key in (*_RATES, "rate_limit", "slow_ms"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
        if key in _RATES and value > 1:
            raise ValueError(f"{key} must be between 0 and 1, got {value!r}")
        return float(value)
    raise ValueError(f"unknown option {key!r}")
