"""Paging through a DAM listing without trusting the DAM to end it. Part of the DAM client:
`syncd.dam.client.DamClient.list_files` sends the requests, `Pages` reads each page and decides
when the listing is over (docs/dam-api.md §3.1).

A listing ends with its first short page. A DAM that keeps serving full pages, the same
files again or new ones forever, would otherwise hold syncd in a request loop with memory
growing without bound, so a listing also stops, as a `TransientDamError` (the folder's run
fails; nothing is deleted on the strength of it), when

* a full page adds no file not listed before (the DAM ignores `offset`, or loops), or
* it runs past the exact count the DAM reported on its first page by more than a tenth
  (and at least a page: files added while listing, drift §12.7), or past `MAX_LISTED`
  files in any case.

A malformed item (no uuid string, a name or folder of a wrong type) is skipped with one
warning per page rather than failing the listing: such an item cannot be addressed by
uuid, so syncd can neither delete nor adopt it, and a known asset missing from a listing
costs at most an upload again, never a delete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from syncd.dam.wire import exact_count, remote_file
from syncd.errors import DamError, TransientDamError
from syncd.model import RemoteFile

__all__ = ["MAX_LISTED", "Pages", "files_of"]

log = structlog.get_logger(__name__)

MAX_LISTED = 500_000
"""The most files one listing may return: 5 times the 100,000-file folders syncd is
measured with (README). It bounds what a DAM that reports no exact count (or lies about
it) can make syncd hold: at about 0.7 KiB a listed file, some 350 MiB, well inside the
unit's `MemoryMax=1G`."""


def files_of(body: Mapping[str, Any], what: str) -> list[Any]:
    """The `files` of a listing page (none when it has no `files`).

    Raises:
        TransientDamError: `files` is not a list; the caller retries the page.
    """
    items = body.get("files")
    if items is None:
        return []
    if not isinstance(items, list):
        raise TransientDamError(
            f"{what}: malformed response: files is {type(items).__name__}, not a list"
        )
    return items


class Pages:
    """One listing in progress: the uuids seen, where the next page starts, and whether the
    last page has come.

    Args:
        folder: the listed DAM folder; files outside it are ignored.
        page: the page size asked for; a shorter page is the last.
    """

    def __init__(self, folder: str, page: int) -> None:
        self.folder = folder
        self.page = page
        self.offset = 0
        self.done = False
        self._seen: set[str] = set()
        self._reported: int | None = None  # the first exact count the DAM gave
        self._bound = MAX_LISTED

    def take(self, body: Mapping[str, Any], what: str) -> list[RemoteFile]:
        """The files of one page that were not listed before; sets `done` after the last.

        Raises:
            TransientDamError: `files` is not a list, or the listing does not end.
        """
        items = files_of(body, what)
        fresh = self._fresh(items, what)
        if len(items) < self.page:
            self.done = True
            return fresh
        if not fresh:
            raise TransientDamError(
                f"{what}: the DAM's listing does not end: a full page of {len(items)} files"
                " adds none that was not listed before"
            )
        self.offset += len(items)
        if self._reported is None and (count := exact_count(body)) is not None:
            self._reported = count
            self._bound = min(MAX_LISTED, count + max(self.page, count // 10))
        if self.offset > self._bound:
            past = (
                f"far more than the {self._reported} it reported"
                if self._reported is not None and self._bound < MAX_LISTED
                else f"more than syncd's limit of {self._bound} per listing"
            )
            raise TransientDamError(
                f"{what}: the DAM's listing does not end: {self.offset} files listed, {past}"
            )
        return fresh

    def _fresh(self, items: list[Any], what: str) -> list[RemoteFile]:
        fresh: list[RemoteFile] = []
        skipped = 0
        reason = ""
        for item in items:
            try:
                found = remote_file(item, self.folder)
            except DamError as exc:
                skipped += 1
                reason = reason or exc.message
                continue
            if found is not None and found.uuid not in self._seen:
                self._seen.add(found.uuid)
                fresh.append(found)
        if skipped:
            log.warning("listed_files_skipped", request=what, skipped=skipped, reason=reason)
        return fresh
