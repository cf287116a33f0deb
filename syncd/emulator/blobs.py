"""Where the emulator keeps file content: in memory (the default), as files under a data
directory, or nowhere at all (hashes and sizes only, for big benchmarks)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Literal

__all__ = ["Blobs", "Content", "ContentMode"]

ContentMode = Literal["memory", "disk", "none"]

# What an upload hands to the store: the bytes (memory mode), a staged file that the store
# moves into place (disk mode), or nothing (content not kept).
Content = bytes | Path | None


class Blobs:
    """Content of stored files, keyed by file uuid.

    Args:
        mode: `memory`, `disk` or `none`.
        data_dir: the directory for `disk` mode; created if missing.

    Raises:
        ValueError: `disk` mode without a `data_dir`.
    """

    def __init__(self, mode: ContentMode = "memory", data_dir: Path | None = None) -> None:
        if mode == "disk" and data_dir is None:
            raise ValueError("disk content mode needs a data_dir")
        self.mode: ContentMode = mode
        self._memory: dict[str, bytes] = {}
        self._dir = data_dir
        if data_dir is not None and mode == "disk":
            # The store lives in memory, so content left by an earlier run is unreachable:
            # start from empty `blobs` and `staging` subdirectories (nothing else is touched).
            for sub in ("blobs", "staging"):
                shutil.rmtree(data_dir / sub, ignore_errors=True)
                (data_dir / sub).mkdir(parents=True)

    @property
    def keeps_content(self) -> bool:
        """Whether downloads can be served at all."""
        return self.mode != "none"

    def staging_path(self) -> Path:
        """Return a fresh path for an upload being received in disk mode."""
        assert self._dir is not None
        return self._dir / "staging" / uuid.uuid4().hex

    def put(self, file_uuid: str, content: Content) -> None:
        """Store `content` as the content of `file_uuid`, replacing any previous content."""
        if self.mode == "memory" and isinstance(content, bytes):
            self._memory[file_uuid] = content
        elif self.mode == "disk" and isinstance(content, Path):
            # os.replace is atomic on one filesystem, and staging lives beside blobs.
            os.replace(content, self._blob_path(file_uuid))

    def get(self, file_uuid: str) -> bytes | Path | None:
        """Return the content (bytes, or the path of the file on disk), or None if not kept."""
        if self.mode == "memory":
            return self._memory.get(file_uuid)
        if self.mode == "disk":
            path = self._blob_path(file_uuid)
            return path if path.exists() else None
        return None

    def delete(self, file_uuid: str) -> None:
        """Forget the content of `file_uuid`; a no-op if there is none."""
        self._memory.pop(file_uuid, None)
        if self.mode == "disk":
            self._blob_path(file_uuid).unlink(missing_ok=True)

    @staticmethod
    def discard(content: Content) -> None:
        """Drop content that was staged but not stored (a refused or abandoned upload)."""
        if isinstance(content, Path):
            with contextlib.suppress(FileNotFoundError):
                content.unlink()

    def clear(self) -> None:
        """Forget all content."""
        self._memory.clear()
        if self.mode == "disk" and self._dir is not None:
            shutil.rmtree(self._dir / "blobs", ignore_errors=True)
            (self._dir / "blobs").mkdir(parents=True, exist_ok=True)

    def _blob_path(self, file_uuid: str) -> Path:
        assert self._dir is not None
        return self._dir / "blobs" / file_uuid
