"""What a run reports: the running totals (`Summary`), the live progress display (a bar
with files, bytes, rate and ETA on a terminal; periodic `sync_progress` log events
otherwise) and the closing summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import structlog

from syncd.model import Skip
from syncd.service.logs import escape, scrub

__all__ = ["LogProgress", "NullProgress", "Progress", "Summary", "TtyProgress", "human_bytes"]

log = structlog.get_logger("syncd.engine.progress")


def human_bytes(n: float) -> str:
    """`1536` → `1.5 KiB`."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        # Compare after rounding, so 1 MiB - 1 byte shows as "1.0 MiB", not "1024.0 KiB".
        if abs(round(n, 1)) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


@dataclass
class Summary:
    """Totals of one run, across folders."""

    uploaded: int = 0
    updated: int = 0
    deleted: int = 0
    moved: int = 0
    adopted: int = 0
    strays_deleted: int = 0  # second assets left by retried uploads, found and deleted
    unchanged: int = 0
    hashed: int = 0
    bytes: int = 0
    skipped: list[Skip] = field(default_factory=list)
    failed: list[Skip] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unknown_kept: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def duration_s(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    @property
    def ok(self) -> bool:
        """True when the DAM now mirrors the local folders."""
        return not self.failed and not self.refused

    def absorb(self, part: Summary) -> None:
        """Add the counts and lists of a part (one batch, one reconcile) to these totals."""
        self.uploaded += part.uploaded
        self.updated += part.updated
        self.deleted += part.deleted
        self.moved += part.moved
        self.adopted += part.adopted
        self.strays_deleted += part.strays_deleted
        self.bytes += part.bytes
        self.failed.extend(part.failed)
        self.refused.extend(part.refused)

    def as_dict(self) -> dict[str, Any]:
        """The figures as one flat record for the `sync_summary` event."""
        return {
            "uploaded": self.uploaded,
            "updated": self.updated,
            "deleted": self.deleted,
            "moved": self.moved,
            "adopted": self.adopted,
            "strays_deleted": self.strays_deleted,
            "unchanged": self.unchanged,
            "hashed": self.hashed,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "refused_deletes": len(self.refused),
            "unknown_remote_kept": self.unknown_kept,
        }

    def render(self, *, counts: bool = True) -> str:
        """The closing summary for a terminal; `counts=False` (a dry run) keeps only
        the files that were skipped or failed and the refusals."""
        d = self.duration_s
        lines: list[str] = []
        if counts:
            lines.append(
                f"uploaded {self.uploaded}, updated {self.updated}, deleted {self.deleted},"
                + (f" moved {self.moved}," if self.moved else "")
                + f" skipped {len(self.skipped)}, failed {len(self.failed)}"
                f" · {human_bytes(self.bytes)} in {d:.1f} s"
                + (f" ({human_bytes(self.bytes / d)}/s)" if d > 0 and self.bytes else "")
            )
            if self.adopted or self.unchanged:
                lines.append(
                    f"already on the DAM: {self.adopted} matched by content,"
                    f" {self.unchanged} unchanged"
                )
        if self.strays_deleted:
            lines.append(f"deleted {self.strays_deleted} duplicate assets left by retried uploads")
        if self.unknown_kept:
            lines.append(
                f"kept {self.unknown_kept} DAM files syncd did not upload"
                " (set delete_unknown = true on the folder to delete them)"
            )
        lines.extend(f"skipped {s.path}: {s.reason}" for s in self.skipped)
        lines.extend(f"FAILED  {s.path}: {s.reason}" for s in self.failed)
        lines.extend(f"REFUSED {r}" for r in self.refused)
        # Names and DAM text go to a terminal: no key, no control characters.
        return "\n".join(escape(scrub(line)) for line in lines)


class Progress(Protocol):
    """Live progress of the uploads of a run."""

    def add(self, files: int, nbytes: int) -> None:
        """More work became known."""

    def advance(self, files: int, nbytes: int) -> None:
        """Work was done."""

    def close(self) -> None:
        """The run is over."""


class NullProgress:
    """No display (dry runs, tests)."""

    def add(self, files: int, nbytes: int) -> None:
        """Ignore."""

    def advance(self, files: int, nbytes: int) -> None:
        """Ignore."""

    def close(self) -> None:
        """Ignore."""


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
