"""Benchmark of `syncd --initial-sync` against the bundled emulator (its own process).

Prints, from one run on one machine:
- syncd's files/s and two ceiling clients' files/s (bare aiohttp POST loops with the same
  concurrency over the same files: one builds each body with aiohttp's FormData, the other
  hand-encodes it into one `bytes` as syncd does), their ratios, and the CPU seconds each
  spent;
- the wall time of a no-op re-run, beside a bare Python stat walk of the same tree;
- syncd's peak RSS.

Each figure is the median of `--repeat` runs; syncd and the ceiling client take turns,
so both see the same machine noise.

Usage: python bench/initial_sync.py [--files 10000] [--size 4096] [--folders 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Emulator,
    Measured,
    ceiling_command,
    make_tree,
    measure,
    syncd_env,
    write_config,
)


def stat_walk(root: Path) -> int:
    """The floor of any re-run: walk and stat every file, nothing else."""
    n = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    e.stat(follow_symlinks=False)
                    n += 1
    return n


def median(runs: list[Measured]) -> Measured:
    """The run with the median wall time (its CPU and RSS come with it)."""
    ordered = sorted(runs, key=lambda m: m.wall)
    return ordered[(len(ordered) - 1) // 2]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--folders", type=int, default=100)
    p.add_argument("--workers", type=int, default=8, help="the ceiling clients' concurrency")
    p.add_argument(
        "--syncd-workers",
        type=int,
        default=None,
        help="syncd's [dam] workers (default: syncd's own default, adaptive up to 64)",
    )
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        root = work / "tree"
        t0 = time.perf_counter()
        make_tree(root, args.files, args.size, args.folders)
        print(
            f"tree: {args.files} files of {args.size} B in {args.folders} folders"
            f" (built in {time.perf_counter() - t0:.1f} s)"
        )
        emu = Emulator()
        ceilings: list[Measured] = []
        lean: list[Measured] = []
        firsts: list[Measured] = []
        noops: list[Measured] = []
        try:
            cfg = write_config(
                work / "c.toml", emu.url, root, work / "state.db", args.syncd_workers
            )
            cmd = [sys.executable, "-m", "syncd", "--config", str(cfg), "--initial-sync"]
            ceiling_cmd = ceiling_command(emu, root, args.workers)
            for _ in range(args.repeat):
                emu.control("reset")
                ceilings.append(measure(ceiling_cmd))
                assert ceilings[-1].code == 0, ceilings[-1].stderr
                emu.control("reset")
                lean.append(measure([*ceiling_cmd, "--bytes"]))
                assert lean[-1].code == 0, lean[-1].stderr
                emu.control("reset")
                for old in work.glob("state.db*"):
                    old.unlink()
                firsts.append(measure(cmd, syncd_env()))
                assert firsts[-1].code == 0, firsts[-1].stderr[-2000:]
                noops.append(measure(cmd, syncd_env()))
                assert noops[-1].code == 0, noops[-1].stderr[-2000:]
            stats = emu.control("stats")
        finally:
            emu.close()
        t0 = time.perf_counter()
        walked = stat_walk(root)
        walk_s = time.perf_counter() - t0
        assert walked == args.files

    ceiling, bare, first, noop = median(ceilings), median(lean), median(firsts), median(noops)
    n = args.files

    def line(label: str, m: Measured) -> None:
        print(
            f"{label:<26}: {n / m.wall:6.0f} files/s  {m.wall:6.2f} s wall"
            f"  {m.cpu:6.2f} s CPU  ({m.cpu / n * 1e3:.3f} ms CPU/file)"
        )

    line("ceiling, FormData", ceiling)
    line("ceiling, hand-encoded body", bare)
    line("syncd", first)
    for label, m in (("FormData", ceiling), ("hand-encoded", bare)):
        print(
            f"vs {label + ' ceiling':<23}: {m.wall / first.wall:.2f} of its files/s"
            f" (target >= 0.90), CPU per file {first.cpu / m.cpu:.2f}x (target <= 1.5x)"
        )
    print(
        f"no-op re-run              : {noop.wall:.3f} s wall, {noop.cpu:.3f} s CPU"
        f" (bare stat walk of the tree: {walk_s:.3f} s; target <= 1.0 s at 100,000 files)"
    )
    print(
        f"peak RSS                  : {first.rss_mib:.0f} MiB initial sync, {noop.rss_mib:.0f} MiB no-op"
        f" (target <= 100 MB at 100,000 files)"
    )
    spread = [round(m.wall, 2) for m in firsts]
    print(f"runs                      : {args.repeat} of each (syncd initial sync walls: {spread})")
    print(f"emulator                  : {stats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
