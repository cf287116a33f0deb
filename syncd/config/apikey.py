"""Finding the API key: `$SYNCD_API_KEY`, a systemd credential, or the configured key
file; never the config file, and never shown in any message. Once a long-running syncd
has its key, `protect_key()` takes it out of the environment and makes the process
non-dumpable, so neither a child process, a core dump nor another user's look at
/proc/PID holds it."""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from syncd.config.schema import DamConfig
from syncd.errors import AuthError

__all__ = ["key_file_warning", "protect_key", "read_api_key"]

_PR_SET_DUMPABLE = 4
# `$SYNCD_API_KEY` as it was before `protect_key()` took it out of the environment: a
# reload reads it from here, since the variable is fixed for the process anyway.
_taken_from_env: str | None = None


def _read_key(path: Path | None, origin: str, value: str | None = None) -> str:
    """The key from `value` or from the file `path`; messages name `origin`, never the key."""
    if value is None and path is not None:
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthError(
                f"cannot read {origin} ({exc.strerror}); create it holding only the key, "
                "readable by syncd's user, or set $SYNCD_API_KEY"
            ) from None
        except UnicodeDecodeError:
            raise AuthError(f"{origin} is not UTF-8 text; it must hold only the key") from None
    if not (key := (value or "").strip()):
        raise AuthError(f"{origin} is empty; write the API key into it")
    if any(c.isspace() or not c.isprintable() for c in key):
        raise AuthError(f"{origin} has spaces or control characters; it must hold only the key")
    return key


def read_api_key(dam: DamConfig, env: Mapping[str, str] | None = None) -> str:
    """Find the DAM API key (the `X-Filerobot-Key` secret), stripped of whitespace.

    First of: `$SYNCD_API_KEY` if non-empty; `$CREDENTIALS_DIRECTORY/api-key` if that file
    exists (systemd `LoadCredential=api-key:...`); `dam.key_file`.

    Args:
        dam: the [dam] section, for `key_file`.
        env: the environment (`os.environ` when None).

    Raises:
        AuthError: no key is configured, or its file is missing, unreadable, empty or
            malformed. The message names the source and never holds the key.
    """
    env = os.environ if env is None else env
    from_env = env.get("SYNCD_API_KEY", "")
    if not from_env.strip() and env is os.environ and _taken_from_env is not None:
        from_env = _taken_from_env
    if from_env.strip():
        return _read_key(None, "$SYNCD_API_KEY", from_env)
    if (creds := env.get("CREDENTIALS_DIRECTORY")) and (Path(creds) / "api-key").exists():
        return _read_key(Path(creds) / "api-key", f"API key credential {creds}/api-key")
    if dam.key_file is None:
        raise AuthError(
            "no API key configured; set $SYNCD_API_KEY, or key_file under [dam] to a file "
            "holding only the key (chmod 600)"
        )
    return _read_key(dam.key_file, f"API key file {dam.key_file}")


def protect_key() -> None:
    """Take `$SYNCD_API_KEY` out of the environment (keeping it for reloads) and mark the
    process non-dumpable (`PR_SET_DUMPABLE` 0: no core dump, and /proc/PID/environ and
    /proc/PID/mem are root's only)."""
    global _taken_from_env
    if "SYNCD_API_KEY" not in os.environ:
        return _no_dumps()
    if sys.platform == "linux":
        _wipe_initial_environment("SYNCD_API_KEY")
    value = os.environ.pop("SYNCD_API_KEY")
    if value.strip():
        _taken_from_env = value
    _no_dumps()


def _no_dumps() -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _wipe_initial_environment(name: str) -> None:
    """Overwrite the value of `name` where the kernel put the environment at exec time:
    /proc/PID/environ reads that memory, and unsetenv() only unlinks the entry."""
    prefix = name.encode() + b"="
    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
    i = 0
    while (address := environ[i]) is not None:
        entry = ctypes.string_at(address)
        if entry.startswith(prefix):
            ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
        i += 1


def key_file_warning(path: Path) -> str | None:
    """A warning when the key file is open to group or others (mode & 0o077), else None.

    Args:
        path: the key file; one that cannot be stat'ed gives None (reading it will say why).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"API key file {path} is accessible by group or others (mode {mode:04o}); "
        f"restrict it with: chmod 600 {path}"
    )
