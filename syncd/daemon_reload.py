"""Applying a configuration reload (SIGHUP) to a running daemon: re-read the config and
the API key, then, between batches, start added folders, stop removed ones, take new
folder settings, and swap the DAM client when [dam] or the key changed.

A config that does not load, or a key the DAM rejects, is refused with a log line and
the running configuration stays. What changed is decided by the pure `syncd.reload`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import structlog

from syncd.apikey import read_api_key
from syncd.config import Config, load_config
from syncd.errors import ConfigError, DamError
from syncd.logs import redact
from syncd.reconcile import check_access, make_pacer
from syncd.reload import ReloadPlan, plan_reload

if TYPE_CHECKING:
    from syncd.daemon import Daemon

__all__ = ["reload", "reread_config"]

log = structlog.get_logger("syncd.daemon")


def reread_config(config: Config) -> tuple[Config, str]:
    """The config file and the API key, read again (so a rotated key file is seen)."""
    new = load_config(config.source)
    return new, read_api_key(new.dam)


async def reload(daemon: Daemon) -> None:
    """Reload the daemon's config and key; `RELOADING=1` before, `READY=1` after, whether
    the new config was taken or refused."""
    daemon.notifier.reloading()
    try:
        await _apply(daemon)
    except (ConfigError, DamError) as exc:  # AuthError is a DamError
        log.error("reload_rejected", error=str(exc), kept=str(daemon.config.source))
    finally:
        daemon.notifier.ready(daemon.status())


async def _apply(daemon: Daemon) -> None:
    new, key = await anyio.to_thread.run_sync(daemon.reread, daemon.config)
    redact(key)
    plan = plan_reload(daemon.config, new)
    key_changed = key != daemon.key
    async with daemon.busy():  # no batch or reconcile is in flight while things change
        if plan.new_client or key_changed:
            await _swap_dam(daemon, new, key, new_pacer=plan.new_pacer)
        if new.metrics.listen != daemon.config.metrics.listen:
            daemon.metrics.close()
            if new.metrics.listen is not None:
                try:
                    daemon.metrics.serve(*new.metrics.listen, source=new.source)
                except ConfigError as exc:  # the rest of the new config still applies
                    log.error("metrics_unavailable", error=str(exc))
        old, daemon.config = daemon.config, new
        daemon.queue.settle_s = new.sync.settle_ms / 1000
        await _apply_folders(daemon, plan)
    log.info(
        "reload_done",
        added=len(plan.added),
        removed=len(plan.removed),
        changed=len(plan.changed),
        dam_changed=list(plan.dam_keys),
        key_changed=key_changed,
        sync_changed=old.sync != new.sync,
    )


async def _apply_folders(daemon: Daemon, plan: ReloadPlan) -> None:
    ids = {(str(f.config.local), f.config.remote): fid for fid, f in daemon.folders.items()}
    for folder in plan.removed:
        fid = ids[(str(folder.local), folder.remote)]
        daemon.folders.pop(fid).stop.set()
        dropped = daemon.queue.drop(fid)
        # Its assets stay on the DAM: leaving the config is not a local delete.
        log.info("folder_unwatched", folder=folder.name, queued_dropped=dropped)
    for folder in plan.changed:
        fid = ids[(str(folder.local), folder.remote)]
        if folder in plan.rewatch:  # the watcher filters with the excludes
            daemon.folders[fid].stop.set()
            await daemon.start_folder(folder)
        else:
            daemon.folders[fid].config = folder
        log.info("folder_settings_changed", folder=folder.name)
    for folder in plan.added:
        await daemon.start_folder(folder)
        log.info("folder_watched", folder=folder.name, remote=folder.remote)
    daemon.metrics.folders.set(len(daemon.folders))


async def _swap_dam(daemon: Daemon, config: Config, key: str, *, new_pacer: bool) -> None:
    """A new HTTP client for new [dam] settings or a new key. It must pass the access
    check before the old one is closed; otherwise the old one stays."""
    old_pacer = daemon.pacer
    assert old_pacer is not None
    pacer = make_pacer(config) if new_pacer else old_pacer
    if new_pacer:  # the metrics' counters are cumulative
        pacer.waits, pacer.rate_limited = old_pacer.waits, old_pacer.rate_limited
    old_dam, old_executor = daemon.dam, daemon.executor
    await daemon.open_dam(config, key, pacer)
    try:
        await check_access(daemon.dam, config)
    except BaseException:
        await daemon.dam.__aexit__(None, None, None)
        daemon.dam, daemon.executor, daemon.pacer = old_dam, old_executor, old_pacer
        old_pacer.heartbeat = daemon.liveness.beat
        raise
    await old_dam.__aexit__(None, None, None)
    daemon.key = key
    log.info("dam_client_replaced", pacer_rebuilt=new_pacer)
