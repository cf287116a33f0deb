"""Benchmark of syncd against a rate-limited DAM: a 2,000-file `--initial-sync` against the
emulator limited to 50 requests/s (a token bucket), once for each way a 429 can say when to
come back (`Retry-After` in seconds, as an HTTP date, or not at all).

Prints, per run: the achieved rate of accepted requests as a share of the limit (target:
at least 90%), and the share of requests answered with 429 (target: at most 5%).

Usage: python bench/rate_limit.py [--files 2000] [--limit 50] [--styles seconds,date,none]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Emulator, make_tree, measure, syncd_env, write_config


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--limit", type=float, default=50.0, help="requests/s the DAM accepts")
    p.add_argument("--styles", default="seconds,date,none")
    p.add_argument("--workers", type=int, default=None, help="default: syncd's own")
    args = p.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        root = work / "tree"
        make_tree(root, args.files, 4096, 20)
        print(f"{args.files} files of 4 KiB against a DAM limited to {args.limit:g} requests/s")
        print(
            f"{'Retry-After':<12} {'wall s':>7} {'requests':>8} {'429s':>5} "
            f"{'accepted/s':>10} {'of limit':>8} {'429 share':>9}"
        )
        for style in args.styles.split(","):
            emu = Emulator("--rate-limit", str(args.limit), "--retry-after", style)
            try:
                for old in work.glob("state.db*"):
                    old.unlink()
                cfg = write_config(work / "c.toml", emu.url, root, work / "state.db", args.workers)
                run = measure(
                    [sys.executable, "-m", "syncd", "--config", str(cfg), "--initial-sync"],
                    syncd_env(),
                )
                stats = emu.control("stats")
            finally:
                emu.close()
            assert isinstance(stats, dict)
            total = sum(stats["requests"].values())
            limited = stats["rate_limited"]
            accepted_rate = (total - limited) / run.wall
            share = accepted_rate / args.limit
            ok = run.code == 0 and stats["files_count"] == args.files
            failed |= not ok
            print(
                f"{style:<12} {run.wall:7.1f} {total:8d} {limited:5d} {accepted_rate:10.1f}"
                f" {share:8.0%} {limited / total:9.1%}" + ("" if ok else "  RUN FAILED")
            )
    print("targets: at least 90% of the limit, at most 5% of requests answered 429")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
