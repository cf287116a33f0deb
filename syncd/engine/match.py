"""Matching DAM assets to local paths, identity first. Pure decisions, no I/O.

The uuid is an asset's identity and `folder + name` is its path (docs/dam-api.md,
"Identity"). An asset whose uuid the state knows *is* that state row, whatever its `name`
or `info.name` says. Names matter only for assets syncd does not know: under a naming
rule that changes names (a random suffix, a random name), the name sent at upload
(`info.name`) is the hint that ties such an asset to a local path. `info.name` is never
taken as a path on its own: a rename may leave it as the upload-time name.

Also here: which listed assets are strays of syncd's own, left by an upload whose outcome
was unknown (the connection dropped after the DAM committed it) and then sent again.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncd.dam.wire import parse_time
from syncd.model import Known, RemoteFile, Unsure

__all__ = [
    "RemoteView",
    "derived_name",
    "fits",
    "logical_path",
    "name_matches",
    "temporary_name",
    "unsure_matches",
    "view",
]

# A random suffix as projects add it (`test-image-7brqJR8K`, docs/dam-api.md §2.3): letters
# and digits after a dash. The length is not documented; a range covers the variants.
_SUFFIX = re.compile(r"[A-Za-z0-9]{4,16}")
# A random name: 32 hex digits, or a uuid.
_RANDOM = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
# The temporary name syncd uploads a replacement under when the project refuses same
# names (`syncd.engine.upload`): `a.syncd-1234abcd.txt` for `a.txt`.
_TEMP = re.compile(r"(?P<stem>.+?)\.syncd-[0-9a-f]{8}(?P<ext>\.[^.]*)?")
# The DAM's clock is read from `Date` headers (whole seconds) and listings may compare
# whole seconds too: a window is widened by this much on each side.
WINDOW_MARGIN = timedelta(seconds=2)


def _stem(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def derived_name(stored: str, original: str) -> bool:
    """Whether a project's naming rule could have stored an upload named `original` as
    `stored`: the same name, the original's stem plus `-` and a random suffix, or a
    random name. The extension may differ (a project can convert formats)."""
    if stored == original:
        return True
    s_stem, o_stem = _stem(stored), _stem(original)
    if s_stem.startswith(o_stem + "-") and _SUFFIX.fullmatch(s_stem[len(o_stem) + 1 :]):
        return True
    return _RANDOM.fullmatch(s_stem) is not None


def temporary_name(name: str) -> str:
    """A fresh temporary name for an asset that is to become `name` (an upload aside
    under a "refuse same name" policy, a name freed during a swap); `_untemp` reads it
    back."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem or ext}.syncd-{secrets.token_hex(4)}{dot}{ext if stem else ''}"


def _untemp(name: str) -> str | None:
    """The name a syncd temporary name stands for, or None."""
    m = _TEMP.fullmatch(name)
    return None if m is None else m["stem"] + (m["ext"] or "")


def name_matches(r: RemoteFile, name: str) -> bool:
    """Whether asset `r` may be an upload that was sent as `name`."""
    return r.name == name or r.info_name == name or derived_name(r.name, name)


def logical_path(r: RemoteFile) -> str:
    """The local path an asset syncd does not know stands for: its own path, unless the
    naming rule changed the name sent at upload; then the path under that name."""
    sent = r.info_name
    if not (sent and sent != r.name and "/" not in sent and derived_name(r.name, sent)):
        # Left under a temporary name by a replacement that did not finish.
        sent = _untemp(r.name)
    if sent:
        head = r.path.rpartition("/")[0]
        return f"{head}/{sent}" if head else sent
    return r.path


def fits(r: RemoteFile, path: str) -> bool:
    """Whether asset `r` sits where local `path` belongs: in its folder, under its name or
    a name the naming rule made of it."""
    head, _, name = path.rpartition("/")
    if r.path.rpartition("/")[0] != head:
        return False
    if r.name == name:
        return True
    return derived_name(r.name, name) and r.info_name in (None, name)


