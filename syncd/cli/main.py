"""The command line: argument parsing, logging setup, and the mapping of outcomes to
exit codes. `main(argv)` returns the code and never calls `sys.exit` itself.

Exit codes: 0 the DAM mirrors the folders; 1 some files could not be synced (the summary
lists them) or deletes were refused; 2 bad usage; 77 (EX_NOPERM) the API key is missing
or rejected; 78 (EX_CONFIG) the configuration is invalid; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sqlite3
import sys
from functools import partial
from pathlib import Path
from typing import TextIO

import anyio
import structlog

from syncd import __version__
from syncd.cli.dryrun import print_plan
from syncd.cli.progress import LogProgress, TtyProgress
from syncd.config.apikey import key_file_warning, protect_key, read_api_key
from syncd.config.paths import default_config_path
from syncd.config.schema import Config, load_config
from syncd.engine.initial_sync import RunOptions, initial_sync
from syncd.engine.progress import NullProgress, Progress, Summary
from syncd.errors import AuthError, ConfigError, DamError, StateError, most_telling
from syncd.redact import escape, redact, scrub
from syncd.service.logs import configure
from syncd.state.lock import StateLock

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOPERM",
    "EXIT_OK",
    "main",
    "run",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOPERM = os.EX_NOPERM  # 77
EXIT_CONFIG = os.EX_CONFIG  # 78
EXIT_INTERRUPTED = 130

log = structlog.get_logger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="syncd",
        description="Mirror local folders into a Scaleflex DAM (Filerobot) project.",
        epilog="Other commands: 'syncd status' shows what is in sync and what waits;"
        " 'syncd probe' finds out, in a scratch folder it removes, how the DAM project"
        " reads the API's undocumented parts and which permissions the key has;"
        " 'syncd demo' runs an end-to-end demo against the bundled emulator.",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="config file (default: $SYNCD_CONFIG, else /etc/syncd/config.toml,"
        " else ~/.config/syncd/config.toml)",
    )
    p.add_argument(
        "--initial-sync",
        action="store_true",
        help="reconcile every folder once so the DAM mirrors it, then exit"
        " (without it, syncd keeps running and syncs every change)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan (uploads, updates, deletes) only"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="list the DAM folders in full instead of trusting the state and the change feed",
    )
    p.add_argument(
        "--force-delete",
        action="store_true",
        help="allow a run that deletes more than the configured share of a folder",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="default: info",
    )
    p.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "console", "json"],
        help="auto: console on a terminal, JSON lines otherwise",
    )
    p.add_argument("--version", action="version", version=f"syncd {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run syncd with `argv` (default: `sys.argv[1:]`) and return the exit code."""
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["demo"]:
        from syncd.cli.demo import main as demo_main

        return demo_main(args_list[1:])
    if args_list[:1] == ["status"]:
        return status_main(args_list[1:])
    if args_list[:1] == ["probe"]:
        return probe_main(args_list[1:])
    args = _parser().parse_args(args_list)
    console = configure(args.log_level, args.log_format, cache=argv is None)
    path = args.config or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    try:
        key = read_api_key(config.dam)
    except AuthError as exc:
        return _fail(f"syncd: {exc}", EXIT_NOPERM)
    redact(key)
    if argv is None:  # the real process, not a test calling main() in-process
        protect_key()
    if config.dam.key_file is not None and (warning := key_file_warning(config.dam.key_file)):
        log.warning("key_file_permissions", warning=warning)
    if not args.initial_sync:
        if args.dry_run:
            return _fail("syncd: --dry-run needs --initial-sync", EXIT_USAGE)
        return run_daemon(config, key)
    options = RunOptions(
        dry_run=args.dry_run,
        verify=args.verify,
        force_delete=args.force_delete,
        show_plan=partial(print_plan, sys.stdout) if args.dry_run else None,
    )
    return run_initial_sync(config, key, options, console=console)


