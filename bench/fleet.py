"""Benchmark of fleet mode: N syncd processes (N = 1, 3, 6), each with its own folder, state
and DAM folder (/host-1, /host-2, ...), run `--initial-sync` at once against one emulator
limited to `--limit` requests/s (burst `--burst`), once each as independent processes
(`local`) and with a `[fleet]` section naming one Redis (`fleet`): one shared request-rate
budget, one pause from Retry-After, one learned rate.

Prints, per run: the fleet's accepted requests/s over the span from the first request the
emulator saw to its last reply, as a share of the limit; the share of requests answered
429; each host's share of the limit (its uploads, one accepted request each, over the same
span); and whether every host's DAM folder mirrors its local tree exactly (the same paths
and content, no duplicate assets). Then, with `[fleet]` and 3 hosts, Redis is killed a
third of the way into the run and started again, empty, 3 s later: every host must exit 0
with an exact mirror.

Targets with `[fleet]`: at least 90% of the limit together, at most 5% of requests
answered 429, every mirror exact. Any run whose syncd fails or whose mirror is not exact
fails the bench too, in either mode.

Usage: python bench/fleet.py [--hosts 1,3,6] [--files 300] [--limit 40] [--burst 10]
                             [--modes local,fleet] [--no-kill] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import TOKEN, Emulator, make_tree, syncd_env
from tests.redis_server import RedisServer, redis_binary

KILL_DOWN_S = 3.0  # how long Redis stays down in the kill scenario


@dataclass
class Host:
    """One syncd host: its tree, state, config and log, and its folder on the DAM."""

    index: int
    work: Path
    remote: str = field(init=False)
    root: Path = field(init=False)
    tree: dict[str, str] = field(init=False)  # relative path -> sha1

    def __post_init__(self) -> None:
        self.remote = f"/host-{self.index}"
        self.root = self.work / "tree"

    def make(self, files: int) -> None:
        make_tree(self.root, files, 4096, 10)
        self.tree = {
            p.relative_to(self.root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in self.root.rglob("*")
            if p.is_file()
        }

    def configure(self, url: str, redis_url: str | None) -> Path:
        """Write its config (and remove the state of an earlier run); returns the path."""
        for old in self.work.glob("state.db*"):
            old.unlink()
        fleet = "" if redis_url is None else f'\n[fleet]\nredis_url = "{redis_url}"\n'
        cfg = self.work / "c.toml"
        cfg.write_text(
            f'[dam]\ntoken = "{TOKEN}"\nbase_url = "{url}"\n\n'
            f'[state]\npath = "{self.work / "state.db"}"\n\n'
            f'[[folders]]\nlocal = "{self.root}"\nremote = "{self.remote}"\n{fleet}'
        )
        return cfg


@dataclass
class Run:
    """What one run of N hosts did."""

    codes: list[int]
    walls: list[float]
    stats: dict[str, Any]
    problems: list[str]  # empty: every host exited 0 with an exact mirror
    uploads: list[int]


def mirror_problems(host: Host, files: list[dict[str, Any]]) -> list[str]:
    """How the DAM folder of `host` differs from its local tree (by the path syncd gave
    each asset last), duplicates included; empty when it mirrors the tree exactly."""
    prefix = host.remote + "/"
    dam: dict[str, str] = {}
    problems: list[str] = []
    for rec in files:
        path = str(rec["client_path"])
        if path.startswith(prefix):
            rel = path[len(prefix) :]
            if rel in dam:
                problems.append(f"duplicate asset for {rel}")
            dam[rel] = str(rec["sha1"])
    missing = host.tree.keys() - dam.keys()
    extra = dam.keys() - host.tree.keys()
    wrong = [p for p in host.tree.keys() & dam.keys() if host.tree[p] != dam[p]]
    for what, paths in (("missing", missing), ("not in the tree", extra), ("wrong", wrong)):
        if paths:
            problems.append(f"{len(paths)} {what}, e.g. {min(paths)}")
    return [f"host-{host.index}: {p}" for p in problems]


def run_hosts(
    emu: Emulator,
    hosts: list[Host],
    redis: RedisServer | None,
    label: str,
    timeout: float,
    kill_at: float | None = None,
) -> Run:
    """Start `syncd --initial-sync` for every host at once and wait for them all; with
    `kill_at`, kill Redis that many seconds in and start it again KILL_DOWN_S later. Each
    host's log goes to `label`.log in its directory."""
    emu.control("reset")
    if redis is not None:
        redis.command("FLUSHALL")  # no rate learned by an earlier run
    env = syncd_env()
    cfgs = [h.configure(emu.url, redis.url if redis is not None else None) for h in hosts]
    procs: list[subprocess.Popen[bytes]] = []
    for host, cfg in zip(hosts, cfgs, strict=True):
        cmd = [sys.executable, "-m", "syncd", "--config", str(cfg), "--initial-sync"]
        with (host.work / f"{label}.log").open("wb") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log))
    walls, problems = wait_all(procs, hosts, redis, timeout, kill_at)
    stats = emu.control("stats")
    files = emu.control("files")
    assert isinstance(stats, dict)
    assert isinstance(files, dict)
    records: list[dict[str, Any]] = files["files"]
    codes = [proc.returncode for proc in procs]
    for host, code in zip(hosts, codes, strict=True):
        if code != 0:
            tail = (host.work / f"{label}.log").read_text(errors="replace")[-600:]
            problems.append(f"host-{host.index}: exit {code}: ...{tail}")
        problems += mirror_problems(host, records)
    uploads = [
        sum(str(r["client_path"]).startswith(h.remote + "/") for r in records) for h in hosts
    ]
    return Run(codes, walls, stats, problems, uploads)


