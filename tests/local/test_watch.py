from __future__ import annotations

import errno
import shlex
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import watchfiles.main
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from structlog.testing import capture_logs
from watchfiles import Change
from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

from syncd.errors import ConfigError
from syncd.local.filters import SyncdFilter
from syncd.local.watch import coalesce, is_watch_limit_error, needs_polling, watch_folder

ROOT = "/srv/photos"
A, M, D = Change.added, Change.modified, Change.deleted


# ---------------------------------------------------------------------------- coalesce


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param([(A, "/srv/photos/a.jpg")], {"a.jpg"}, id="added"),
        pytest.param([(M, "/srv/photos/sub/b.png")], {"sub/b.png"}, id="modified-nested"),
        pytest.param([(D, "/srv/photos/c.txt")], {"c.txt"}, id="deleted"),
        pytest.param(
            [(A, "/srv/photos/a.jpg"), (M, "/srv/photos/a.jpg"), (D, "/srv/photos/a.jpg")],
            {"a.jpg"},
            id="duplicates-any-kind",
        ),
        pytest.param(
            [(D, "/srv/photos/old.jpg"), (A, "/srv/photos/new.jpg")],
            {"old.jpg", "new.jpg"},
            id="rename-both-names",
        ),
        pytest.param([(A, "/srv/photos/dir")], {"dir"}, id="directory"),
        pytest.param([(A, "/srv/photos/.x.swp"), (A, "/srv/photos/x")], {"x"}, id="vim-swap"),
        pytest.param([(A, "/srv/photos/a.part"), (M, "/srv/photos/a.part")], set(), id="part"),
        pytest.param([(M, "/srv/photos/.git/index")], set(), id="git-dir-contents"),
        pytest.param([(A, "/srv/photos/.git")], set(), id="git-dir-itself"),
        pytest.param([(A, "/srv/photos/sub/.DS_Store")], set(), id="os-clutter"),
        pytest.param([(A, "/srv/photos/~$report.docx")], set(), id="office-lock"),
        pytest.param([(A, "/srv/photos/x.psd"), (A, "/srv/photos/y.jpg")], {"y.jpg"}, id="user"),
        pytest.param([(A, "/srv/photos/cache/a.jpg")], set(), id="user-dir-excluded"),
        # `cache/` is a directory pattern: a deleted *file* named cache might be one
        pytest.param([(D, "/srv/photos/cache")], {"cache"}, id="dir-pattern-unknown-type"),
        pytest.param([(A, "/srv/photos/keep.psd")], {"keep.psd"}, id="user-reinclude"),
        pytest.param([(A, "/srv/photos2/a.jpg")], set(), id="sibling-prefix-outside"),
        pytest.param([(A, "/srv/a.jpg"), (M, "/etc/passwd")], set(), id="outside"),
        pytest.param([(M, "/srv/photos/../a.jpg")], set(), id="dotdot-outside"),
        pytest.param([(M, "/srv/photos"), (M, "/srv/photos/")], set(), id="root-itself"),
        pytest.param(
            [
                (A, "/srv/photos/.a.txt.tmp123"),
                (D, "/srv/photos/.a.txt.tmp123"),
                (A, "/srv/photos/a.txt"),
            ],
            {"a.txt"},
            id="atomic-save-rsync-shape",
        ),
        pytest.param(
            [
                (A, "/srv/photos/a.txt___jb_tmp___"),
                (D, "/srv/photos/a.txt"),
                (A, "/srv/photos/a.txt"),
            ],
            {"a.txt"},
            id="atomic-save-jetbrains",
        ),
        # not a built-in pattern: it stays a hint and the consumer's re-stat finds it gone
        pytest.param(
            [(A, "/srv/photos/.goutputstream-Q1W2E3"), (D, "/srv/photos/.goutputstream-Q1W2E3")],
            {".goutputstream-Q1W2E3"},
            id="atomic-save-gedit",
        ),
        pytest.param([], set(), id="empty"),
    ],
)
def test_coalesce(changes: list[tuple[Change, str]], expected: set[str]) -> None:
    filt = SyncdFilter(Path(ROOT), ["*.psd", "!keep.psd", "cache/"])
    assert coalesce(changes, ROOT, filt) == expected


