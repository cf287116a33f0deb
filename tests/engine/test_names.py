"""End to end: every name a filesystem can hold either uploads under its exact name, the
same through the multipart POST and the streaming PUT, or is skipped with one clear
warning; none stops a run or costs a retry."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import pytest

from tests.conftest import dam_tree, run_syncd, write, write_config

pytestmark = pytest.mark.e2e

BIG = 2 * 1024 * 1024  # above the 1 MiB stream threshold set below: the PUT upload

# 255 bytes: the longest name ext4, xfs and btrfs hold.
LONGEST = [
    "a" * 251 + ".jpg",
    "é" * 125 + "x.jpg",  # 2-byte characters: 250 + 5 bytes
    "日本" * 41 + "x.txt",  # 3-byte characters: 246 + 9 bytes
]
# C1 controls and format characters are valid UTF-8 and travel as such.
ODD = ["c1\u0085next.txt", "zero\u200bwidth.txt", "emoji 😀.png", "%0A.txt"]


def bad_names() -> list[bytes]:
    controls = [bytes([c]) for c in range(1, 32)] + [b"\x7f"]  # NUL and / cannot be names
    names = [b"ctl-" + c + b"-x.jpg" for c in controls]
    names += [b"lone-\xff-byte.jpg", b"half-\xc3.jpg"]  # undecodable: surrogates in Python
    return names


def make_tree(root: Path, size: int) -> dict[str, str]:
    """The good and the bad names, each with `size` random bytes; returns the good ones
    as name → sha1."""
    expected = {}
    for name in [*LONGEST, *ODD]:
        assert len(name.encode()) <= 255
        data = os.urandom(size)
        write(root / name, data)
        expected[name] = hashlib.sha1(data).hexdigest()
    base = os.fsencode(root)
    for bad in bad_names():
        with open(base + b"/" + bad, "wb") as f:
            f.write(os.urandom(size))
    return expected


@pytest.mark.parametrize("size", [100, BIG], ids=["multipart-post", "streaming-put"])
async def test_every_name_uploads_exactly_or_is_skipped_with_one_warning(tmp_path, emulator, size):
    root = tmp_path / "src"
    expected = make_tree(root, size)
    cfg = write_config(
        tmp_path / "c.toml",
        emulator,
        [{"local": str(root), "remote": "/m"}],
        dam={"stream_threshold_mb": 1, "max_attempts": 3},
    )
    with anyio.fail_after(60):
        run = await run_syncd("--config", cfg, "--initial-sync", "--log-format", "json")
    assert run.code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert not [e for e in run.events if e["event"] == "dam_retry"]  # no retry storm
    # Exactly the good names, each under its own name (dam_tree: the name syncd gave).
    assert dam_tree(emulator, "/m") == expected
    stored = {r.name for r in emulator.files()}
    assert stored == set(expected)  # the stored names too: nothing escaped or mangled
    skipped = [e for e in run.events if e["event"] == "file_skipped"]
    assert len(skipped) == len(bad_names())  # one clear warning each
    assert run.summary["skipped"] == len(bad_names())
