"""The command line's entry point: parse, pick the subcommand, set up logging, load the
config and the key where the command needs them, and map the outcome to an exit code
(`syncd help exit-codes`). `main(argv)` returns the code and never calls `sys.exit`.

Only the parser and the error tree are imported at start-up; each command imports
what it needs when it runs, so `syncd --version`, `--help` and `syncd status` do not
pay for aiohttp, the engine or the progress bar.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

from syncd.cli.exits import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOPERM,
    EXIT_OK,
    EXIT_USAGE,
    fail,
)
from syncd.cli.parser import COMMANDS, DEFAULT_LOG_LEVEL, TOPICS, build_parser, subparsers
from syncd.errors import AuthError, ConfigError, DamError, StateError

if TYPE_CHECKING:
    from syncd.config.schema import Config

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOPERM",
    "EXIT_OK",
    "main",
    "run",
]


def main(argv: list[str] | None = None) -> int:
    """Run syncd with `argv` (default: `sys.argv[1:]`) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command or ("sync" if args.initial_sync else "run")
    if command != "sync" and (args.dry_run or args.verify or args.force_delete):
        return fail(
            "syncd: --dry-run, --verify and --force-delete belong to a one-off run:"
            " use 'syncd sync --dry-run' (or add --initial-sync)",
            EXIT_USAGE,
        )
    if command == "help":
        return _help(parser, args.topic)
    if command == "completion":
        from syncd.cli.completion import script

        sys.stdout.write(script(parser, args.shell))
        return EXIT_OK
    if command == "status":
        return _status(args)
    quiet = command in ("probe", "demo")  # their output is the report, not the log
    level = args.log_level or ("warning" if quiet else DEFAULT_LOG_LEVEL)
    from syncd.service.logs import configure

    console = configure(level, args.log_format, cache=argv is None)
    if command == "demo":
        from syncd.cli.demo import run_demo

        return run_demo(args.files, args.workdir, console)
    loaded = _config_and_key(args, protect=argv is None)
    if isinstance(loaded, int):
        return loaded
    config, key = loaded
    if command == "probe":
        return _probe(config, key, as_json=args.json)
    from syncd.cli.sync import run_daemon, run_initial_sync

    if command == "run":
        return run_daemon(config, key)
    from functools import partial

    from syncd.cli.dryrun import print_plan
    from syncd.engine.folder import RunOptions

    options = RunOptions(
        dry_run=args.dry_run,
        verify=args.verify,
        force_delete=args.force_delete,
        show_plan=partial(print_plan, sys.stdout) if args.dry_run else None,
    )
    return run_initial_sync(config, key, options, console=console)


def _config_and_key(args: argparse.Namespace, *, protect: bool) -> tuple[Config, str] | int:
    """The config and the API key, or the exit code of why they cannot be had."""
    from syncd.config.apikey import key_file_warning, protect_key, read_api_key
    from syncd.config.paths import default_config_path
    from syncd.config.schema import load_config
    from syncd.redact import redact

    try:
        config = load_config(args.config or default_config_path())
    except ConfigError as exc:
        return fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    try:
        key = read_api_key(config.dam)
    except AuthError as exc:
        return fail(f"syncd: {exc}", EXIT_NOPERM)
    redact(key)
    if protect:  # the real process, not a test calling main() in-process
        protect_key()
    if config.dam.key_file is not None and (warning := key_file_warning(config.dam.key_file)):
        import structlog

        structlog.get_logger(__name__).warning("key_file_permissions", warning=warning)
    return config, key


def _status(args: argparse.Namespace) -> int:
    """`syncd status`: each folder's files in sync, pending, parked and refused, from the
    state database; safe while a daemon runs. Needs no API key, makes no DAM request."""
    import json

    from syncd.cli.status import collect, render
    from syncd.config.apikey import read_api_key
    from syncd.config.paths import default_config_path
    from syncd.config.schema import load_config
    from syncd.redact import redact, scrub

    try:
        config = load_config(args.config or default_config_path())
        report = collect(config)
    except ConfigError as exc:
        return fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    except StateError as exc:
        return fail(f"syncd: {exc}", EXIT_FAILED)
    # Stored DAM text was scrubbed when it was written; where the key is at hand (status
    # needs none), text an older syncd stored is masked too.
    with contextlib.suppress(AuthError):
        redact(read_api_key(config.dam))
    text = json.dumps(report.as_dict(), indent=2) if args.json else render(report)
    sys.stdout.write(scrub(text) + "\n")
    return EXIT_OK


def _probe(config: Config, key: str, *, as_json: bool) -> int:
    """`syncd probe`: find out once how the DAM project behaves where the API is not
    documented, and which permissions the key has, in a scratch folder it removes.
    Exit 0 when every check ran, the key has every permission and nothing was left
    behind; 1 otherwise (the report says what, and names anything left behind); 77 the
    key is missing or rejected; 78 the config is invalid; 130 interrupted (the scratch
    folder is removed all the same)."""
    from functools import partial

    import anyio

    from syncd.probe.report import problems, render, to_json
    from syncd.probe.run import run_probe
    from syncd.redact import scrub

    try:
        found = anyio.run(partial(run_probe, config, key, signals=True))
    except ConfigError as exc:
        return fail(f"syncd: configuration error: {exc}", EXIT_CONFIG)
    except AuthError as exc:
        hint = "Check the API key (see README, 'The API key')."
        return fail(f"syncd: {exc}. {hint}", EXIT_NOPERM)
    except DamError as exc:
        return fail(f"syncd: the DAM could not be probed: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:  # before the probe started: nothing was written
        return fail("syncd: interrupted", EXIT_INTERRUPTED)
    sys.stdout.write(scrub(to_json(found) if as_json else render(found)) + "\n")
    if found.interrupted:
        code = EXIT_INTERRUPTED
    elif found.key_rejected:
        code = EXIT_NOPERM
    else:
        code = EXIT_OK if found.ok else EXIT_FAILED
    return code if code == EXIT_OK else fail(f"syncd: {problems(found)}", code)


def _help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    """`syncd help [TOPIC]`: the overview, a command's help, or a topic."""
    if topic is None:
        parser.print_help()
    elif topic in COMMANDS:
        subparsers(parser)[topic].print_help()
    else:
        sys.stdout.write(f"syncd help {topic}\n\n{TOPICS[topic]}\n")
    return EXIT_OK


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
