"""What a run counts: the running totals (`Summary`) and their closing summary, and the
`Progress` interface the executor reports into (the displays are in `syncd.cli.progress`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from syncd.model import Skip
from syncd.redact import escape, scrub

__all__ = ["NullProgress", "Progress", "Summary", "human_bytes"]

log = structlog.get_logger(__name__)


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

    def add_skips(self, skips: list[Skip]) -> None:
        """Count and log a walk's skips. Unreadable directories are failures (their files
        are not mirrored); links out of the folder, special files and undecodable names are
        skips."""
        for skip in skips:
            (self.failed if skip.failed else self.skipped).append(skip)
            log.warning("file_skipped", path=skip.path, reason=skip.reason, failed=skip.failed)

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
