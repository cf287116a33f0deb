"""Shared fixtures: a real emulator on loopback, config files on tmp_path, and a runner
for the real `syncd` command in a subprocess.

Also the two layers of tests. A test is `unit` (one module, no emulator, no syncd
process: the whole set runs in seconds, `pytest -m unit`) or `e2e`. A module or test may
say which; one that does not is `e2e` when it uses the `emulator` fixture and `unit`
otherwise. A test marked `unit` that starts the emulator, syncd or its daemon fails and
says to mark it `e2e`, so the fast set stays fast and the split stays honest."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from syncd.emulator import Emulator, serve

# File names that break naive URL or multipart encoding.
NAMES = [
    "summer sale #1.jpg",
    "100% cotton.png",
    "%41%42.txt",  # looks percent-encoded: must not be decoded twice
    "what?.gif",
    "salt & pepper.webp",
    "a+b=c.svg",
    "l'été à Zürich.jpg",
    'the "quoted" one.pdf',
    "日本語ファイル.png",
    "semi;colon, comma.txt",
    "space  twice .jpg",
    "back\\slash.txt",
]

KEY = "test-key-5f2b9c0e7d"
REPO = Path(__file__).resolve().parent.parent
TOKEN = "proj"


_E2E_FIXTURES = {"emulator", "dam"}
_current: list[pytest.Item] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        layers = {m.name for m in item.iter_markers()} & {"unit", "e2e"}
        if len(layers) == 2:
            raise pytest.UsageError(f"{item.nodeid}: marked both unit and e2e")
        if not layers:
            uses = _E2E_FIXTURES & set(getattr(item, "fixturenames", ()))
            item.add_marker(pytest.mark.e2e if uses else pytest.mark.unit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _current.append(item)
    try:
        return (yield)
    finally:
        _current.pop()


def refuse_in_unit(what: str) -> None:
    """Fail a `unit` test that starts `what` (the emulator, syncd, its daemon)."""
    if _current and _current[-1].get_closest_marker("unit") is not None:
        pytest.fail(f"{_current[-1].nodeid} is marked unit but starts {what}: mark it e2e")


def _guarded_emulator_init(self: Emulator, *args: Any, **kwargs: Any) -> None:
    refuse_in_unit("the DAM emulator")
    _emulator_init(self, *args, **kwargs)


_emulator_init = Emulator.__init__
setattr(Emulator, "__init__", _guarded_emulator_init)  # noqa: B010 (mypy: no method assignment)


def _guarded_process(start: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(command: Any, *args: Any, **kwargs: Any) -> Any:
        words = [str(w) for w in command] if isinstance(command, list | tuple) else []
        if any(a == "-m" and b.split(".")[0] == "syncd" for a, b in itertools.pairwise(words)):
            refuse_in_unit(" ".join(words[1:3]))
        return start(command, *args, **kwargs)

    return guarded


anyio.run_process = _guarded_process(anyio.run_process)
anyio.open_process = _guarded_process(anyio.open_process)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with serve(token=TOKEN, key=KEY, seed=1) as emu:
        yield emu


def toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(
    path: Path,
    emu: Emulator,
    folders: list[dict[str, Any]],
    *,
    state: Path | None = None,
    dam: dict[str, Any] | None = None,
    sync: dict[str, Any] | None = None,
    fleet: dict[str, Any] | None = None,
) -> Path:
    """Write a syncd config pointing at the emulator."""
    lines = ["[dam]", f'token = "{TOKEN}"', f'base_url = "{emu.url}"']
    # The emulator's listings do not lag unless a test says so; tests that lag set both.
    dam = {"listing_lag_s": 0, **(dam or {})}
    lines += [f"{k} = {toml_value(v)}" for k, v in dam.items()]
    lines += ["", "[state]", f"path = {toml_value(str(state or path.parent / 'state.db'))}"]
    if sync:
        lines += ["", "[sync]"] + [f"{k} = {toml_value(v)}" for k, v in sync.items()]
    if fleet:
        lines += ["", "[fleet]"] + [f"{k} = {toml_value(v)}" for k, v in fleet.items()]
    for folder in folders:
        lines += ["", "[[folders]]"] + [f"{k} = {toml_value(v)}" for k, v in folder.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Run:
    """The outcome of one `syncd` process."""

    code: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events if e.get("event") == name]
        assert found, f"no {name!r} event in:\n{self.stderr}"
        return found[-1]

    @property
    def summary(self) -> dict[str, Any]:
        return self.event("sync_summary")


async def run_syncd(*args: str | Path, env: dict[str, str] | None = None) -> Run:
    """Run the real `syncd` command (`python -m syncd`) and parse its JSON log lines."""
    refuse_in_unit("syncd")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    full_env["SYNCD_API_KEY"] = KEY
    full_env.update(env or {})
    with anyio.fail_after(90):
        proc = await anyio.run_process(
            [sys.executable, "-m", "syncd", *map(str, args)], env=full_env, check=False
        )
    stderr = proc.stderr.decode("utf-8", "replace")
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), stderr, events)


def local_tree(root: Path) -> dict[str, str]:
    """Every regular file under `root` as relative path → sha1."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath, name)
            if p.is_file() and not p.is_symlink():
                out[p.relative_to(root).as_posix()] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def dam_tree(emu: Emulator, remote: str) -> dict[str, str]:
    """Every asset below `remote` as relative path → sha1, by the name syncd last gave it
    (`client_path`: the DAM may keep `info.name` on rename); fails on duplicates."""
    prefix = remote.rstrip("/") + "/"
    out: dict[str, str] = {}
    for rec in emu.files():
        if rec.client_path.startswith(prefix):
            rel = rec.client_path[len(prefix) :]
            assert rel not in out, f"duplicate asset for {rel}"
            out[rel] = rec.sha1
    return out


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


Writer = Callable[[Path, bytes | str], Path]


@pytest.fixture
def dam(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The emulator's store, recorded: see `tests.harness.DamLog`."""
    from tests.harness import DamLog

    log = DamLog(emulator)
    log.hook(monkeypatch)
    return log


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for unix sockets (tmp_path can exceed the 107-byte
    limit of a socket path)."""
    with tempfile.TemporaryDirectory(prefix="syncd-") as d:
        yield Path(d)


@asynccontextmanager
async def emulator_command(*args: str) -> AsyncIterator[tuple[Process, str]]:
    """The real `syncd-emulator` command (`python -m syncd.emulator --port 0 ARGS`) and the
    first line it prints; the block should stop it (it is killed if still running)."""
    refuse_in_unit("the syncd-emulator command")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "syncd.emulator", "--port", "0", *args]
    async with await anyio.open_process(command, env=env) as process:
        try:
            assert process.stdout is not None
            line = b""
            with anyio.fail_after(10):
                while not line.endswith(b"\n"):
                    line += await process.stdout.receive(1)
            yield process, line.decode()
        finally:
            if process.returncode is None:
                process.kill()
