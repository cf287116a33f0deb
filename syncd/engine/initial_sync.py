"""One reconcile pass (`--initial-sync`): make the DAM mirror every configured folder,
through one DAM client and one pacer built from the config (`syncd.dam.connect`). The work for each folder
is `syncd.engine.folder.FolderRun`.

The DAM side costs a constant number of requests on a re-run: the folder's recursive
file count plus an `updated_after` listing since the last run. Only when those disagree
with the state (or on the first run, after failures, or with `--verify`) is the folder
listed in full.
"""

from __future__ import annotations

import structlog

from syncd.config.schema import Config
from syncd.dam.connect import check_access, make_dam, make_pacer
from syncd.engine.executor import Executor
from syncd.engine.folder import FolderRun, RunOptions
from syncd.engine.progress import Progress, Summary
from syncd.state.store import State

__all__ = ["FolderRun", "RunOptions", "initial_sync"]


async def initial_sync(
    config: Config, key: str, options: RunOptions, progress: Progress
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
                    await run.reconcile(executor)
    finally:
        progress.close()
        state.close()
    return summary