def test_coalesce_accepts_a_generator_and_posix_paths() -> None:
    filt = SyncdFilter(Path(ROOT))
    changes = ((A, f"{ROOT}/deep/er/f{i}.jpg") for i in range(3))
    assert coalesce(changes, ROOT, filt) == {"deep/er/f0.jpg", "deep/er/f1.jpg", "deep/er/f2.jpg"}


def test_coalesce_rejects_a_filter_of_another_root() -> None:
    with pytest.raises(ValueError, match="not the filter of root"):
        coalesce([], "/srv/other", SyncdFilter(Path(ROOT)))


# ---------------------------------------------------------------------------- needs_polling

MOUNTINFO = r"""
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /srv rw,relatime shared:7 - nfs4 nas:/export rw,vers=4.2
41 40 254:1 / /srv/local rw,relatime - ext4 /dev/vdb rw
42 27 0:51 / /mnt/my\040share rw - cifs //host/share rw
43 27 0:52 / /mnt/ssh rw,nosuid - fuse.sshfs me@host: rw
44 27 0:53 / /mnt/ntfs rw - fuseblk /dev/sdc1 rw
45 27 0:54 / /mnt/stack rw - ext4 /dev/vdc rw
46 45 0:55 / /mnt/stack rw - nfs nas:/stack rw
"""


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("/home/me/pics", None),
        ("/srv/photos", "nfs4 filesystem at /srv: inotify does not see changes made elsewhere"),
        ("/srv", "nfs4 filesystem at /srv"),
        ("/srv/local/photos", None),  # longest prefix wins: ext4 mounted inside the NFS share
        ("/srv/localx", "nfs4 filesystem at /srv"),  # a prefix of the name is not a parent
        ("/mnt/my share/x", "cifs filesystem at /mnt/my share"),  # \040 unescaped
        ("/mnt/ssh/a", "fuse.sshfs filesystem at /mnt/ssh"),
        ("/mnt/ntfs/a", None),  # fuseblk is a local disk
        ("/mnt/stack/a", "nfs filesystem at /mnt/stack"),  # the later mount is on top
    ],
)
def test_needs_polling_mountinfo(tmp_path: Path, root: str, expected: str | None) -> None:
    mounts = tmp_path / "mountinfo"
    mounts.write_text(MOUNTINFO.lstrip())
    reason = needs_polling(Path(root), mounts)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(expected)


