"""Applying a configuration reload (SIGHUP) to a running daemon: re-read the config and
the API key, then, between batches, start added folders, stop removed ones, take new
folder settings, and swap the DAM client when [dam] or the key changed.

A config that does not load, or a key the DAM rejects, is refused with a log line and
the running configuration stays. What changed is decided by the pure `syncd.config.diff`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import structlog

from syncd.config.apikey import key_file_warning, read_api_key
from syncd.config.diff import ReloadPlan, plan_reload
from syncd.config.schema import Config, FolderConfig, load_config
from syncd.dam.client import DamClient
from syncd.dam.pacer import Pacer
from syncd.engine.initial_sync import check_access, make_dam, make_pacer
from syncd.errors import ConfigError, DamError, StateError
from syncd.service.logs import redact

if TYPE_CHECKING:
    from syncd.daemon.lifecycle import Daemon
    from syncd.daemon.watchers import Watched

__all__ = ["reload", "reread_config"]

log = structlog.get_logger("syncd.daemon.lifecycle")


def reread_config(config: Config) -> tuple[Config, str]:
    """The config file and the API key, read again (so a rotated key file is seen)."""
    new = load_config(config.source)
    key = read_api_key(new.dam)
    if new.dam.key_file is not None and (warning := key_file_warning(new.dam.key_file)):
        log.warning("key_file_permissions", warning=warning)
    return new, key


async def reload(daemon: Daemon) -> None:
    """Reload the daemon's config and key; `RELOADING=1` before, `READY=1` after, whether
    the new config was taken or refused (but not once the daemon is stopping)."""
    if daemon.stopping:
        return
    daemon.notifier.reloading()
    try:
        await _apply(daemon)
    # AuthError is a DamError; OSError: e.g. a new folder's watcher could not start.
    except (ConfigError, DamError, OSError, StateError) as exc:
        named = isinstance(exc, OSError | StateError)
        error = f"{type(exc).__name__}: {exc}" if named else str(exc)
        log.error("reload_rejected", error=error, kept=str(daemon.config.source))
    finally:
        if not daemon.stopping:
            daemon.notifier.ready(daemon.status())


async def _apply(daemon: Daemon) -> None:
    new, key = await anyio.to_thread.run_sync(daemon.reread, daemon.config)
    redact(key)
    plan = plan_reload(daemon.config, new)
    key_changed = key != daemon.key
    async with daemon.busy():  # no batch or reconcile is in flight while things change
        # Everything that can fail comes first; nothing is committed until it all worked.
        armed = await _arm(daemon, (*plan.rewatch, *plan.added))
        try:
            swap = (
                await _new_dam(daemon, new, key, plan) if plan.new_client or key_changed else None
            )
        except BaseException:
            _close(armed)
            raise
        if swap is not None:
            old_dam = daemon.dam
            daemon.install_dam(*swap)
            await old_dam.__aexit__(None, None, None)
            daemon.key = key
            log.info("dam_client_replaced", pacer_rebuilt=plan.new_pacer)
        old, daemon.config = daemon.config, new
        daemon.queue.settle_s = new.sync.settle_ms / 1000
        daemon.liveness.stall_s = daemon.stall_limit(new)
        _commit_folders(daemon, plan, armed)
        _move_metrics(daemon, old, new)
    log.info(
        "reload_done",
        added=len(plan.added),
        removed=len(plan.removed),
        changed=len(plan.changed),
        dam_changed=list(plan.dam_keys),
        key_changed=key_changed,
        sync_changed=old.sync != new.sync,
    )


async def _arm(daemon: Daemon, folders: Sequence[FolderConfig]) -> dict[str, tuple[int, Watched]]:
    """New watchers for these folders, by local path; all of them or none."""
    armed: dict[str, tuple[int, Watched]] = {}
    try:
        for folder in folders:
            armed[str(folder.local)] = await daemon.watchers.arm(folder)
    except BaseException:
        _close(armed)
        raise
    return armed


def _close(armed: dict[str, tuple[int, Watched]]) -> None:
    for _, handle in armed.values():
        handle.close()


async def _new_dam(
    daemon: Daemon, config: Config, key: str, plan: ReloadPlan
) -> tuple[DamClient, Pacer]:
    """A new HTTP client for new [dam] settings or a new key, entered and checked
    against the DAM; on any failure it is closed and the running one stays."""
    old_pacer = daemon.pacer
    assert old_pacer is not None
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


def _commit_folders(
    daemon: Daemon, plan: ReloadPlan, armed: dict[str, tuple[int, Watched]]
) -> None:
    ids = {
        (str(f.config.local), f.config.remote): fid for fid, f in daemon.watchers.folders.items()
    }
    for folder in plan.removed:
        fid = ids[(str(folder.local), folder.remote)]
        daemon.watchers.folders.pop(fid).close()
        dropped = daemon.queue.drop(fid)
        # Its assets stay on the DAM: leaving the config is not a local delete.
        log.info("folder_unwatched", folder=folder.name, queued_dropped=dropped)
    for folder in plan.changed:
        fid = ids[(str(folder.local), folder.remote)]
        if folder in plan.rewatch:  # the watcher filters with the excludes
            daemon.watchers.folders[fid].close()
            daemon.watchers.folders[fid] = armed[str(folder.local)][1]
        else:
            daemon.watchers.folders[fid].config = folder
        log.info("folder_settings_changed", folder=folder.name)
    for folder in plan.added:
        fid, handle = armed[str(folder.local)]
        daemon.watchers.folders[fid] = handle
        log.info("folder_watched", folder=folder.name, remote=folder.remote)
    daemon.metrics.folders.set(len(daemon.watchers.folders))


def _move_metrics(daemon: Daemon, old: Config, new: Config) -> None:
    if new.metrics.listen == old.metrics.listen:
        return
    daemon.metrics.close()
    if new.metrics.listen is not None:
        try:
            daemon.metrics.serve(*new.metrics.listen, source=new.source)
        except ConfigError as exc:  # the rest of the new config still applies
            log.error("metrics_unavailable", error=str(exc))
