"""Shared benchmark plumbing: an emulator in its own process, measured child processes
(wall time, CPU seconds and peak RSS of that one child, via os.wait4), and file trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

KEY = "bench-key"
TOKEN = "bench"


@dataclass
class Measured:
    """One child process: wall seconds, CPU seconds, peak RSS in MiB, exit code."""

    wall: float
    cpu: float
    rss_mib: float
    code: int
    stderr: str


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run `cmd` and measure that process alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, err
    )


class Emulator:
    """The bundled emulator in a separate process (so its CPU is not counted)."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncd.emulator",
                "--port",
                "0",
                "--token",
                TOKEN,
                "--key",
                KEY,
                "--no-content",
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = line.split()[3]

    def control(self, path: str, body: dict[str, object] | None = None) -> object:
        """Call a `/_emulator/` control endpoint."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}/_emulator/{path}",
            data=data,
            method="POST" if data or path in ("reset", "revoke") else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def request_span(self) -> float:
        """Seconds from the first API request to the last reply since the last reset: the
        requests alone, without the client process's start-up."""
        stats = self.control("stats")
        assert isinstance(stats, dict)
        return float(stats["last_reply_s"]) - float(stats["first_request_s"])

    def close(self) -> None:
        """Stop the emulator."""
        self.proc.terminate()
        self.proc.wait(timeout=10)


def ceiling_command(emu: Emulator, root: Path, concurrency: int) -> list[str]:
    """bench/ceiling_client.py: POST every file under `root` at a fixed concurrency."""
    client = str(Path(__file__).parent / "ceiling_client.py")
    return [sys.executable, client, emu.url, TOKEN, KEY, str(root), str(concurrency)]


def make_tree(root: Path, files: int, size: int, folders: int) -> None:
    """`files` files of exactly `size` random bytes, spread over `folders` folders."""
    per = max(1, files // folders)
    for i in range(files):
        d = root / f"folder-{i // per:04d}"
        if i % per == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"asset-{i:07d}.jpg").write_bytes(os.urandom(size))


def write_config(path: Path, url: str, root: Path, state: Path, workers: int | None) -> Path:
    """A syncd config for one folder against the emulator; `workers` None: syncd's default."""
    limit = "" if workers is None else f"workers = {workers}\n"
    path.write_text(
        f'[dam]\ntoken = "{TOKEN}"\nbase_url = "{url}"\n{limit}\n'
        f'[state]\npath = "{state}"\n\n[[folders]]\nlocal = "{root}"\nremote = "/bench"\n'
    )
    return path


def syncd_env() -> dict[str, str]:
    """The environment for a syncd child: the key, JSON logs."""
    return {**os.environ, "SYNCD_API_KEY": KEY}


def write_daemon_config(
    path: Path,
    url: str,
    root: Path,
    state: Path,
    *,
    settle_ms: int = 300,
    workers: int | None = None,
) -> Path:
    """A config for the daemon benchmarks (one folder against the emulator); `workers`
    None: syncd's default."""
    limit = "" if workers is None else f"workers = {workers}\n"
    path.write_text(
        f'[dam]\ntoken = "{TOKEN}"\nbase_url = "{url}"\n{limit}\n'
        f'[state]\npath = "{state}"\n\n[sync]\nsettle_ms = {settle_ms}\n\n'
        f'[[folders]]\nlocal = "{root}"\nremote = "/bench"\n'
    )
    return path


def start_daemon(cfg: Path) -> subprocess.Popen[str]:
    """Start `syncd --config cfg` (its log going to `cfg` + ".log") and return once it
    logged `daemon_ready`."""
    log_path = cfg.with_suffix(".log")
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(cfg)],
            env=syncd_env(),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
        )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if '"daemon_ready"' in log_path.read_text():
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}: {log_path.read_text()}")
        time.sleep(0.05)
    raise RuntimeError("the daemon did not get ready")


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds a live process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mib(pid: int) -> float:
    """Resident memory of a live process now, in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a live process, in MiB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