def test_needs_polling_proc_mounts_format(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\nnas:/x /data nfs rw,vers=3 0 0\n")
    assert needs_polling(Path("/data/a"), mounts) == (
        "nfs filesystem at /data: inotify does not see changes made elsewhere"
    )
    assert needs_polling(Path("/home"), mounts) is None


def test_needs_polling_resolves_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    mounts = tmp_path / "mountinfo"
    mounts.write_text(f"1 0 0:1 / / rw - ext4 /dev/vda rw\n2 1 0:2 / {real} rw - nfs nas:/x rw\n")
    assert needs_polling(tmp_path / "link", mounts) is not None


def test_needs_polling_without_mount_table(tmp_path: Path) -> None:
    assert needs_polling(tmp_path, tmp_path / "missing") is None


# ---------------------------------------------------------------------------- is_watch_limit_error

# Texts captured from watchfiles 1.3 (notify 8) in a user namespace with lowered limits.
WATCHES = (
    'OS file watch limit reached. about ["/srv/photos/2024"] '
    '(Error { kind: MaxFilesWatch, paths: ["/srv/photos/2024"] })'
)
INSTANCES = "Error creating recommended watcher: Too many open files (os error 24)"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(WATCHES), True),
        (WatchfilesRustInternalError(INSTANCES), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EMFILE, "Too many open files"), True),
        (OSError('No space left on device (os error 28) about ["/srv/photos/a"]'), True),
        (RuntimeError("inotify_add_watch failed: check fs.inotify.max_user_watches"), True),
        (FileNotFoundError('No path was found. about ["/srv/photos"]'), False),
        (PermissionError('Permission denied (os error 13) about ["/srv/photos/x"]'), False),
        (OSError('Input/output error (os error 5) about ["/mnt/too many open files"]'), False),
        (WatchfilesRustInternalError("error in underlying watcher: Input/output error"), False),
        (RuntimeError("RustNotify watcher closed"), False),
        (ValueError("OS file watch limit reached."), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_is_watch_limit_error(exc: BaseException, expected: bool) -> None:
    assert is_watch_limit_error(exc) is expected


# ---------------------------------------------------------------------------- real filesystem


@dataclass
class Hints:
    """A sink that hands batches to the test through a memory stream."""

    send: MemoryObjectSendStream[set[str]]
    recv: MemoryObjectReceiveStream[set[str]]

    def __call__(self, paths: set[str]) -> None:
        assert paths, "watch_folder must not call the sink with an empty set"
        self.send.send_nowait(paths)

    async def wait_for(self, *paths: str) -> set[str]:
        """Collect batches until every path in `paths` was reported; return all collected."""
        wanted = set(paths)
        got: set[str] = set()
        with anyio.fail_after(5):
            async for batch in self.recv:
                got |= batch
                if wanted <= got:
                    break
        return got


@pytest.fixture
def hints() -> Iterator[Hints]:
    send, recv = anyio.create_memory_object_stream[set[str]](100)
    with send, recv:
        yield Hints(send, recv)


Starter = Callable[..., Any]


@pytest.fixture
async def watching(tmp_path: Path, hints: Hints) -> AsyncIterator[Starter]:
    """Start `watch_folder` on a tmp root; at teardown set `stop` and check it returns soon."""
    stop = anyio.Event()
    returned: list[anyio.Event] = []

    async def run(
        exclude: tuple[str, ...], kw: Any, done: anyio.Event, *, task_status: Any
    ) -> None:
        filt = SyncdFilter(tmp_path, exclude)
        await watch_folder(tmp_path, filt, hints, stop=stop, task_status=task_status, **kw)
        done.set()

    async with anyio.create_task_group() as tg:

        async def start(exclude: tuple[str, ...] = (), **kw: Any) -> None:
            returned.append(anyio.Event())
            await tg.start(run, exclude, kw, returned[-1])

        yield start
        stop.set()
        with anyio.fail_after(5):
            for done in returned:
                await done.wait()


def ignore(paths: set[str]) -> None:
    """A sink for tests that do not look at hints."""


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
async def test_write_right_after_start_is_seen(
    tmp_path: Path, watching: Starter, hints: Hints, polling: bool
) -> None:
    await watching(force_polling=polling, poll_delay_ms=50)
    (tmp_path / "first.jpg").write_bytes(b"x")  # no sleep between start and write
    assert await hints.wait_for("first.jpg") == {"first.jpg"}


async def test_file_lifecycle(tmp_path: Path, watching: Starter, hints: Hints) -> None:
    old = tmp_path / "old.txt"
    old.write_text("1")
    await watching()
    (tmp_path / "a.jpg").write_bytes(b"a")
    await hints.wait_for("a.jpg")
    with old.open("a") as f:
        f.write("2")
    await hints.wait_for("old.txt")
    old.rename(tmp_path / "new.txt")
    await hints.wait_for("old.txt", "new.txt")
    (tmp_path / "new.txt").unlink()
    assert await hints.wait_for("new.txt") == {"new.txt"}


async def test_directories(tmp_path: Path, watching: Starter, hints: Hints) -> None:
    await watching()
    (tmp_path / "d").mkdir()
    await hints.wait_for("d")
    # the new directory is watched too (wait for it first: notify adds the watch on its event)
    (tmp_path / "d" / "e.jpg").write_bytes(b"e")
    await hints.wait_for("d/e.jpg")
    (tmp_path / "d").rename(tmp_path / "d2")
    # a renamed directory reports only its two names, not the files inside
    await hints.wait_for("d", "d2")
    (tmp_path / "d2" / "f.jpg").write_bytes(b"f")
    await hints.wait_for("d2/f.jpg")
    shutil.rmtree(tmp_path / "d2")
    await hints.wait_for("d2/e.jpg", "d2/f.jpg", "d2")


async def test_symlinked_root(tmp_path: Path, hints: Hints) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    stop = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda **kw: watch_folder(link, SyncdFilter(link), hints, stop=stop, **kw)
            )
            (real / "a.jpg").write_bytes(b"a")
            assert await hints.wait_for("a.jpg") == {"a.jpg"}
            stop.set()


