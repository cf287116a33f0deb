"""Live change hints for one folder root: run watchfiles (inotify, or polling where inotify
cannot work) and turn each batch of filesystem events into the set of root-relative paths
that need a look. Events are hints only; this module never decides an upload or a delete,
the consumer re-stats every path it is given."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, cast

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import structlog
import watchfiles

from syncd.errors import ConfigError

if TYPE_CHECKING:
    from syncd.local.filters import SyncdFilter

__all__ = ["coalesce", "is_watch_limit_error", "needs_polling", "watch_folder"]

log = structlog.get_logger(__name__)

# Filesystems where changes made on another host (or by the VM host) never reach this
# kernel's inotify. fuseblk (ntfs-3g on a local disk) is not listed: every change to it is local.
_REMOTE_FS = re.compile(
    r"nfs4?|cifs|smb3|smbfs|ncpfs|ceph|9p|afs|coda|glusterfs|lustre|gpfs|beegfs|orangefs|ocfs2"
    r"|gfs2|davfs2?|vboxsf|vmhgfs|virtiofs|drvfs|fuse(?:\..+)?"
)
_OCTAL = re.compile(r"\\([0-7]{3})")  # the kernel escapes space, tab, newline, backslash
_LIMIT_HINT = (
    "inotify limit reached (fs.inotify.max_user_watches: one watch per directory, or "
    "fs.inotify.max_user_instances); raise it with `sysctl fs.inotify.max_user_watches=524288` "
    "and persist it in /etc/sysctl.d/"
)
# What notify 8 (inside watchfiles 1.x) says: ENOSPC from inotify_add_watch becomes
# "OS file watch limit reached.", EMFILE from inotify_init1 stays an io error.
_LIMIT_TEXT = re.compile(
    r"os file watch limit reached|max_user_(?:watches|instances)|no space left on device"
    r"|too many open files|\(os error (?:24|28)\)",
    re.IGNORECASE,
)


def coalesce(
    changes: Iterable[tuple[watchfiles.Change, str]], root: str, filt: SyncdFilter
) -> set[str]:
    """Reduce one watchfiles batch to the root-relative POSIX paths that need a look.

    The change kind is deliberately unused: a batch is an unordered set that can hold both
    `added` and `deleted` for one operation (watchfiles #115), and renames arrive as a
    `deleted` plus an `added`. A hint may name a directory; a renamed or moved-in directory
    reports only its own name, so the consumer must scan below it.

    Args:
        changes: one batch from `watchfiles.awatch`.
        root: the folder root as given to watchfiles; it must be `filt`'s root.
        filt: the folder's filter. A deleted path cannot be stat-ed, so a path is dropped
            only when `path_ignored` rejects it both as a file and as a directory (the
            consumer re-checks with the real type). Paths outside the root, the root
            itself and names that are not UTF-8 are dropped too.

    Raises:
        ValueError: `filt` belongs to another root.
    """
    if filt.relative(os.path.join(root, "_")) != "_":
        raise ValueError(f"{filt!r} is not the filter of root {root!r}")
    hints: set[str] = set()
    for _change, path in changes:
        rel = filt.relative(path)
        if rel is None or rel in hints:
            continue
        if filt.path_ignored(rel, False) and filt.path_ignored(rel, True):
            continue
        hints.add(rel)
    return hints


def needs_polling(
    root: Path, mounts: str | os.PathLike[str] = "/proc/self/mountinfo"
) -> str | None:
    """Why `root` must be polled (it is on a network or FUSE filesystem), or None.

    The mount is the longest mount point that is a prefix of the resolved root; of two equal
    ones the later line wins (it is mounted on top). Unreadable mount tables give None.

    Args:
        root: the folder root.
        mounts: a `/proc/self/mountinfo` or `/proc/mounts` style file.
    """
    try:
        text = Path(mounts).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    target = str(root.resolve())
    best: tuple[str, str] | None = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 10 and fields[0].isdigit() and "-" in fields[6:]:
            point, fstype = fields[4], fields[fields.index("-", 6) + 1]  # mountinfo
        elif len(fields) >= 3:
            point, fstype = fields[1], fields[2]  # /proc/mounts
        else:
            continue
        point = _OCTAL.sub(lambda m: chr(int(m[1], 8)), point)
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    if best is None:
        return None
    point, fstype = best
    if _REMOTE_FS.fullmatch(fstype):
        return f"{fstype} filesystem at {point}: inotify does not see changes made elsewhere"
    return None


def is_watch_limit_error(exc: BaseException) -> bool:
    """Whether starting the native watcher failed on an inotify limit (watches or instances).

    Only meaningful for errors raised while the watcher is being created. Paths quoted in
    notify's message (after " about [") are not searched, so a folder name cannot match.
    """
    if not isinstance(exc, OSError | RuntimeError):
        return False
    if isinstance(exc, FileNotFoundError | PermissionError):
        return False
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EMFILE):
        return True
    return _LIMIT_TEXT.search(str(exc).split(" about [", 1)[0]) is not None


class _Gate:
    """The `stop_event` handed to watchfiles, which only calls `is_set()` and `set()`.

    `RustNotify.watch` calls `is_set()` from its worker thread on every step, and only once
    the watcher exists with all its watches added: the first call proves the watcher is
    armed (and events from then on are buffered in Rust even between batches). `set()` is
    what `awatch` calls when cancelled; it halts this watcher without touching `stop`.
    """

    def __init__(self, stop: anyio.Event) -> None:
        self.stop = stop
        self.halt = False
        self.armed = False
        self.error: Exception | None = None
        self.ready = anyio.Event()  # armed, or the watcher ended before it could be
        self.finished = anyio.Event()
        self._token = anyio.lowlevel.current_token()

    def is_set(self) -> bool:
        if not self.armed:
            self.armed = True
            anyio.from_thread.run_sync(self.ready.set, token=self._token)
        return self.halt or self.stop.is_set()

    def set(self) -> None:
        self.halt = True


async def watch_folder(
    root: Path,
    filt: SyncdFilter,
    sink: Callable[[set[str]], None],
    *,
    stop: anyio.Event,
    force_polling: bool = False,
    debounce_ms: int = 50,
    step_ms: int = 20,
    poll_delay_ms: int = 300,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Watch `root` recursively and call `sink` with each non-empty set of hints.

    `task_status.started()` comes once the watches exist, so a change made right after
    `await tg.start(watch_folder, ...)` is reported. Returns within about `step_ms` once
    `stop` is set, and as fast when cancelled; returns too when the root itself is
    deleted. Polls instead of using inotify when
    `force_polling` is set, when the root is on a network or FUSE filesystem, or when an
    inotify limit is reached (each logged as `watch_polling`).

    Args:
        root: the folder root (must exist).
        filt: the folder's filter, also used as the watchfiles filter.
        sink: called in the event loop with each batch's hints (see `coalesce`).
        stop: set it to end the watch.
        force_polling: poll without trying inotify.
        debounce_ms: longest time to group changes into one batch.
        step_ms: a batch is yielded after this long without new changes.
        poll_delay_ms: time between two polls of the tree, when polling.
        task_status: anyio start protocol.

    Raises:
        FileNotFoundError: `root` does not exist.
        ConfigError: a directory under `root` cannot be read.
        ValueError: `filt` belongs to another root.
        Exception: whatever the watcher or `sink` raised.
    """
    coalesce((), str(root), filt)  # a filter of another root fails here, not at the first event
    bound = log.bind(root=str(root))
    polling = force_polling
    if not polling and (reason := needs_polling(root)) is not None:
        bound.warning("watch_polling", reason=reason)
        polling = True
    gate = _Gate(stop)

    async def run(polling: bool) -> None:
        batches = watchfiles.awatch(
            root,
            watch_filter=filt,
            debounce=debounce_ms,
            step=step_ms,
            stop_event=cast("anyio.Event", gate),
            # No Rust timeout: `gate` is checked every step anyway, and a timeout return
            # clears pending changes, which can drop an event that lands at that instant.
            rust_timeout=0,
            yield_on_timeout=False,
            force_polling=polling,
            poll_delay_ms=poll_delay_ms,
            recursive=True,
            # True would also swallow the watch-limit error (watchfiles ignores every error
            # while adding watches then), leaving the folder silently half watched.
            ignore_permission_denied=False,
        )
        async with aclosing(batches):
            async for batch in batches:
                hints = coalesce(batch, str(root), filt)
                if hints:
                    sink(hints)
                # The filter lets only one event outside the root through: its deletion.
                if any(filt.relative(p) is None for _, p in batch):
                    # The root's own watch is gone (a root created again, even with the
                    # same inode, is not watched): end, so the caller can arm again.
                    bound.warning("watch_root_deleted")
                    return

    async def pump() -> None:
        try:
            try:
                await run(polling)
            except PermissionError as exc:
                if gate.armed:
                    raise
                # watchfiles cannot skip one unreadable directory: told to ignore it, it
                # silently stops adding watches there (half the tree unwatched), and its
                # poller fails outright. So this is the user's to fix, and said plainly.
                raise ConfigError(
                    f"{root}: cannot watch it: {exc}; make every directory under it readable"
                    " by syncd's user (README, 'Running as a service': setfacl -R ...)"
                ) from None
            except Exception as exc:
                if polling or gate.armed or not is_watch_limit_error(exc):
                    raise
                bound.warning("watch_polling", reason=_LIMIT_HINT, error=str(exc))
                await run(True)
        # Re-raised by watch_folder itself, so callers get it and not an ExceptionGroup.
        except Exception as exc:  # noqa: BLE001
            gate.error = exc
        finally:
            gate.ready.set()
            gate.finished.set()

    async with anyio.create_task_group() as tg:
        # started() must be called from this task, so the watcher runs in a child task.
        tg.start_soon(pump, name=f"syncd watch {root}")
        try:
            await gate.ready.wait()
            if gate.armed and gate.error is None:
                task_status.started()
            await gate.finished.wait()
        finally:
            # On cancellation the watch thread cannot be interrupted; this makes it return
            # at its next step instead of never (there is no Rust timeout).
            gate.halt = True
    if gate.error is not None:
        raise gate.error
