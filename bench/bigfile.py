"""Benchmark of one big upload: `syncd sync` of a folder holding one `--gib` GiB file
against `curl -T` of the same file to the same emulator endpoint (the streaming
`PUT /files`), in the same run. Prints each one's throughput, syncd's share of curl's
(target: at least 0.90) and syncd's peak RSS (flat memory: it must not grow with the file).

The emulator runs with `--no-content` (it hashes what it receives and keeps nothing), on
loopback, so the figures are the clients' own cost.

Usage: python bench/bigfile.py [--gib 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import KEY, TOKEN, Emulator, measure, syncd_env, write_config


def write_big(path: Path, size: int) -> None:
    """`size` bytes that do not compress, written in 64 MiB pieces."""
    chunk = os.urandom(64 * 1024 * 1024)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gib", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    size = int(args.gib * 1024**3)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        root = work / "tree"
        root.mkdir()
        big = root / "master.mov"
        write_big(big, size)
        emu = Emulator()
        curls, syncds, rss, curl_spans, syncd_spans = [], [], [], [], []
        try:
            cfg = write_config(work / "c.toml", emu.url, root, work / "state.db", None)
            url = f"{emu.url}/{TOKEN}/v4/files?folder=/curl&filename=master.mov"
            curl = ["curl", "-sS", "--fail", "-o", "/dev/null", "-T", str(big), url]
            for _ in range(args.repeat):
                emu.control("reset")
                run = measure([*curl, "-H", f"X-Filerobot-Key: {KEY}"])
                if run.code != 0:
                    raise RuntimeError(f"curl failed: {run.stderr}")
                curls.append(run.wall)
                curl_spans.append(emu.request_span())
                emu.control("reset")
                for old in work.glob("state.db*"):
                    old.unlink()
                run = measure(
                    [sys.executable, "-m", "syncd", "sync", "--config", str(cfg)], syncd_env()
                )
                if run.code != 0:
                    raise RuntimeError(f"syncd failed: {run.stderr[-2000:]}")
                syncds.append(run.wall)
                syncd_spans.append(emu.request_span())
                rss.append(run.rss_mib)
            files = emu.control("files")
        finally:
            emu.close()
        assert isinstance(files, dict)
        assert len(files["files"]) == 1
    mib = size / 1024**2
    curl_s, syncd_s = statistics.median(curls), statistics.median(syncds)
    print(f"one file of {args.gib:g} GiB, median of {args.repeat} alternating runs")
    print(f"  curl -T:    {mib / curl_s:7.0f} MiB/s  ({curl_s:.2f} s)")
    print(
        f"  syncd sync: {mib / syncd_s:7.0f} MiB/s  ({syncd_s:.2f} s, start-up, hashing and"
        f" state included) = {curl_s / syncd_s:.2f} of curl (target >= 0.90)"
    )
    cs, ss = statistics.median(curl_spans), statistics.median(syncd_spans)
    print(
        f"  the requests alone (the emulator's first request to its last reply): curl"
        f" {cs:.2f} s, syncd {ss:.2f} s = {cs / ss:.2f} of curl"
    )
    print(f"  syncd peak RSS: {max(rss):.0f} MiB (runs: {', '.join(f'{r:.0f}' for r in rss)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
