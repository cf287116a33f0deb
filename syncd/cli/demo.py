"""`syncd demo`: a real end-to-end run of the main job on this machine, with nothing to
set up. It builds a sample folder (nested directories, awkward names, files that must be
ignored), starts the bundled DAM emulator on loopback, runs `syncd sync` with the
progress bar, checks that the DAM mirrors the folder, then edits the folder and shows that
a re-run sends only the changes and that a no-op re-run costs a handful of requests."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import sys
import tempfile
from pathlib import Path

import anyio

from syncd.cli.progress import TtyProgress
from syncd.config.schema import Config, config_from_dict
from syncd.emulator import Emulator, serve
from syncd.engine.initial_sync import RunOptions, initial_sync
from syncd.engine.progress import NullProgress, Progress, Summary
from syncd.redact import redact

__all__ = ["make_tree", "mirror_problems", "run_demo"]

_NAMES = [
    "summer sale #1.jpg",
    "100% cotton.png",
    "what?.gif",
    "salt & pepper.webp",
    "a+b=c.svg",
    "l'été à Zürich.jpg",
    'the "quoted" one.pdf',
    "日本語ファイル.png",
]
_JUNK = [".DS_Store", "Thumbs.db", "download.jpg.part", "~$brief.docx", ".~lock.sheet.ods#"]


def make_tree(root: Path, files: int, *, size: int = 4096, dirs: int = 10, seed: int = 1) -> int:
    """Write `files` files of about `size` bytes into `dirs` nested folders under `root`;
    returns the bytes written. Sizes vary ±50% unless `size` is fixed by `seed=0`."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        folder = root / f"collection-{i % dirs:03d}" / ("raw" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        name = _NAMES[i % len(_NAMES)] if i < len(_NAMES) * 2 else f"asset-{i:06d}.jpg"
        n = size if seed == 0 else rng.randint(size // 2, size + size // 2)
        data = rng.randbytes(n) if seed else os.urandom(n)
        (folder / f"{i:04d} {name}" if i < len(_NAMES) * 2 else folder / name).write_bytes(data)
        total += n
    return total


def mirror_problems(root: Path, emulator: Emulator, remote: str) -> list[str]:
    """Differences between a local tree and the emulator's content below `remote`, by
    path and sha1 (empty when the DAM mirrors the folder)."""
    local: dict[str, str] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            local[rel] = hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()
    prefix = remote.rstrip("/") + "/"
    remote_files: dict[str, str] = {}
    problems: list[str] = []
    for rec in emulator.files():
        # The name syncd last gave the asset: info.name may stay the upload-time name.
        if rec.client_path.startswith(prefix):
            rel = rec.client_path[len(prefix) :]
            if rel in remote_files:
                problems.append(f"duplicate asset for {rel}")
            remote_files[rel] = rec.sha1
    for rel, sha1 in local.items():
        if rel not in remote_files:
            problems.append(f"missing on the DAM: {rel}")
        elif remote_files[rel] != sha1:
            problems.append(f"different content on the DAM: {rel}")
    problems.extend(f"extra on the DAM: {rel}" for rel in remote_files if rel not in local)
    return problems


def run_demo(files: int, workdir: Path | None, console: bool) -> int:
    """Run the demo; returns 0 when every step checked out."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return anyio.run(_demo, workdir, files, console)
    with tempfile.TemporaryDirectory(prefix="syncd-demo-") as tmp:
        return anyio.run(_demo, Path(tmp), files, console)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _demo(work: Path, files: int, console: bool) -> int:
    sample = work / "assets"
    sample.mkdir(exist_ok=True)
    nbytes = make_tree(sample, files, size=64 * 1024)
    big = sample / "video" / "master.mov"
    big.parent.mkdir(exist_ok=True)
    big.write_bytes(os.urandom(3 * 1024 * 1024))  # above the threshold: streamed PUT
    for junk in _JUNK:
        (sample / junk).write_bytes(b"not an asset")
    key = secrets.token_urlsafe(24)
    redact(key)
    async with serve(token="demo", key=key) as emu:
        config = config_from_dict(
            {
                "dam": {"token": "demo", "base_url": emu.url, "stream_threshold_mb": 1},
                "state": {"path": str(work / "state.db")},
                "folders": [{"local": str(sample), "remote": "/demo"}],
            },
            work / "config.toml",
        )
        _say(f"syncd demo: {files + 1} files ({(nbytes + big.stat().st_size) / 2**20:.1f} MiB)")
        _say(f"  folder   {sample}\n  DAM      {emu.api_url} (bundled emulator)\n")
        _say("1. initial sync")
        summary = await _run(config, key, emu, console)
        for junk in _JUNK:
            (sample / junk).unlink()
        problems = mirror_problems(sample, emu, "/demo")
        for junk in _JUNK:
            (sample / junk).write_bytes(b"not an asset")
        _say(f"   DAM mirrors the folder: {'yes' if not problems else problems[:5]}\n")

        _say("2. edit one file, delete one, add one, re-run")
        first = sorted(p for p in sample.rglob("*.jpg"))
        first[0].write_bytes(os.urandom(5000))
        first[1].unlink()
        (sample / "new arrival.jpg").write_bytes(os.urandom(7000))
        summary = await _run(config, key, emu, console)

        _say("3. re-run with nothing changed")
        before = sum(emu.stats.requests.values())
        summary = await _run(config, key, emu, console)
        _say(f"   {sum(emu.stats.requests.values()) - before} requests to the DAM\n")
        for junk in _JUNK:
            (sample / junk).unlink()
        problems += mirror_problems(sample, emu, "/demo")
    ok = not problems and summary.ok
    _say("demo finished: the DAM mirrors the folder" if ok else f"demo FAILED: {problems[:10]}")
    return 0 if ok else 1


async def _run(config: Config, key: str, emu: Emulator, console: bool) -> Summary:
    progress: Progress = TtyProgress() if console else NullProgress()
    summary = await initial_sync(config, key, RunOptions(), progress)
    _say("   " + summary.render().replace("\n", "\n   ") + "\n")
    return summary
