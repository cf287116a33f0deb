"""`syncd sync` and `syncd run`: one reconcile of every folder, or the daemon, under the
state lock, with every error that stops a run turned into one line and an exit code
(never a traceback). Imported only when one of them runs: it pulls in the engine and,
through it, aiohttp."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import sys
from typing import TextIO

import anyio
import structlog

from syncd.cli.exits import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOPERM,
    EXIT_OK,
    fail,
)
from syncd.cli.progress import LogProgress, TtyProgress
from syncd.config.schema import Config
from syncd.engine.initial_sync import RunOptions, initial_sync
from syncd.engine.progress import NullProgress, Progress, Summary
from syncd.errors import AuthError, ConfigError, DamError, StateError, most_telling
from syncd.state.lock import StateLock

__all__ = ["run_daemon", "run_initial_sync"]

log = structlog.get_logger(__name__)


def run_initial_sync(config: Config, key: str, options: RunOptions, *, console: bool) -> int:
    """Run one reconcile, print or log the summary, and return the exit code."""
    progress: Progress
    if options.dry_run:
        progress = NullProgress()
    elif console:
        progress = TtyProgress()
    else:
        progress = LogProgress()
    try:
        # A dry run writes nothing, so it may look while a daemon runs.
        with contextlib.nullcontext() if options.dry_run else StateLock(config.state.path):
            summary = anyio.run(initial_sync, config, key, options, progress)
    except (*_FATAL, OSError, BaseExceptionGroup) as exc:
        return _fatal(exc, config)
    except KeyboardInterrupt:
        return fail(
            "syncd: interrupted; the next run continues where this one stopped", EXIT_INTERRUPTED
        )
    _report(summary, console, sys.stderr, dry_run=options.dry_run)
    return EXIT_OK if summary.ok else EXIT_FAILED


def run_daemon(config: Config, key: str) -> int:
    """Run the daemon until SIGTERM/SIGINT and return the exit code."""
    from syncd.daemon.lifecycle import Daemon

    daemon = Daemon(config, key)
    try:
        with StateLock(config.state.path):
            anyio.run(daemon.run)
    except (*_FATAL, OSError, BaseExceptionGroup) as exc:
        return _fatal(exc, config)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if daemon.forced else EXIT_OK


_FATAL = (AuthError, ConfigError, StateError, DamError, sqlite3.Error)


# A local write that failed: a full disk, a read-only or vanished state directory.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES})


def _fatal(exc: BaseException, config: Config) -> int:
    """The message and exit code for an error that stopped a run: one line, never a
    traceback. A task group's ExceptionGroup is reported by the error inside it."""
    if isinstance(exc, BaseExceptionGroup):
        import asyncio  # anyio.run's backend; its loop has ended, so anyio cannot say

        inner = most_telling(exc, asyncio.CancelledError)
        if isinstance(inner, BaseExceptionGroup):
            raise exc
        if isinstance(inner, KeyboardInterrupt):
            return fail("syncd: interrupted", EXIT_INTERRUPTED)
        return _fatal(inner, config)
    if isinstance(exc, OSError):
        if exc.errno not in _DISK_ERRNOS:
            raise exc
        where = f" ({exc.filename})" if exc.filename else ""
        return fail(
            f"syncd: cannot write{where}: {exc.strerror}; free space or fix the permissions"
            f" (the state is at {config.state.path}), then run again: nothing was lost",
            EXIT_FAILED,
        )
    if not isinstance(exc, _FATAL):
        raise exc
    if isinstance(exc, AuthError):
        hint = "Check the API key and its permissions (see README, 'API key')."
        return fail(f"syncd: {exc}. {hint}", EXIT_NOPERM)
    if isinstance(exc, ConfigError):
        return fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    if isinstance(exc, sqlite3.Error):
        return fail(
            f"syncd: the state database {config.state.path} is unusable: {exc}", EXIT_FAILED
        )
    return fail(f"syncd: {exc}", EXIT_FAILED)


def _report(summary: Summary, console: bool, out: TextIO, *, dry_run: bool) -> None:
    if console:
        text = summary.render(counts=not dry_run)
        if text:
            out.write(text + "\n")
        return
    for s in summary.failed:
        log.error("file_failed", path=s.path, reason=s.reason)
    for r in summary.refused:
        log.error("sync_refused", reason=r)
    log.info("sync_summary", dry_run=dry_run, **summary.as_dict())
