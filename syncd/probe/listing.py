"""The checks of `syncd probe` that read file listings of its scratch folder: how long a
new upload takes to show, whether listings carry `hash.sha1`, whether `sort` is honoured,
what `q` matches (substring, whole words, `info.name` too, or nothing: docs/dam-api.md
§12.19), and how `updated_after` compares (§12.21).

Listings may lag behind writes, so every check here runs on a listing that already shows
every write the probe made (`settle`), and every poll is bounded by `wait_s`.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

import anyio

from syncd.dam.client import DamClient
from syncd.dam.wire import iso, parse_time
from syncd.probe.scratch import ScratchFolder

__all__ = ["WAIT_S", "ListingChecks"]

WAIT_S: Final = 30.0
"""The longest the probe polls a listing for its own writes."""

_WORD = re.compile(r"[0-9A-Za-z]+")

Items = list[dict[str, Any]]


class ListingChecks(ScratchFolder):
    """The listing checks, on the scratch folder of one probe run.

    Args:
        dam: an open client.
        path: the scratch folder.
        where: the DAM's address, for the report.
        wait_s: the longest a listing is polled for the probe's own writes.
    """

    def __init__(self, dam: DamClient, path: str, where: str, *, wait_s: float) -> None:
        super().__init__(dam, path, where)
        self.wait_s = wait_s
        self.items: Items = []  # the probe's files in a listing that shows every write

    async def search(self, **params: object) -> set[str]:
        """The uuids a listing of the scratch folder with `params` returns."""
        return {i["uuid"] for i in await self.list(**params)}

    async def poll(self, done: Callable[[Items], bool]) -> tuple[Items, float] | None:
        """List the scratch folder until `done(items)`; the items and the seconds waited
        (0 when the first listing had it), or None after `wait_s`."""
        start, delay, first = anyio.current_time(), 0.05, True
        while True:
            items = await self.list()
            waited = anyio.current_time() - start
            if done(items):
                return items, 0.0 if first else waited
            if waited >= self.wait_s:
                return None
            first = False
            # Short at first, so a small lag is measured finely; then easier on the DAM.
            await anyio.sleep(delay)
            delay = min(delay * 1.25, 1.0)

    async def measure_lag(self, uuid: str) -> None:
        """Poll listings for a file just uploaded: `listing_lag_s` and `listing_sha1`."""
        polled = await self.poll(lambda items: any(i["uuid"] == uuid for i in items))
        if polled is None:
            self.found.failures.append(
                f"listing lag: the upload did not show in a listing within {self.wait_s:g} s"
            )
            return
        items, waited = polled
        # Rounded up to 0.1 s (round() first drops float noise such as 0.30000000004).
        self.found.listing_lag_s = math.ceil(round(waited * 10, 6)) / 10
        item = next(i for i in items if i["uuid"] == uuid)
        hashes = item.get("hash")
        self.found.listing_sha1 = isinstance(hashes, dict) and bool(hashes.get("sha1"))

    async def settle(self) -> None:
        """Wait until a listing shows every write so far (each live file under its current
        name, no deleted one), so the checks below read the project as it is."""

        def current(items: Items) -> bool:
            listed = {i["uuid"]: i.get("name") for i in items}
            return not (self.gone & listed.keys()) and all(
                u in listed and (f.name is None or listed[u] == f.name)
                for u, f in self.files.items()
                if f.sure
            )

        polled = await self.poll(current)
        if polled is None:
            self.note(f"listings did not show every write within {self.wait_s:g} s")
        items = polled[0] if polled is not None else await self.list()
        self.items = [i for i in items if i["uuid"] in self.files]

    async def check_sort(self) -> None:
        """`sort_honoured`: created_at ascending and descending come in those orders."""
        asc = await self.list(sort="created_at:asc")
        desc = await self.list(sort="created_at:desc")
        asc_t, desc_t = (
            [t for i in items if (t := parse_time(i.get("created_at"))) is not None]
            for items in (asc, desc)
        )
        if len(set(asc_t)) < 2:
            self.note("sort_honoured: not observed: too few files with distinct created_at")
            return
        # A DAM that ignores sort answers both in its one default order.
        self.found.sort_honoured = (
            asc_t == sorted(asc_t)
            and desc_t == sorted(desc_t, reverse=True)
            and [i["uuid"] for i in asc] != [i["uuid"] for i in desc]
        )

    async def check_q(self) -> None:
        """`q_mode`, then `q_matches_original_name`."""
        if await self.search(q=f"zq{secrets.token_hex(6)}") & self.files.keys():
            self.found.q_mode = "ignored"
            self.note("q_matches_original_name: not observable: q is ignored")
            return
        words = [
            (w, i["uuid"]) for i in self.items for w in _WORD.findall(str(i.get("name") or ""))
        ]
        if not words:
            self.note("q_mode: not observed: no listed file has a name")
            return
        word, uuid = max(words, key=lambda pair: len(pair[0]))
        if not await self._found_by(word, uuid):
            self.note("q_mode: not observed: q found no file, even by a word of its name")
        elif uuid in await self.search(q=word[2:-2]):  # from the middle of a word
            self.found.q_mode = "substring"
        else:
            self.found.q_mode = "words"
        await self._check_q_original()

    async def _found_by(self, q: str, uuid: str) -> bool:
        # A search index may trail the plain listing: give it time to show the file.
        start = anyio.current_time()
        while uuid not in await self.search(q=q):
            if anyio.current_time() - start >= self.wait_s:
                return False
            await anyio.sleep(0.5)
        return True

    async def _check_q_original(self) -> None:
        """Whether q finds a file by a part of its `info.name` that its stored name lacks."""
        for item in self.items:
            name = str(item.get("name", "")).casefold()
            info = item.get("info")
            sent = info.get("name") if isinstance(info, dict) else None
            if not isinstance(sent, str) or sent.casefold() in (name, ""):
                continue
            if self.found.q_mode == "substring" and sent.casefold() not in name:
                q = sent
            else:
                fresh = [w for w in _WORD.findall(sent) if w.casefold() not in name]
                if not fresh:
                    continue
                q = max(fresh, key=len)
            self.found.q_matches_original_name = item["uuid"] in await self.search(q=q)
            return
        self.note(
            "q_matches_original_name: not observable: no file's info.name has a part its"
            " stored name lacks (keep naming, and a rename rewrites info.name)"
        )

    async def check_updated_after(self) -> None:
        """`updated_after_honoured`, then `updated_after_granularity`."""
        modified = {i["uuid"]: t for i in self.items if (t := parse_time(i.get("modified_at")))}
        if not modified:
            self.note("updated_after: not observed: listings carry no modified_at")
            return
        hour = timedelta(hours=1)
        later = await self.search(updated_after=iso(max(modified.values()) + hour))
        earlier = await self.search(updated_after=iso(min(modified.values()) - hour))
        if not earlier & modified.keys():
            self.note("updated_after: an hour before the files changed, it found none of them")
            return
        self.found.updated_after_honoured = not later & modified.keys()
        if not self.found.updated_after_honoured:
            return
        # A millisecond before a change, in the same second: only an exact compare sees it.
        exact = [(u, t) for u, t in modified.items() if t.microsecond >= 1000]
        if not exact:
            self.note("updated_after_granularity: not observed: modified_at has no milliseconds")
            return
        uuid, when = exact[0]
        hits = await self.search(updated_after=iso(when - timedelta(milliseconds=1)))
        self.found.updated_after_granularity = "exact" if uuid in hits else "second"