async def test_ignored_names_never_reach_the_sink(
    tmp_path: Path, watching: Starter, hints: Hints
) -> None:
    (tmp_path / ".git").mkdir()
    await watching(exclude=("*.psd",))
    (tmp_path / ".a.jpg.swp").write_bytes(b"s")
    (tmp_path / "b.jpg.part").write_bytes(b"p")
    (tmp_path / ".git" / "HEAD").write_text("ref")
    (tmp_path / "c.psd").write_bytes(b"p")
    (tmp_path / "b.jpg.part").rename(tmp_path / "b.jpg")
    # inotify reports in order, so everything above is in this batch or an earlier one
    (tmp_path / "sentinel").write_bytes(b"s")
    got = await hints.wait_for("b.jpg", "sentinel")
    assert got == {"b.jpg", "sentinel"}


@pytest.mark.parametrize("how", ["stop", "cancel"])
async def test_stop_or_cancel_returns_promptly(tmp_path: Path, how: str) -> None:
    stop = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda **kw: watch_folder(tmp_path, SyncdFilter(tmp_path), ignore, stop=stop, **kw)
            )
            before = anyio.current_time()
            if how == "stop":
                stop.set()
            else:
                tg.cancel_scope.cancel()
    assert anyio.current_time() - before < 1
    assert stop.is_set() is (how == "stop")  # a cancel leaves `stop` alone


async def test_missing_root_fails_start(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    # raised as itself, not wrapped in an ExceptionGroup from watch_folder's own task group
    with anyio.fail_after(5), pytest.raises(FileNotFoundError):
        await watch_folder(missing, SyncdFilter(missing), ignore, stop=anyio.Event())
    with anyio.fail_after(5), pytest.RaisesGroup(FileNotFoundError):
        await _start_then(missing, ignore, pytest.fail)


async def test_filter_of_another_root_fails_at_once(tmp_path: Path) -> None:
    with anyio.fail_after(5), pytest.raises(ValueError, match="not the filter of root"):
        await watch_folder(tmp_path, SyncdFilter(tmp_path / "x"), ignore, stop=anyio.Event())


async def test_sink_errors_propagate(tmp_path: Path) -> None:
    def sink(paths: set[str]) -> None:
        raise LookupError(paths)

    with anyio.fail_after(5), pytest.RaisesGroup(pytest.RaisesExc(LookupError, match="boom.jpg")):
        await _start_then(tmp_path, sink, lambda: (tmp_path / "boom.jpg").write_bytes(b"!"))


async def _start_then(
    root: Path, sink: Callable[[set[str]], None], act: Callable[[], object]
) -> None:
    """Run watch_folder on `root` until it returns, doing `act` once it is started."""
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda **kw: watch_folder(root, SyncdFilter(root), sink, stop=anyio.Event(), **kw)
        )
        act()


