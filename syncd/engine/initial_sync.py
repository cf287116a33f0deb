"""One reconcile pass (`--initial-sync`): make the DAM mirror every configured folder,
through one DAM client and one pacer built from the config. The work for each folder
is `syncd.engine.folder.FolderRun`.

The DAM side costs a constant number of requests on a re-run: the folder's recursive
file count plus an `updated_after` listing since the last run. Only when those disagree
with the state (or on the first run, after failures, or with `--verify`) is the folder
listed in full.
"""

from __future__ import annotations

from typing import TextIO

import structlog

from syncd.config.schema import Config
from syncd.dam.client import DamClient
from syncd.dam.pacer import Backoff, Pacer
from syncd.engine.executor import Executor
from syncd.engine.folder import FolderRun, RunOptions
from syncd.engine.progress import Progress, Summary
from syncd.errors import ConfigError
from syncd.state.store import State

__all__ = ["FolderRun", "RunOptions", "check_access", "initial_sync", "make_dam", "make_pacer"]


async def initial_sync(
    config: Config, key: str, options: RunOptions, progress: Progress, out: TextIO
) -> Summary:
    """Reconcile every folder once.

    Raises:
        AuthError: the key is missing permissions or was rejected.
        ConfigError: the DAM does not know the project token.
    """
    summary = Summary()
    pacer = make_pacer(config)
    state = State.open(config.state.path, readonly=options.dry_run)
    try:
        async with make_dam(config, key, pacer) as dam:
            await check_access(dam, config)
            executor = Executor(dam, state, summary, progress, workers=config.dam.workers)
            for folder in config.folders:
                with structlog.contextvars.bound_contextvars(folder=folder.name):
                    run = FolderRun(folder, config, dam, state, options, summary)
                    await run.reconcile(executor, out)
    finally:
        progress.close()
        state.close()
    return summary


def make_pacer(config: Config) -> Pacer:
    """The one pacer of a process, from the [dam] settings."""
    dc = config.dam
    return Pacer(
        dc.workers,
        backoff=Backoff(
            base_s=dc.backoff_base_s, cap_s=dc.backoff_max_s, max_attempts=dc.max_attempts
        ),
        max_requests_per_second=dc.max_requests_per_second or None,
    )


def make_dam(config: Config, key: str, pacer: Pacer) -> DamClient:
    """The DAM client of a process, from the [dam] settings."""
    return DamClient(
        config.dam.base_url,
        config.dam.token,
        key,
        pacer,
        workers=config.dam.workers,
        timeout_s=config.dam.timeout_s,
        connect_timeout_s=config.dam.connect_timeout_s,
        ca_bundle=config.dam.ca_bundle,
        listing_lag_s=config.dam.listing_lag_s,
    )


async def check_access(dam: DamClient, config: Config) -> None:
    """Fail fast on a rejected key (`AuthError`), or on an unknown token or an unverifiable
    TLS certificate (`ConfigError`)."""
    try:
        await dam.check_access()
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: {exc}") from None