def status_main(argv: list[str]) -> int:
    """`syncd status`: each folder's files in sync, pending and parked, from the state
    database; safe while a daemon runs. Needs no API key and makes no DAM request."""
    from syncd.cli.status import collect, render

    p = argparse.ArgumentParser(
        prog="syncd status", description="Show what is in sync, pending and parked."
    )
    p.add_argument("--config", type=Path, help="config file (default: as for syncd)")
    p.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    args = p.parse_args(argv)
    try:
        config = load_config(args.config or default_config_path())
        report = collect(config)
    except ConfigError as exc:
        return _fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    except StateError as exc:
        return _fail(f"syncd: {exc}", EXIT_FAILED)
    # Stored DAM text was scrubbed when it was written; where the key is at hand (status
    # needs none), text an older syncd stored is masked too.
    with contextlib.suppress(AuthError):
        redact(read_api_key(config.dam))
    text = json.dumps(report.as_dict(), indent=2) if args.json else render(report)
    sys.stdout.write(scrub(text) + "\n")
    return EXIT_OK


def probe_main(argv: list[str]) -> int:
    """`syncd probe`: find out once how the DAM project behaves where the API is not
    documented, and which permissions the key has, in a scratch folder it removes.
    Exit 0 when every check ran, the key has every permission and nothing was left
    behind; 1 otherwise (the report says what, and names anything left behind); 77 the
    key is missing or rejected; 78 the config is invalid; 130 interrupted (the scratch
    folder is removed all the same)."""
    from syncd.probe.report import problems, render, to_json
    from syncd.probe.run import run_probe

    p = argparse.ArgumentParser(
        prog="syncd probe",
        description="Probe the DAM project's undocumented behaviour and the key's"
        " permissions, in a scratch folder that is removed afterwards.",
    )
    p.add_argument("--config", type=Path, help="config file (default: as for syncd)")
    p.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    args = p.parse_args(argv)
    configure("warning", "auto")
    try:
        config = load_config(args.config or default_config_path())
        key = read_api_key(config.dam)
        redact(key)
        found = anyio.run(partial(run_probe, config, key, signals=True))
    except ConfigError as exc:
        return _fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    except AuthError as exc:
        hint = "Check the API key (see README, 'The API key')."
        return _fail(f"syncd: {exc}. {hint}", EXIT_NOPERM)
    except DamError as exc:
        return _fail(f"syncd: the DAM could not be probed: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:  # before the probe started: nothing was written
        return _fail("syncd: interrupted", EXIT_INTERRUPTED)
    sys.stdout.write(scrub(to_json(found) if args.json else render(found)) + "\n")
    if found.interrupted:
        code = EXIT_INTERRUPTED
    elif found.key_rejected:
        code = EXIT_NOPERM
    else:
        code = EXIT_OK if found.ok else EXIT_FAILED
    return code if code == EXIT_OK else _fail(f"syncd: {problems(found)}", code)


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
        return _fail(
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
        inner = most_telling(exc, anyio.get_cancelled_exc_class())
        if isinstance(inner, BaseExceptionGroup):
            raise exc
        if isinstance(inner, KeyboardInterrupt):
            return _fail("syncd: interrupted", EXIT_INTERRUPTED)
        return _fatal(inner, config)
    if isinstance(exc, OSError):
        if exc.errno not in _DISK_ERRNOS:
            raise exc
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(
            f"syncd: cannot write{where}: {exc.strerror}; free space or fix the permissions"
            f" (the state is at {config.state.path}), then run again: nothing was lost",
            EXIT_FAILED,
        )
    if not isinstance(exc, _FATAL):
        raise exc
    if isinstance(exc, AuthError):
        hint = "Check the API key and its permissions (see README, 'API key')."
        return _fail(f"syncd: {exc}. {hint}", EXIT_NOPERM)
    if isinstance(exc, ConfigError):
        return _fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    if isinstance(exc, sqlite3.Error):
        return _fail(
            f"syncd: the state database {config.state.path} is unusable: {exc}", EXIT_FAILED
        )
    return _fail(f"syncd: {exc}", EXIT_FAILED)


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


def _fail(message: str, code: int) -> int:
    # Messages quote file names and DAM text: no key, no control characters.
    sys.stderr.write(escape(scrub(message)).rstrip() + "\n")
    return code


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
