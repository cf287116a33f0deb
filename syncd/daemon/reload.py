"""Preparing a configuration reload (SIGHUP) for a running daemon: re-read the config
and the API key, arm watchers for added or re-filtered folders, and build and check a
new DAM client when [dam] or the key changed. Everything that can fail happens here,
before anything is changed; `Daemon.commit()` then applies the prepared reload between
batches, and `PreparedReload.discard()` undoes a preparation that is not taken.

A config that does not load, or a key the DAM rejects, is refused with a log line and
the running configuration stays. What changed is decided by the pure `syncd.config.diff`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from syncd.config.apikey import key_file_warning, read_api_key
from syncd.config.diff import ReloadPlan, plan_reload
from syncd.config.schema import Config, FolderConfig, load_config
from syncd.daemon.queue import SettleQueue
from syncd.daemon.watchers import Watched, Watchers
from syncd.dam.client import DamClient
from syncd.dam.connect import check_access, make_dam, make_pacer
from syncd.dam.pacer import Pacer

__all__ = ["PreparedReload", "prepare", "reread_config"]

log = structlog.get_logger(__name__)


def reread_config(config: Config) -> tuple[Config, str]:
    """The config file and the API key, read again (so a rotated key file is seen)."""
    new = load_config(config.source)
    key = read_api_key(new.dam)
    if new.dam.key_file is not None and (warning := key_file_warning(new.dam.key_file)):
        log.warning("key_file_permissions", warning=warning)
    return new, key


@dataclass
class PreparedReload:
    """A new configuration with everything it needs already built and checked."""

    config: Config
    key: str
    plan: ReloadPlan
    key_changed: bool
    # New watchers by local path, with their folder ids.
    armed: dict[str, tuple[int, Watched]] = field(default_factory=dict)
    # A new entered and checked DAM client with its pacer, when [dam] or the key changed.
    swap: tuple[DamClient, Pacer] | None = None

    async def discard(self) -> None:
        """Close what the preparation built; the running configuration stays."""
        _close(self.armed)
        if self.swap is not None:
            await self.swap[0].__aexit__(None, None, None)

    def apply_folders(self, watchers: Watchers, queue: SettleQueue) -> None:
        """Stop removed folders, take new settings, start added ones (cannot fail)."""
        plan, armed = self.plan, self.armed
        ids = {(str(f.config.local), f.config.remote): fid for fid, f in watchers.folders.items()}
        for folder in plan.removed:
            fid = ids[(str(folder.local), folder.remote)]
            watchers.folders.pop(fid).close()
            dropped = queue.drop(fid)
            # Its assets stay on the DAM: leaving the config is not a local delete.
            log.info("folder_unwatched", folder=folder.name, queued_dropped=dropped)
        for folder in plan.changed:
            fid = ids[(str(folder.local), folder.remote)]
            if folder in plan.rewatch:  # the watcher filters with the excludes
                watchers.folders[fid].close()
                watchers.folders[fid] = armed[str(folder.local)][1]
            else:
                watchers.folders[fid].config = folder
            log.info("folder_settings_changed", folder=folder.name)
        for folder in plan.added:
            fid, handle = armed[str(folder.local)]
            watchers.folders[fid] = handle
            log.info("folder_watched", folder=folder.name, remote=folder.remote)


async def prepare(
    running: Config, running_key: str, new: Config, key: str, watchers: Watchers, pacer: Pacer
) -> PreparedReload:
    """Build and check what `new` needs, all of it or none: on any failure what was
    built is closed and the error raised (`ConfigError`, `DamError`, `OSError`)."""
    plan = plan_reload(running, new)
    ready = PreparedReload(new, key, plan, key_changed=key != running_key)
    try:
        ready.armed = await _arm(watchers, (*plan.rewatch, *plan.added))
        if plan.new_client or ready.key_changed:
            ready.swap = await _new_dam(new, key, plan, pacer)
    except BaseException:
        await ready.discard()
        raise
    return ready


async def _arm(
    watchers: Watchers, folders: Sequence[FolderConfig]
) -> dict[str, tuple[int, Watched]]:
    """New watchers for these folders, by local path; all of them or none."""
    armed: dict[str, tuple[int, Watched]] = {}
    try:
        for folder in folders:
            armed[str(folder.local)] = await watchers.arm(folder)
    except BaseException:
        _close(armed)
        raise
    return armed


def _close(armed: dict[str, tuple[int, Watched]]) -> None:
    for _, handle in armed.values():
        handle.close()
    armed.clear()


async def _new_dam(
    config: Config, key: str, plan: ReloadPlan, old_pacer: Pacer
) -> tuple[DamClient, Pacer]:
    """A new HTTP client for new [dam] settings or a new key, entered and checked
    against the DAM; on any failure it is closed and the running one stays."""
    pacer = make_pacer(config) if plan.new_pacer else old_pacer
    if plan.new_pacer:  # the metrics' counters are cumulative
        pacer.waits, pacer.rate_limited = old_pacer.waits, old_pacer.rate_limited
    dam = await make_dam(config, key, pacer).__aenter__()
    try:
        await check_access(dam, config)
    except BaseException:
        await dam.__aexit__(None, None, None)
        raise
    return dam, pacer
