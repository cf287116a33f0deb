"""Finding the API key: `$SYNCD_API_KEY`, a systemd credential, or the configured key
file; never the config file, and never shown in any message."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from syncd.config import DamConfig
from syncd.errors import AuthError

__all__ = ["key_file_warning", "read_api_key"]


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
    if env.get("SYNCD_API_KEY", "").strip():
        return _read_key(None, "$SYNCD_API_KEY", env["SYNCD_API_KEY"])
    if (creds := env.get("CREDENTIALS_DIRECTORY")) and (Path(creds) / "api-key").exists():
        return _read_key(Path(creds) / "api-key", f"API key credential {creds}/api-key")
    if dam.key_file is None:
        raise AuthError(
            "no API key configured; set $SYNCD_API_KEY, or key_file under [dam] to a file "
            "holding only the key (chmod 600)"
        )
    return _read_key(dam.key_file, f"API key file {dam.key_file}")


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
