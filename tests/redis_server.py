"""A real `redis-server` on a loopback port, for the fleet tests and `bench/fleet.py`: no
persistence, no config file of the system's, its own directory. Optionally with TLS only
(`rediss://`), from a CA and a server certificate made with `openssl`.

Missing redis-server skips the tests that need it, except under CI (`$CI` set), where it
fails them: `.ci/run` installs it with apt-get.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "redis_binary"]


def redis_binary() -> str | None:
    """redis-server's path, or None."""
    return shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; `stop()` kills it (as a crash would) and `start()` brings
    it back on the same port, empty."""

    def __init__(self, directory: Path, *, tls: bool = False) -> None:
        binary = redis_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.tls = tls
        self.ca: Path | None = _make_certs(directory) if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """Where syncd reaches it."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(self.dir / "server.pem")]
            args += ["--tls-key-file", str(self.dir / "server.key")]
            args += ["--tls-ca-cert-file", str(self.dir / "ca.pem"), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        return args

    def start(self) -> None:
        """Start it and wait until it accepts connections (10 s at most)."""
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10.0
        while True:
            if self.proc.poll() is not None:
                tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        """Kill it at once, as a crash would (SIGKILL), and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def command(self, *words: str) -> str:
        """Run one command through redis-cli; returns its output."""
        cli = shutil.which("redis-cli") or "redis-cli"
        args = [cli, "-p", str(self.port)]
        if self.tls:
            args += ["--tls", "--cacert", str(self.ca)]
        out = subprocess.run([*args, *words], capture_output=True, check=True, timeout=10)
        return out.stdout.decode().strip()


def _make_certs(d: Path) -> Path:
    """A throwaway CA, and a server certificate for 127.0.0.1 signed by it."""

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=syncd test CA")  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    os.chmod(d / "server.key", 0o600)
    return d / "ca.pem"
