"""The emulator as one object (store, options, faults, statistics) and `serve`, which runs it
as a real HTTP (or, given an `ssl.SSLContext`, HTTPS) server on loopback for the duration of
an `async with` block."""

from __future__ import annotations

import random
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from syncd.emulator.blobs import Blobs, ContentMode
from syncd.emulator.faults import Faults
from syncd.emulator.model import StoredFile
from syncd.emulator.options import Options
from syncd.emulator.shapes import iso_ms
from syncd.emulator.store import Store

__all__ = ["Emulator", "FileRecord", "Stats", "serve"]


@dataclass(slots=True)
class Stats:
    """What the emulator has seen since start (or the last reset).

    Attributes:
        requests: API requests by `"METHOD /route/pattern"`, e.g. `"POST /{token}/v4/files"`.
        statuses: API replies by HTTP status.
        rate_limited: 429 replies.
        uploads_committed: files stored by uploads (including ones whose reply was dropped).
        faults: injected faults by kind (`server_error`, `error_body`, `reset_before_commit`,
            `reset_after_commit`).
        first, answered: monotonic seconds of the first API request's arrival and of the
            last reply, so a benchmark can time the requests apart from process start-up.
    """

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    uploads_committed: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    answered: float | None = None

    def arrived(self, now: float) -> None:
        """An API request arrived at `now`."""
        if self.first is None:
            self.first = now

    def as_dict(self) -> dict[str, Any]:
        """Return the statistics as a JSON-ready dict (status keys become strings)."""
        return {
            "requests": dict(self.requests),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "rate_limited": self.rate_limited,
            "uploads_committed": self.uploads_committed,
            "faults": dict(self.faults),
            "first_request_s": self.first,
            "last_reply_s": self.answered,
        }


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file as tests see it.

    `path` is the full DAM path under the stored name; `original_path` uses the original
    name (`info.name`), and `client_path` the name the client last asked for (the upload's,
    then each rename's): where syncd meant to put the file, whatever the DAM did with it.
    """

    uuid: str
    folder: str
    name: str
    original_name: str
    client_name: str
    path: str
    original_path: str
    client_path: str
    sha1: str
    size: int
    version: int
    created_at: str
    modified_at: str

    @classmethod
    def of(cls, f: StoredFile) -> FileRecord:
        """Build the record of a stored file."""
        folder = f.folder.path
        return cls(
            uuid=f.uuid,
            folder=folder,
            name=f.name,
            original_name=f.original_name,
            client_name=f.client_name,
            path=f.path,
            original_path=folder.rstrip("/") + "/" + f.original_name,
            client_path=folder.rstrip("/") + "/" + f.client_name,
            sha1=f.sha1,
            size=f.size,
            version=f.version,
            created_at=iso_ms(f.created_ms),
            modified_at=iso_ms(f.modified_ms),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict."""
        return asdict(self)


class Emulator:
    """An emulated DAM project: its store, live options, fault injector and statistics.

    Args:
        token: the project token in API paths.
        key: the value `X-Filerobot-Key` must carry.
        extra_keys: more keys the project accepts (as if made for other hosts).
        options: policies and faults; defaults to `Options()`.
        content: keep content in `memory`, on `disk` under `data_dir`, or `none`.
        data_dir: the directory for `disk` content.
        clock: wall-clock seconds for timestamps, injectable for tests.
    """

    def __init__(
        self,
        *,
        token: str = "demo",
        key: str = "demo",
        extra_keys: Sequence[str] = (),
        options: Options | None = None,
        content: ContentMode = "memory",
        data_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.key = key
        self.extra_keys = frozenset(extra_keys)  # `key` may be rotated by assignment
        self.options = options or Options()
        self.rng = random.Random(self.options.seed)
        self.store = Store(self.options, Blobs(content, data_dir), rng=self.rng, clock=clock)
        self.faults = Faults(self.options, self.rng)
        self.stats = Stats()
        self.key_revoked = False
        # Set by `serve` once the socket is bound.
        self.url = ""

    @property
    def api_url(self) -> str:
        """The API base, `http://127.0.0.1:PORT/{token}/v4` (`https` when serving TLS)."""
        return f"{self.url}/{self.token}/v4"

    def revoke_key(self) -> None:
        """Revoke the key: from now on every API request gets 401 `KEY_EXPIRED`."""
        self.key_revoked = True

    def restore_key(self) -> None:
        """Undo `revoke_key`."""
        self.key_revoked = False

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Change options at runtime, all or none; a new `seed` reseeds the generator.

        Raises:
            ValueError: an unknown option or a bad value.
        """
        self.options.update(changes)
        if "seed" in changes:
            self.rng.seed(self.options.seed)

    def reset(self) -> None:
        """Forget all files, folders and statistics, and un-revoke the key; keep the options."""
        self.store.clear()
        self.stats = Stats()
        self.faults.refill()
        self.key_revoked = False

    def files(self) -> list[FileRecord]:
        """Return every stored file, oldest first."""
        return [FileRecord.of(f) for f in self.store.all_files()]

    def snapshot(self) -> dict[str, FileRecord]:
        """Return every stored file keyed by its full DAM path (stored name)."""
        return {record.path: record for record in self.files()}


@asynccontextmanager
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str = "demo",
    key: str = "demo",
    extra_keys: Sequence[str] = (),
    content: ContentMode = "memory",
    data_dir: Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> AsyncIterator[Emulator]:
    """Run an emulator on `host:port` for the duration of the block.

    Args:
        host: the address to bind; loopback by default.
        port: the port; 0 picks a free one (read it back from `emu.url`).
        token: the project token in API paths.
        key: the value `X-Filerobot-Key` must carry.
        extra_keys: more keys the project accepts (as if made for other hosts).
        content: keep content in `memory`, on `disk` under `data_dir`, or `none`.
        data_dir: the directory for `disk` content.
        ssl_context: serve HTTPS with this server context (its certificate chain loaded).
        **options: initial `Options` fields (`naming="suffix"`, `rate_limit=5`, ...).

    Yields:
        The running emulator, with `url` set (`https://...` with an `ssl_context`).
    """
    # Imported here: app imports this module for the Emulator type.
    from syncd.emulator.app import make_app

    emulator = Emulator(
        token=token,
        key=key,
        extra_keys=extra_keys,
        options=Options(**options),
        content=content,
        data_dir=data_dir,
    )
    # No access log: formatting a line per request would dominate CPU in benchmarks.
    runner = web.AppRunner(
        make_app(emulator), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        scheme = "https" if ssl_context is not None else "http"
        emulator.url = f"{scheme}://{shown}:{bound_port}"
        yield emulator
    finally:
        await runner.cleanup()
