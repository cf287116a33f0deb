"""Where syncd looks for its config file and keeps its state database by default:
systemd's directories first, then the XDG ones, then the home directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SYSTEM_CONFIG_PATH", "default_config_path", "default_state_path"]

SYSTEM_CONFIG_PATH = Path("/etc/syncd/config.toml")


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file to use when none is given.

    `$SYNCD_CONFIG` if set, else `/etc/syncd/config.toml` if it exists, else
    `$XDG_CONFIG_HOME/syncd/config.toml` (if absolute), else `~/.config/syncd/config.toml`.

    Args:
        env: the environment (`os.environ` when None).
    """
    env = os.environ if env is None else env
    if env.get("SYNCD_CONFIG"):
        return Path(env["SYNCD_CONFIG"]).expanduser()
    if SYSTEM_CONFIG_PATH.exists():
        return SYSTEM_CONFIG_PATH
    xdg = env.get("XDG_CONFIG_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else _home(env) / ".config") / "syncd/config.toml"


def default_state_path(env: Mapping[str, str] | None = None) -> Path:
    """The state database when [state] path is not set.

    `$STATE_DIRECTORY/state.db` (its first entry; systemd `StateDirectory=`), else
    `$XDG_STATE_HOME/syncd/state.db` (if absolute), else `~/.local/state/syncd/state.db`.

    Args:
        env: the environment (`os.environ` when None).
    """
    env = os.environ if env is None else env
    if state_dir := env.get("STATE_DIRECTORY", "").split(":")[0]:
        return Path(state_dir) / "state.db"
    xdg = env.get("XDG_STATE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else _home(env) / ".local/state") / "syncd/state.db"
