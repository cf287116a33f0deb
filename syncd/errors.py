"""The syncd exception tree; every other module raises only these.

```
SyncdError
├── ConfigError            # exit 78 (EX_CONFIG); systemd must not restart-loop
├── StateError             # local state database unusable: fatal
└── DamError(path, status, code)
    ├── TransientDamError  # connect/timeout/payload, 5xx, 408, 200 + "status":"error" → retry
    │   ├── RateLimited(retry_after)   # 429 / 503
    │   └── DamTimeout     # no answer in time: fewer requests in flight
    └── PermanentDamError  # other 4xx → skip that file, log code and msg
        ├── NotFound       # 404: on delete the goal state is already reached
        ├── NameConflict   # 409 or a "same name" refusal: the name is taken in that folder
        └── AuthError      # 401, or 403 that rejects the key → exit 77 (EX_NOPERM)
```

Errors are translated into this tree only at the HTTP edge (`syncd.dam.client`), so the rest of
the code never sees aiohttp exceptions.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "DamError",
    "DamTimeout",
    "NameConflict",
    "NotFound",
    "PermanentDamError",
    "RateLimited",
    "StateError",
    "SyncdError",
    "TransientDamError",
    "most_telling",
]


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """The configuration file is unusable; the message names the file and key."""


class StateError(SyncdError):
    """The local state database cannot be opened or written."""


class DamError(SyncdError):
    """A DAM request failed.

    Args:
        message: what went wrong, in words.
        status: the HTTP status, when a response arrived.
        code: the DAM's error `code` from the body, when there was one.
        path: the local path (relative to its root) the request was for, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.path = path

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(f"code {self.code}")
        return " | ".join(parts)


class TransientDamError(DamError):
    """Worth retrying: network errors, timeouts, 5xx, 408, error bodies on a 2xx."""


class DamTimeout(TransientDamError):
    """No answer in time: the DAM (or the path to it) is overloaded, so the pacer lets
    fewer requests run at once."""


class RateLimited(TransientDamError):
    """The DAM asked us to slow down (429 or 503).

    Args:
        retry_after: seconds to wait, from the `Retry-After` header, when it was sent.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after

    @property
    def quota(self) -> bool:
        """A 429, or a 503 that says when to come back: a spent quota, as opposed to a bare
        503 from a node that is overloaded or failing."""
        return self.status == 429 or self.retry_after is not None


class PermanentDamError(DamError):
    """Retrying will not help: the request itself is wrong for this file."""


class NotFound(PermanentDamError):
    """The asset or folder does not exist (404)."""


class NameConflict(PermanentDamError):
    """The target name is already taken in that folder (409, or a same-name refusal)."""


class AuthError(PermanentDamError):
    """The API key is missing, rejected or lacks a permission; the run must stop."""


def most_telling(
    group: BaseExceptionGroup[BaseException], cancelled: type[BaseException]
) -> BaseException:
    """The error that stopped a task group, out of its (nested) exception group: a
    rejected key first (exit 77), then a bad config or state, then the first other error,
    so the exit code says what matters. Cancellations (`cancelled`) are only what the
    error caused; a group of nothing else is returned as it is."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for exc in g.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            elif not isinstance(exc, cancelled):
                leaves.append(exc)

    walk(group)
    for kind in (AuthError, ConfigError, StateError):
        if found := [e for e in leaves if isinstance(e, kind)]:
            return found[0]
    return leaves[0] if leaves else group