def wait_all(
    procs: list[subprocess.Popen[bytes]],
    hosts: list[Host],
    redis: RedisServer | None,
    timeout: float,
    kill_at: float | None,
) -> tuple[list[float], list[str]]:
    """Each process's seconds until it exited (killed after `timeout`), and the problems;
    with `kill_at` and `redis`, kill Redis then and start it again KILL_DOWN_S later."""
    t0 = time.perf_counter()
    walls: list[float | None] = [None] * len(procs)
    problems: list[str] = []
    killed: float | None = None
    while any(w is None for w in walls):
        now = time.perf_counter() - t0
        for i, proc in enumerate(procs):
            if walls[i] is None and (proc.poll() is not None or now > timeout):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    problems.append(f"host-{hosts[i].index}: still running after {timeout:.0f} s")
                walls[i] = now
        if redis is not None and kill_at is not None:
            killed = redis_chaos(redis, now, kill_at, killed)
        time.sleep(0.02)
    if redis is not None and redis.proc is None:
        redis.start()
    if kill_at is not None and killed is None:
        problems.append("every host finished before Redis was killed")
    return [w or 0.0 for w in walls], problems


def redis_chaos(
    redis: RedisServer, now: float, kill_at: float, killed: float | None
) -> float | None:
    """Kill Redis at `kill_at`, start it again KILL_DOWN_S later; returns when it was killed."""
    if killed is None and now >= kill_at:
        redis.stop()
        return now
    if killed is not None and redis.proc is None and now >= killed + KILL_DOWN_S:
        redis.start()
    return killed


def report(label: str, n: int, run: Run, limit: float) -> tuple[float, float]:
    """Print one row; returns (share of the limit, 429 share)."""
    stats = run.stats
    total = sum(stats["requests"].values())
    limited = int(stats["rate_limited"])
    first, last = stats["first_request_s"], stats["last_reply_s"]
    span = float(last) - float(first) if first is not None and last is not None else 0.0
    accepted_rate = (total - limited) / span if span > 0 else 0.0
    share = accepted_rate / limit
    limited_share = limited / total if total else 0.0
    hosts = " ".join(f"{u / span / limit if span > 0 else 0:4.0%}" for u in run.uploads)
    print(
        f"{label:<6} {n:2d} {max(run.walls):7.1f} {span:7.1f} {total:8d} {limited:5d}"
        f" {accepted_rate:10.1f} {share:8.0%} {limited_share:9.1%}"
        f"  {'exact' if not run.problems else 'WRONG':<7} {hosts}"
    )
    for problem in run.problems:
        print(f"       {problem}")
    return share, limited_share


def bench(args: argparse.Namespace, work: Path, modes: list[str], counts: list[int]) -> bool:
    """Every run; True when all went well and fleet mode met its targets."""
    ok = True
    hosts = [Host(i, work / f"host-{i}") for i in range(1, max([*counts, 3]) + 1)]
    for host in hosts:
        host.make(args.files)
    emu = Emulator("--rate-limit", str(args.limit), "--rate-burst", str(args.burst))
    redis = RedisServer(work / "redis") if "fleet" in modes else None
    try:
        print(
            f"{args.files} files of 4 KiB per host against a DAM limited to {args.limit:g}"
            f" requests/s (burst {args.burst:g}); span: first request to last reply"
        )
        print(
            f"{'mode':<6} {'N':>2} {'wall s':>7} {'span s':>7} {'requests':>8} {'429s':>5}"
            f" {'accepted/s':>10} {'of limit':>8} {'429 share':>9}  {'mirrors':<7}"
            " each host's uploads/s of limit"
        )
        for mode in modes:
            for n in counts:
                timeout = 10 * n * args.files / args.limit + 120
                r = redis if mode == "fleet" else None
                run = run_hosts(emu, hosts[:n], r, f"{mode}-{n}", timeout)
                share, limited_share = report(mode, n, run, args.limit)
                ok &= not run.problems
                if mode == "fleet" and (share < 0.9 or limited_share > 0.05):
                    print("       MISSED: at least 90% of the limit, at most 5% answered 429")
                    ok = False
        if redis is not None and not args.no_kill:
            expected = 3 * args.files / args.limit
            print(
                f"fleet, 3 hosts: Redis killed at {expected / 3:.1f} s,"
                f" started again {KILL_DOWN_S:g} s later"
            )
            run = run_hosts(emu, hosts[:3], redis, "kill-3", 10 * expected + 120, expected / 3)
            report("kill", 3, run, args.limit)
            ok &= not run.problems
    finally:
        emu.close()
        if redis is not None:
            redis.stop()
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", default="1,3,6", help="host counts to run, comma-separated")
    p.add_argument("--files", type=int, default=300, help="files per host")
    p.add_argument("--limit", type=float, default=40.0, help="requests/s the DAM accepts")
    p.add_argument("--burst", type=float, default=10.0, help="requests let through at once")
    p.add_argument("--modes", default="local,fleet", help="local, fleet or both")
    p.add_argument("--no-kill", action="store_true", help="skip the Redis kill scenario")
    p.add_argument("--keep", action="store_true", help="keep the trees, configs and logs")
    args = p.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    modes = args.modes.split(",")
    if unknown := set(modes) - {"local", "fleet"}:
        p.error(f"unknown mode {', '.join(sorted(unknown))}")
    if "fleet" in modes and redis_binary() is None:
        print("fleet mode needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    if args.keep:
        work = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
        ok = bench(args, work, modes, counts)
        print(f"logs: {work}/host-*/MODE-N.log")
    else:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
            ok = bench(args, Path(tmp), modes, counts)
    print(
        "targets with [fleet]: at least 90% of the limit, at most 5% answered 429;"
        " in every run: each syncd exits 0 and each mirror is exact, without duplicates"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
