"""Benchmark of start-up: how long `syncd --version` and `syncd status` take, against a
bare interpreter start measured in the same run (targets: `--version` at most 8x the bare
start, `status` at most 0.3 s). Each command runs through the installed `syncd` script,
as a user types it. `status` reads a state database holding `--files` synced files and a
queue journal, with no daemon running.

Usage: python bench/startup.py [--runs 30] [--files 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncd.model import Known
from syncd.state.store import State


def timed(command: list[str], runs: int) -> float:
    """The median wall time of `runs` runs of `command`, after one warm-up run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    subprocess.run(command, check=True, capture_output=True, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_state(work: Path, files: int) -> Path:
    root = work / "root"
    root.mkdir()
    db = work / "state.db"
    cfg = work / "config.toml"
    cfg.write_text(
        f'[dam]\ntoken = "t"\n[state]\npath = "{db}"\n'
        f'[[folders]]\nlocal = "{root}"\nremote = "/r"\n'
    )
    with State.open(db) as state:
        fid = state.ensure_folder(str(root), "/r")
        for i in range(files):
            state.record(
                fid, Known(f"d{i % 100}/f{i:07}.jpg", 1000, i, i, f"{i:040x}", f"u{i:031x}")
            )
        state.flush()
        state.update_journal([(fid, f"d0/new{i}.jpg") for i in range(50)], [])
    return cfg


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--files", type=int, default=100_000)
    args = p.parse_args()
    script = shutil.which("syncd", path=str(Path(sys.executable).parent)) or shutil.which("syncd")
    if script is None:
        sys.exit("bench/startup.py: the syncd script is not installed (pip install -e .)")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        cfg = make_state(Path(tmp), args.files)
        bare = timed([sys.executable, "-c", "pass"], args.runs)
        version = timed([script, "--version"], args.runs)
        helps = timed([script, "sync", "--help"], args.runs)
        status = timed([script, "status", "--config", str(cfg)], args.runs)
    print(f"median of {args.runs} runs each; state of {args.files:,} files")
    print(f"  bare interpreter (python -c pass)  {bare * 1000:6.1f} ms")
    print(
        f"  syncd --version                     {version * 1000:6.1f} ms  {version / bare:4.1f}x bare"
        "  (target <= 8x)"
    )
    print(
        f"  syncd sync --help                   {helps * 1000:6.1f} ms  {helps / bare:4.1f}x bare"
    )
    print(
        f"  syncd status                        {status * 1000:6.1f} ms  {status / bare:4.1f}x bare"
        "  (target <= 300 ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