async def test_watch_limit_falls_back_to_polling(
    tmp_path: Path, watching: Starter, hints: Hints, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[bool] = []

    def rust_notify(paths: list[str], debug: bool, force_polling: bool, *args: Any) -> Any:
        modes.append(force_polling)
        if not force_polling:
            raise OSError(WATCHES)
        return RustNotify(paths, debug, force_polling, *args)

    monkeypatch.setattr(watchfiles.main, "RustNotify", rust_notify)
    with capture_logs() as logs:
        await watching(poll_delay_ms=50)
    assert modes == [False, True]
    assert [e["event"] for e in logs] == ["watch_polling"]
    assert logs[0]["log_level"] == "warning"
    assert "sysctl fs.inotify.max_user_watches=524288" in logs[0]["reason"]
    assert logs[0]["error"] == WATCHES
    (tmp_path / "a.jpg").write_bytes(b"a")
    await hints.wait_for("a.jpg")


async def test_an_unreadable_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rust_notify(paths: list[str], *args: Any) -> Any:
        # Tests run as root, who reads everything: the kernel's answer is simulated.
        raise PermissionError(f'Permission denied (os error 13) about ["{tmp_path}/x"]')

    monkeypatch.setattr(watchfiles.main, "RustNotify", rust_notify)
    with anyio.fail_after(5), pytest.raises(ConfigError) as caught:
        await watch_folder(tmp_path, SyncdFilter(tmp_path), ignore, stop=anyio.Event())
    assert str(caught.value).startswith(f"{tmp_path}: cannot watch it: Permission denied")
    assert f'about ["{tmp_path}/x"]' in str(caught.value)
    assert "readable by syncd's user" in str(caught.value)


async def test_other_start_errors_are_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rust_notify(*args: Any) -> Any:
        raise WatchfilesRustInternalError(
            "Error creating recommended watcher: Invalid argument (os error 22)"
        )

    monkeypatch.setattr(watchfiles.main, "RustNotify", rust_notify)
    with anyio.fail_after(5), pytest.raises(WatchfilesRustInternalError, match="os error 22"):
        await watch_folder(tmp_path, SyncdFilter(tmp_path), ignore, stop=anyio.Event())


async def test_network_root_is_polled(
    tmp_path: Path, watching: Starter, hints: Hints, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[bool] = []

    def rust_notify(paths: list[str], debug: bool, force_polling: bool, *args: Any) -> Any:
        modes.append(force_polling)
        return RustNotify(paths, debug, force_polling, *args)

    monkeypatch.setattr(watchfiles.main, "RustNotify", rust_notify)
    monkeypatch.setattr(
        "syncd.local.watch.needs_polling", lambda root: f"nfs4 filesystem at {root}"
    )
    with capture_logs() as logs:
        await watching(poll_delay_ms=50)
    assert modes == [True]
    assert logs == [
        {
            "event": "watch_polling",
            "log_level": "warning",
            "root": str(tmp_path),
            "reason": f"nfs4 filesystem at {tmp_path}",
        }
    ]
    (tmp_path / "a.jpg").write_bytes(b"a")
    await hints.wait_for("a.jpg")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
async def test_real_watch_limit_in_a_user_namespace(tmp_path: Path) -> None:
    """A real ENOSPC from inotify_add_watch: the namespace's own limit is set to 2 watches
    (the host's limit is untouched), the root has 3 directories."""
    (tmp_path / "root" / "a" / "b").mkdir(parents=True)
    script = textwrap.dedent(
        """
        import sys, anyio, structlog.testing
        from pathlib import Path
        from syncd.local.filters import SyncdFilter
        from syncd.local.watch import watch_folder

        async def main(root):
            got, stop = anyio.Event(), anyio.Event()
            def sink(paths):
                if "a/b/new.jpg" in paths:
                    got.set()
            with structlog.testing.capture_logs() as logs, anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    await tg.start(lambda **kw: watch_folder(root, SyncdFilter(root), sink, stop=stop, poll_delay_ms=50, **kw))
                    (root / "a" / "b" / "new.jpg").write_bytes(b"x")
                    await got.wait()
                    stop.set()
            print([(e["event"], e.get("error", "")) for e in logs])

        anyio.run(main, Path(sys.argv[1]))
        """
    )
    python = shlex.quote(sys.executable)
    cmd = f'echo 2 > /proc/sys/user/max_inotify_watches || exit 77; exec {python} -c "$0" "$1"'
    with anyio.fail_after(30):
        proc = await anyio.run_process(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "sh",
                "-c",
                cmd,
                script,
                str(tmp_path / "root"),
            ],
            check=False,
        )
    if proc.returncode == 77 or proc.stderr.startswith(b"unshare:"):
        pytest.skip(f"no user namespaces here: {proc.stderr.decode()}")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "('watch_polling', 'OS file watch limit reached." in proc.stdout.decode()


async def test_a_deleted_root_ends_the_watch(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    returned = anyio.Event()

    async def run(*, task_status: Any) -> None:
        await watch_folder(
            root, SyncdFilter(root), ignore, stop=anyio.Event(), task_status=task_status
        )
        returned.set()

    with capture_logs() as logs, anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(run)
            await anyio.to_thread.run_sync(shutil.rmtree, root)
            root.mkdir()  # back at once: the old watch is gone all the same
            await returned.wait()
    assert "watch_root_deleted" in [e["event"] for e in logs]