@dataclass(slots=True)
class RemoteView:
    """A DAM listing as the planner sees it.

    Attributes:
        own: local path → the asset the state says is its (by uuid), wherever it sits.
        relocated: local path → the state path whose asset it now takes: the DAM already
            holds that asset at this path (a rename or move whose state write was lost).
        unknown: logical path → assets no state row knows, oldest first.
        leftover: (state path, asset) of syncd's assets that no local path takes.
        uuids: every listed uuid.
    """

    own: dict[str, RemoteFile] = field(default_factory=dict)
    relocated: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, list[RemoteFile]] = field(default_factory=dict)
    leftover: list[tuple[str, RemoteFile]] = field(default_factory=list)
    uuids: frozenset[str] = frozenset()

    def where(self) -> dict[str, str]:
        """uuid → path on the DAM (relative to the remote root) of every listed asset."""
        out = {r.uuid: r.path for rs in self.unknown.values() for r in rs}
        out.update((r.uuid, r.path) for r in self.own.values())
        out.update((r.uuid, r.path) for _, r in self.leftover)
        return out


def view(
    listing: Iterable[RemoteFile], known: Mapping[str, Known], local: Collection[str]
) -> RemoteView:
    """Match a folder's DAM listing to its state rows and local paths.

    Args:
        listing: every asset below the folder's remote root.
        known: every state row of the folder.
        local: the local paths found by the scan.
    """
    by_uuid: dict[str, RemoteFile] = {}
    for r in listing:
        by_uuid.setdefault(r.uuid, r)
    out = RemoteView(uuids=frozenset(by_uuid))
    claimed: set[str] = set()
    for path in local:
        k = known.get(path)
        mine = by_uuid.get(k.uuid) if k is not None else None
        if mine is not None:
            out.own[path] = mine
            claimed.add(mine.uuid)
    known_uuids = {k.uuid for k in known.values()}
    # A state row for a path that is gone, whose asset already sits at a local path that
    # has no asset of its own: the DAM side of a rename landed, the state write did not.
    for path, k in known.items():
        moved = by_uuid.get(k.uuid)
        if path in local or moved is None or moved.uuid in claimed:
            continue
        for at in dict.fromkeys((moved.path, logical_path(moved))):
            if at in local and at not in out.own and fits(moved, at):
                out.own[at] = moved
                out.relocated[at] = path
                claimed.add(moved.uuid)
                break
    for path, k in known.items():
        left = by_uuid.get(k.uuid)
        if path not in local and left is not None and left.uuid not in claimed:
            out.leftover.append((path, left))
    for r in by_uuid.values():
        if r.uuid not in known_uuids:
            out.unknown.setdefault(logical_path(r), []).append(r)
    return out


def unsure_matches(
    entry: Unsure, listing: Iterable[RemoteFile], known_uuids: Collection[str]
) -> list[RemoteFile]:
    """The listed assets that syncd can prove an unknown-outcome upload created: in its
    folder, under its name (or a name the naming rule made of it), with its content,
    created inside its time window, and not known to the state. Oldest first. An asset
    without a sha1 or a creation time proves nothing and never matches."""
    start, end = parse_time(entry.window_start), parse_time(entry.window_end)
    if start is None or end is None:
        return []
    start, end = start - WINDOW_MARGIN, end + WINDOW_MARGIN
    folder = "/" + entry.folder.strip("/")
    found: list[tuple[datetime, RemoteFile]] = []
    for r in listing:
        if r.uuid in known_uuids or r.sha1 != entry.sha1:
            continue
        if "/" + r.folder.strip("/") != folder or not name_matches(r, entry.name):
            continue
        created = parse_time(r.created_at)
        if created is not None and start <= created <= end:
            found.append((created, r))
    found.sort(key=lambda pair: pair[0])
    return [r for _, r in found]
