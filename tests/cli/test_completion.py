"""Tests of syncd.cli.completion: the bash script, run by a real bash, completes what the
parser accepts; the zsh script parses and names every command and option."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from syncd.cli.completion import script
from syncd.cli.parser import COMMANDS, TOPICS, build_parser, subparsers

pytestmark = pytest.mark.unit


def complete(line: str, cwd: str | None = None) -> list[str]:
    """What bash offers for the last word of `line` (a trailing space: a new word)."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    code = script(build_parser(), "bash") + (
        "\nCOMP_WORDS=({words}); COMP_CWORD={cword}; _syncd; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    ).format(words=" ".join(f"'{w}'" for w in words), cword=len(words) - 1)
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=cwd,
    )
    return [w for w in done.stdout.splitlines() if w]


def test_bash_offers_the_commands_then_each_commands_options():
    assert set(complete("syncd ")) == set(COMMANDS)
    assert complete("syncd st") == ["status"]
    assert set(complete("syncd sync --")) == {
        "--help",
        "--config",
        "--log-level",
        "--log-format",
        "--dry-run",
        "--verify",
        "--force-delete",
    }
    assert "--json" in complete("syncd status --")
    assert "--dry-run" not in complete("syncd run --")


def test_bash_skips_option_values_when_it_looks_for_the_command():
    # "run" here is the config file's name, not the command.
    assert "--json" in complete("syncd --config run status --")
    assert set(complete("syncd --config c.toml ")) == set(COMMANDS)


def test_bash_completes_choices_files_and_positional_arguments(tmp_path):
    assert complete("syncd --log-level w") == ["warning"]
    assert complete("syncd status --log-format j") == ["json"]
    assert set(complete("syncd completion ")) == {"bash", "zsh"}
    assert set(complete("syncd help ")) == {*COMMANDS, *TOPICS}
    (tmp_path / "site.toml").write_text("")
    (tmp_path / "dir").mkdir()
    assert complete("syncd --config si", cwd=str(tmp_path)) == ["site.toml"]
    assert complete("syncd demo --workdir ", cwd=str(tmp_path)) == ["dir"]


def test_every_option_of_the_parser_is_in_both_scripts():
    parser = build_parser()
    flags = {
        f
        for p in [parser, *subparsers(parser).values()]
        for a in p._actions
        for f in a.option_strings
        if f.startswith("--")
    }
    for shell in ("bash", "zsh"):
        text = script(parser, shell)
        missing = {f for f in flags if f not in text and f != "--help"}
        assert not missing, (shell, missing)
        for name in COMMANDS:
            assert name in text


@pytest.mark.skipif(
    shutil.which("zsh") is None and not os.environ.get("CI"), reason="zsh is not installed"
)
def test_the_zsh_script_parses():
    done = subprocess.run(
        ["zsh", "-n"],
        check=False,
        input=script(build_parser(), "zsh"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
