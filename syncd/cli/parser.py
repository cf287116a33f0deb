"""The command line's grammar: the subcommands, their options and the global options,
which work before or after the subcommand (`syncd --config F status` and
`syncd status --config F` alike). Shell completion and `syncd help` are generated from
this one parser, so they cannot drift from it. Imports nothing heavy: `syncd --version`
and `--help` are answered from here alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from syncd import __version__

__all__ = ["COMMANDS", "DEFAULT_LOG_LEVEL", "TOPICS", "build_parser", "subparsers"]

DEFAULT_LOG_LEVEL = "info"

COMMANDS = {
    "run": "watch the folders and sync every change until stopped (the default)",
    "sync": "make the DAM mirror the folders once, then exit",
    "status": "show what is in sync, what waits, and what needs you",
    "probe": "find out how the DAM project reads the API's unknowns, and check the key",
    "demo": "an end-to-end demo against the bundled DAM emulator",
    "completion": "print a shell completion script (bash or zsh)",
    "help": "help on a command or a topic",
}

TOPICS = {
    "exit-codes": """\
0    the DAM mirrors the folders (or: the command did what it was asked)
1    some files could not be synced, deletes were refused, or the state is unusable;
     the summary or `syncd status` says which
2    bad usage
77   the API key is missing or the DAM rejected it (systemd does not restart)
78   the configuration is invalid (systemd does not restart)
130  interrupted; the next run continues where this one stopped""",
    "signals": """\
SIGTERM, SIGINT  stop: the watchers stop, the batch in flight gets [sync] shutdown_grace_s,
                 what is left stays in the journal for the next start; a second SIGINT
                 exits at once
SIGHUP           reload the config and the API key between batches, then reconcile; a
                 config that does not load, or a key the DAM rejects, is refused and the
                 running one stays""",
    "environment": """\
SYNCD_CONFIG     the config file when --config is not given (then /etc/syncd/config.toml,
                 then ~/.config/syncd/config.toml)
SYNCD_API_KEY    the API key, when [dam] key_file is not set; wiped from the process
                 environment once read
NOTIFY_SOCKET    set by systemd (Type=notify): readiness, status line and watchdog
CREDENTIALS_DIRECTORY  set by systemd's LoadCredential=; [dam] key_file may name
                 api-key in it""",
}


def _globals(*, under_command: bool) -> argparse.ArgumentParser:
    """The options every command takes. Under a subcommand their defaults are
    SUPPRESS, so a value given before the subcommand is not overwritten by a default."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if under_command else value

    g = argparse.ArgumentParser(add_help=False)
    g.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=default(None),
        help="config file (default: $SYNCD_CONFIG, else /etc/syncd/config.toml,"
        " else ~/.config/syncd/config.toml)",
    )
    g.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default(None),
        help=f"default: {DEFAULT_LOG_LEVEL} ('warning' for probe and demo)",
    )
    g.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        default=default("auto"),
        help="auto: console on a terminal, JSON lines otherwise",
    )
    return g


def _sync_options(p: argparse.ArgumentParser, *, under_command: bool) -> None:
    suppress: dict[str, object] = {"default": argparse.SUPPRESS} if under_command else {}
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (uploads, updates, deletes, moves) and change nothing",
        **suppress,  # type: ignore[arg-type]
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="list the DAM folders in full instead of trusting the state and the change feed",
        **suppress,  # type: ignore[arg-type]
    )
    p.add_argument(
        "--force-delete",
        action="store_true",
        help="carry out deletes a run refused (more than [sync] max_delete_percent of a"
        " folder, as after an unmounted disk); check `syncd status` first",
        **suppress,  # type: ignore[arg-type]
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole grammar; `args.command` is None for a bare `syncd`."""
    p = argparse.ArgumentParser(
        prog="syncd",
        description="Mirror local folders into a Scaleflex DAM (Filerobot) project.",
        epilog="A bare 'syncd' is 'syncd run'; 'syncd --initial-sync' is 'syncd sync'."
        " 'syncd help TOPIC' explains: " + ", ".join(TOPICS) + ".",
        parents=[_globals(under_command=False)],
    )
    p.add_argument("--version", action="version", version=f"syncd {__version__}")
    p.add_argument(
        "--initial-sync",
        action="store_true",
        help="the same as 'syncd sync' (kept for scripts and units that use it)",
    )
    _sync_options(p, under_command=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    g = _globals(under_command=True)

    def command(name: str, description: str = "") -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=COMMANDS[name], description=description or COMMANDS[name], parents=[g]
        )

    command("run", "Watch the folders and keep the DAM in step until SIGTERM or SIGINT.")
    _sync_options(
        command("sync", "Reconcile every folder once so the DAM mirrors it, then exit."),
        under_command=True,
    )
    for name in ("status", "probe"):
        command(name).add_argument(
            "--json", action="store_true", help="one JSON document, for scripts"
        )
    demo = command(
        "demo",
        "Sync a generated sample folder into the bundled emulator on loopback, change it,"
        " sync again, and check the mirror at each step.",
    )
    demo.add_argument("--files", type=_positive, default=400, help="sample files (default 400)")
    demo.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep the sample folder, config and state here (default: a temporary folder)",
    )
    completion = command(
        "completion",
        "Print a completion script. bash: syncd completion bash >"
        " ~/.local/share/bash-completion/completions/syncd; zsh: syncd completion zsh >"
        " ~/.zfunc/_syncd (with ~/.zfunc in $fpath).",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    command("help").add_argument(
        "topic",
        nargs="?",
        choices=[*COMMANDS, *TOPICS],
        metavar="TOPIC",
        help="a command or: " + ", ".join(TOPICS),
    )
    return p


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return n


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices: dict[str, argparse.ArgumentParser] = action.choices
            return choices
    return {}
