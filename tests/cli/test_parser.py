"""Tests of syncd.cli.parser and the dispatch in syncd.cli.main: subcommands, global
options before or after them, the old flags as aliases, `syncd help`, and a start-up
that imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from syncd import __version__
from syncd.cli.main import main
from syncd.cli.parser import COMMANDS, TOPICS, build_parser

pytestmark = pytest.mark.unit

HEAVY = ("aiohttp", "yarl", "multidict", "tqdm", "prometheus_client", "watchfiles", "anyio")


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "c.toml", "--log-level", "debug", "status"],
        ["status", "--config", "c.toml", "--log-level", "debug"],
        ["--config", "other.toml", "status", "--config", "c.toml", "--log-level", "debug"],
    ],
)
def test_global_options_work_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert args.command == "status"
    assert args.config == Path("c.toml")
    assert args.log_level == "debug"
    assert args.log_format == "auto"


def test_a_global_option_before_the_command_is_not_reset_by_its_default():
    args = build_parser().parse_args(["--log-format", "json", "sync", "--dry-run"])
    assert (args.command, args.log_format, args.dry_run) == ("sync", "json", True)
    args = build_parser().parse_args(["--dry-run", "sync"])
    assert args.dry_run is True


def test_bare_syncd_is_run_and_the_old_flag_is_sync():
    bare = build_parser().parse_args(["--config", "c.toml"])
    assert bare.command is None
    assert bare.initial_sync is False
    old = build_parser().parse_args(["--config", "c.toml", "--initial-sync", "--verify"])
    assert old.command is None
    assert old.initial_sync
    assert old.verify


def test_sync_options_outside_a_sync_exit_2(capsys):
    assert main(["--dry-run"]) == 2
    assert main(["--verify", "status"]) == 2
    err = capsys.readouterr().err
    assert "syncd sync --dry-run" in err
    with pytest.raises(SystemExit) as exited:
        main(["run", "--dry-run"])
    assert exited.value.code == 2


def test_help_covers_every_command_and_topic(capsys):
    assert main(["help"]) == 0
    overview = capsys.readouterr().out
    for name in COMMANDS:
        assert name in overview
    for topic in TOPICS:
        assert main(["help", topic]) == 0
        assert TOPICS[topic] in capsys.readouterr().out
    assert main(["help", "sync"]) == 0
    assert "--force-delete" in capsys.readouterr().out
    assert main(["help", "exit-codes"]) == 0
    assert "78" in capsys.readouterr().out


def _in_fresh_interpreter(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_the_command_line_imports_nothing_heavy_at_load():
    loaded = json.loads(
        _in_fresh_interpreter(
            "import json, sys, syncd.cli.main, syncd.cli.parser\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
        )
    )
    assert loaded == []


def test_version_and_status_run_without_aiohttp(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[dam]\ntoken = "t"\n[state]\npath = "{tmp_path / "s.db"}"\n'
        f'[[folders]]\nlocal = "{tmp_path}"\nremote = "/r"\n'
    )
    out = _in_fresh_interpreter(
        "import contextlib, io, json, sys\n"
        "from syncd.cli.main import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    with contextlib.suppress(SystemExit):\n"
        "        main(['--version'])\n"
        f"    code = main(['status', '--config', {str(cfg)!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'tqdm',"
        " 'prometheus_client', 'watchfiles'))\n"
        "print(json.dumps({'code': code, 'out': buf.getvalue(), 'heavy': heavy}))"
    )
    result = json.loads(out)
    assert result["code"] == 0
    assert f"syncd {__version__}" in result["out"]
    assert "in sync:        0" in result["out"]
    assert result["heavy"] == []
