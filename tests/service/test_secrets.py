"""End to end: a DAM that echoes the API key in its error messages. The key (whole, or
any run of eight of its characters) never reaches the state database, `syncd status`
(text or JSON, which need no key) or the console summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.emulator import Emulator
from syncd.emulator.model import EmulatorError
from tests.conftest import KEY, run_syncd, write, write_config

pytestmark = pytest.mark.e2e


def fragments(secret: str, n: int = 8) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


def leaks(text: str) -> list[str]:
    return [f for f in fragments(KEY) if f in text]


def state_files(directory: Path) -> list[bytes]:
    """The bytes of the state database and its WAL."""
    return [p.read_bytes() for p in directory.glob("state.db*")]


def echo_the_key(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every upload of a `bad-*` file fails with a 400 whose msg quotes the key, whole
    and cut short (as a DAM truncating its own message would)."""
    upload = emu.store.upload

    def refuse(folder_path: str, original_name: str, **kw: Any) -> Any:
        if original_name.startswith("bad-"):
            raise EmulatorError(
                400, "BAD_REQUEST", f"key {KEY} not allowed for {original_name}; {KEY[:13]}"
            )
        return upload(folder_path, original_name, **kw)

    monkeypatch.setattr(emu.store, "upload", refuse)


async def test_a_key_echoed_by_the_dam_is_never_stored_or_shown(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo_the_key(emulator, monkeypatch)
    root = tmp_path / "src"
    write(root / "good.txt", "fine")
    for i in range(3):
        write(root / f"bad-{i}.txt", f"refused {i}")
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/m"}])
    with anyio.fail_after(60):
        console = await run_syncd("--config", cfg, "--initial-sync", "--log-format", "console")
        as_json = await run_syncd("--config", cfg, "--initial-sync", "--log-format", "json")
        # `syncd status` runs without the key in its environment: it cannot mask anything
        # the state did not already hold masked.
        text = await run_syncd("status", "--config", cfg, env={"SYNCD_API_KEY": ""})
        doc = await run_syncd("status", "--config", cfg, "--json", env={"SYNCD_API_KEY": ""})
    assert console.code == as_json.code == 1  # the refused files are parked
    for shown in (console.stderr, text.stdout):
        assert "bad-0.txt" in shown
        assert "not allowed" in shown
    for out in (console.stdout, console.stderr, as_json.stderr, text.stdout, doc.stdout):
        assert leaks(out) == []
    raw = b"".join(state_files(tmp_path))
    assert raw  # the database and its WAL
    assert [f for f in fragments(KEY) if f.encode() in raw] == []
