"""The live progress displays of a run: a bar with files, bytes, rate and ETA on a
terminal (tqdm, imported only there), periodic `sync_progress` log events otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import structlog

from syncd.engine.progress import human_bytes

__all__ = ["LogProgress", "TtyProgress"]

log = structlog.get_logger(__name__)


class TtyProgress:
    """A tqdm bar: files done of total, bytes, byte rate and ETA."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        from tqdm import tqdm  # imported only on a terminal: it is not free

        self._bar = tqdm(
            total=0,
            unit="file",
            file=stream,
            dynamic_ncols=True,
            mininterval=0.2,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} files{postfix} [{elapsed}<{remaining}]",
        )
        self._bytes_total = 0
        self._bytes_done = 0
        self._t0 = time.monotonic()
        self._last = 0.0

    def add(self, files: int, nbytes: int) -> None:
        """More work became known."""
        self._bar.total = (self._bar.total or 0) + files
        self._bytes_total += nbytes
        self._bar.refresh()

    def advance(self, files: int, nbytes: int) -> None:
        """Work was done."""
        self._bytes_done += nbytes
        now = time.monotonic()
        if now - self._last > 0.2:
            self._last = now
            rate = self._bytes_done / max(now - self._t0, 1e-6)
            self._bar.set_postfix_str(
                f"{human_bytes(self._bytes_done)}/{human_bytes(self._bytes_total)}"
                f" {human_bytes(rate)}/s",
                refresh=False,
            )
        self._bar.update(files)

    def close(self) -> None:
        """The run is over."""
        self._bar.set_postfix_str(f"{human_bytes(self._bytes_done)}", refresh=False)
        self._bar.close()


class LogProgress:
    """A `sync_progress` event every `every_s` seconds, for logs without a terminal."""

    def __init__(self, every_s: float = 10.0) -> None:
        self._every = every_s
        self._files_total = self._bytes_total = self._files = self._bytes = 0
        self._t0 = self._last = time.monotonic()

    def add(self, files: int, nbytes: int) -> None:
        """More work became known."""
        self._files_total += files
        self._bytes_total += nbytes

    def advance(self, files: int, nbytes: int) -> None:
        """Work was done."""
        self._files += files
        self._bytes += nbytes
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            rate = self._files / max(now - self._t0, 1e-6)
            left = self._files_total - self._files
            log.info(
                "sync_progress",
                files=self._files,
                files_total=self._files_total,
                bytes=self._bytes,
                bytes_total=self._bytes_total,
                files_per_s=round(rate, 1),
                eta_s=round(left / rate, 1) if rate else None,
            )

    def close(self) -> None:
        """The run is over (the summary follows)."""
