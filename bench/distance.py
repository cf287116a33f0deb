"""Benchmark of syncd at a distance: the emulator answers each request after `--latency-ms`
(± `--jitter-ms`), as a DAM 100 ms away does. syncd runs with its default settings.

1. No rate limit: `syncd sync` of `--files` small files against the ceiling client (a
   plain aiohttp loop) at fixed concurrency 8, 16, 32 and 64, in the same run. Target:
   syncd reaches at least 0.90 of the best of them.
2. The same distance, the DAM limited to `--limit` requests/s.
3. Loopback, the DAM limited to 30 requests/s with a burst of 10 (`--small-files`).

In 2 and 3: the accepted requests per second over the run, as a share of the limit
(target: at least 90%), and the share of requests answered 429 (target: at most 5%). The
run's time counts from the first request the emulator saw to the last, so the start-up
of the process is not counted against the DAM's rate.

Usage: python bench/distance.py [--files 3000] [--latency-ms 100] [--jitter-ms 10]
                                [--limit 100] [--small-files 600] [--cases 1,2,3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Emulator,
    ceiling_command,
    make_tree,
    measure,
    syncd_env,
    write_config,
)


def syncd_run(emu: Emulator, work: Path, root: Path) -> tuple[float, dict[str, Any]]:
    """One `syncd sync` with default settings; the wall time and the emulator's stats."""
    for old in work.glob("state.db*"):
        old.unlink()
    cfg = write_config(work / "c.toml", emu.url, root, work / "state.db", None)
    run = measure([sys.executable, "-m", "syncd", "sync", "--config", str(cfg)], syncd_env())
    if run.code != 0:
        raise RuntimeError(f"syncd failed ({run.code}): {run.stderr[-2000:]}")
    stats = emu.control("stats")
    assert isinstance(stats, dict)
    return run.wall, stats


def ceiling_run(emu: Emulator, root: Path, concurrency: int) -> float:
    run = measure(ceiling_command(emu, root, concurrency))
    if run.code != 0:
        raise RuntimeError(f"ceiling client failed: {run.stderr[-2000:]}")
    return run.wall


def unlimited(args: argparse.Namespace, work: Path, root: Path) -> bool:
    print(
        f"1. {args.files} files of 2 KiB, DAM {args.latency_ms:g} ms away"
        f" (± {args.jitter_ms:g} ms), no rate limit; files/s over the whole process"
        " (start-up included), and over the requests alone"
    )
    emu = Emulator("--latency-ms", str(args.latency_ms), "--jitter-ms", str(args.jitter_ms))
    n = args.files
    try:
        ceilings: dict[int, tuple[float, float]] = {}
        for concurrency in (8, 16, 32, 64):
            emu.control("reset")
            wall = ceiling_run(emu, root, concurrency)
            ceilings[concurrency] = (n / wall, n / emu.request_span())
            print(
                f"   ceiling client, {concurrency:2d} in flight: {n / wall:6.0f} files/s"
                f"  (requests alone: {ceilings[concurrency][1]:6.0f})"
            )
        emu.control("reset")
        wall, _ = syncd_run(emu, work, root)
        requests = n / emu.request_span()
    finally:
        emu.close()
    best = max(c[0] for c in ceilings.values())
    best_requests = max(c[1] for c in ceilings.values())
    ratio, ratio_requests = n / wall / best, requests / best_requests
    print(
        f"   syncd, default settings:         {n / wall:6.0f} files/s  (requests alone:"
        f" {requests:6.0f}) = {ratio:.2f} of the best ceiling ({ratio_requests:.2f} over the"
        " requests alone; target >= 0.90)"
    )
    return ratio >= 0.90


def limited(label: str, emu_args: list[str], limit: float, work: Path, root: Path) -> bool:
    print(label)
    emu = Emulator(*emu_args)
    try:
        wall, stats = syncd_run(emu, work, root)
        seconds = emu.request_span()
    finally:
        emu.close()
    total = sum(stats["requests"].values())
    refused = int(stats["rate_limited"])
    accepted = (total - refused) / seconds
    share, refused_share = accepted / limit, refused / total
    ok = share >= 0.90 and refused_share <= 0.05
    print(
        f"   {total} requests in {seconds:.1f} s ({wall:.1f} s wall): {accepted:.1f} accepted/s"
        f" = {share:.0%} of the limit (target >= 90%); {refused} answered 429"
        f" = {refused_share:.1%} (target <= 5%)" + ("" if ok else "  BELOW TARGET")
    )
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=3000)
    p.add_argument("--latency-ms", type=float, default=100.0)
    p.add_argument("--jitter-ms", type=float, default=10.0)
    p.add_argument("--limit", type=float, default=100.0)
    p.add_argument("--small-files", type=int, default=600)
    p.add_argument("--cases", default="1,2,3")
    args = p.parse_args()
    cases = set(args.cases.split(","))
    ok = True
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        root = work / "tree"
        make_tree(root, args.files, 2048, 10)
        small = work / "small"
        make_tree(small, args.small_files, 2048, 6)
        distance = ["--latency-ms", str(args.latency_ms), "--jitter-ms", str(args.jitter_ms)]
        if "1" in cases:
            ok &= unlimited(args, work, root)
        if "2" in cases:
            ok &= limited(
                f"2. {args.files} files, DAM {args.latency_ms:g} ms away, limited to"
                f" {args.limit:g} requests/s",
                [*distance, "--rate-limit", str(args.limit)],
                args.limit,
                work,
                root,
            )
        if "3" in cases:
            ok &= limited(
                f"3. {args.small_files} files on loopback, limited to 30 requests/s, burst 10",
                ["--rate-limit", "30", "--rate-burst", "10"],
                30.0,
                work,
                small,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
