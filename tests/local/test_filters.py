from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from pathspec import GitIgnoreSpec
from watchfiles import BaseFilter, Change, watch

from syncd.errors import ConfigError
from syncd.local.filters import SyncdFilter

ROOT = Path("/srv/assets")


@pytest.fixture
def plain() -> SyncdFilter:
    return SyncdFilter(ROOT)


@pytest.mark.parametrize(
    "name",
    [
        # editor swap and backup files
        "photo.jpg.swp",
        "photo.jpg.swo",
        "photo.jpg.swx",
        ".photo.jpg.swp",
        ".photo.jpg.swn",
        "photo.jpg~",
        ".#photo.jpg",
        "#photo.jpg#",
        "4913",
        "photo.jpg___jb_tmp___",
        "photo.jpg___jb_old___",
        "notes.txt.kate-swp",
        # partial downloads and temporaries
        "video.mp4.part",
        "video.mp4.partial",
        "video.mp4.crdownload",
        "video.mp4.download",
        "photo.jpg.tmp",
        "photo.jpg.temp",
        "~WRL0001.TMP",
        "VIDEO.MP4.PART",
        ".~tmp~",
        ".photo.jpg.Ab3xZ9",
        ".fuse_hidden0000000a00000001",
        ".nfs000000000123abcd00000001",
        # lock files
        "~$report.docx",
        ".~lock.report.odt#",
        # OS clutter
        ".DS_Store",
        "._photo.jpg",
        "Thumbs.db",
        "thumbs.db",
        "ehthumbs.db",
        "desktop.ini",
        "Desktop.ini",
        ".directory",
        "Icon\r",
        # VCS and tool folders
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        "CVS",
        "_darcs",
        ".Trash",
        ".Trash-1000",
        ".Trashes",
        "$RECYCLE.BIN",
        "$Recycle.Bin",
        ".stfolder",
        ".stversions",
        "@eaDir",
        "lost+found",
        "System Volume Information",
    ],
)
def test_builtin_ignores(plain: SyncdFilter, name: str) -> None:
    # built-ins match the entry's own name, whatever its type and depth
    for is_dir in (False, True):
        assert plain.ignored(name, is_dir)
        assert plain.ignored(f"a/b c/{name}", is_dir)
        assert plain.path_ignored(f"a/{name}", is_dir)
    assert plain.reason(name, False) is not None


@pytest.mark.parametrize(
    "name",
    [
        "photo.jpg",
        "IMG_0001.JPG",
        "report.partial.pdf",  # "partial" is not the final extension
        "photo.part.jpg",
        "tmp.png",
        "temp",
        "download.jpg",
        "~photo.jpg",  # only Office's "~$" prefix marks a lock file
        "photo~1.jpg",
        "#hashtag.jpg",
        "photo.jpg.bak",  # a .bak may be a real asset
        "archive.lock",
        "4913.jpg",
        "swp.jpg",
        "movie.swf",
        "Thumbs.db.jpg",
        "my.DS_Store.png",
        "Icon.png",
        "_photo.jpg",
        ".hidden.jpg",
        ".photo.jpg.Ab3x",  # rsync temp suffixes are exactly six characters
        ".gitignore",
        "git",
        "CVS.jpg",
        "Trash-1000",
        "@eaDir.jpg",
        ".~lock.report.odt",
        "café crème.jpg",
        "日本語.png",
    ],
)
def test_lookalikes_are_kept(plain: SyncdFilter, name: str) -> None:
    assert not plain.ignored(name, False)
    assert not plain.path_ignored(f"a/{name}", False)
    assert plain.reason(name, False) is None


PATTERNS = ["cache/", "/build/", "*.psd", "!keep.psd", "raw/**/*.cr2", "/docs/*.txt"]


@pytest.mark.parametrize(
    ("rel", "is_dir", "expected"),
    [
        ("cache", True, True),  # dir-only pattern, anywhere
        ("a/b/cache", True, True),
        ("cache", False, False),  # ... but not a file named cache
        ("cache.jpg", False, False),
        ("build", True, True),  # anchored to the root
        ("a/build", True, False),
        ("art.psd", False, True),
        ("a/b/art.psd", False, True),
        ("keep.psd", False, False),  # negation
        ("a/keep.psd", False, False),
        ("raw/x.cr2", False, True),
        ("raw/2024/06/x.cr2", False, True),
        ("raw/x.jpg", False, False),
        ("a/raw/x.cr2", False, False),
        ("docs/a.txt", False, True),
        ("docs/sub/a.txt", False, False),
        ("photo.jpg", False, False),
    ],
)
def test_exclude_patterns(rel: str, is_dir: bool, expected: bool) -> None:
    filt = SyncdFilter(ROOT, PATTERNS)
    assert filt.ignored(rel, is_dir) is expected
    assert filt.path_ignored(rel, is_dir) is expected


def test_quick_reject_agrees_with_pathspec() -> None:
    # the union regex is only a shortcut: its answers must equal pathspec's for every path
    patterns = [*PATTERNS, "**/tmp", "a/**", "*.[oa]", "x?z", "\\#literal", "!/build/keep/"]
    filt = SyncdFilter(ROOT, patterns)
    spec = GitIgnoreSpec.from_lines(patterns)
    names = ["cache", "build", "keep", "art.psd", "keep.psd", "x.cr2", "tmp", "lib.a", "xyz"]
    names += ["#literal", "a", "raw", "docs", "t.txt", "photo.jpg", "x\nz"]
    paths = [f"{d}{n}" for d in ("", "a/", "raw/", "raw/y/", "docs/", "q/cache/") for n in names]
    for path in paths:
        for is_dir in (False, True):
            expected = spec.check_file(path + "/" if is_dir else path).include is True
            assert filt.ignored(path, is_dir) is expected, (path, is_dir)


def test_negation_cannot_reinclude_inside_an_excluded_directory() -> None:
    # the scan prunes cache/, so the watcher must not let cache/keep.jpg through either
    filt = SyncdFilter(ROOT, ["cache/", "!cache/keep.jpg"])
    assert filt.path_ignored("cache/keep.jpg", False)
    assert not filt(Change.added, "/srv/assets/cache/keep.jpg")


def test_no_patterns_and_only_negations() -> None:
    assert not SyncdFilter(ROOT, []).ignored("a.psd", False)
    assert not SyncdFilter(ROOT, ["!a.psd", "# comment", ""]).ignored("a.psd", False)


@pytest.mark.parametrize("bad", ["[z-a]", "a\\", "!"])
def test_invalid_pattern_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="exclude pattern") as info:
        SyncdFilter(ROOT, ["*.psd", bad])
    assert repr(bad) in str(info.value)


def test_exclude_must_not_be_a_bare_string() -> None:
    with pytest.raises(TypeError):
        SyncdFilter(ROOT, "*.psd")


def test_is_a_watchfiles_filter_with_repr() -> None:
    filt = SyncdFilter(ROOT, ["*.psd"])
    assert isinstance(filt, BaseFilter)
    assert repr(filt) == "SyncdFilter(root='/srv/assets', exclude=('*.psd',))"


@pytest.mark.parametrize(
    ("path", "keep"),
    [
        ("/srv/assets/a/photo.jpg", True),
        ("/srv/assets/photo.jpg", True),
        ("/srv/assets/a/photo.jpg.part", False),
        ("/srv/assets/.git/index", False),  # ignored parent
        ("/srv/assets/a/@eaDir/photo.jpg", False),
        ("/srv/assets/a/art.psd", False),
        ("/srv/assets/a/keep.psd", True),
        ("/srv/assets/x/cache/a.jpg", False),
        # type unknown without I/O: a deleted dir "cache" may also have been a file "cache"
        ("/srv/assets/x/cache", True),
        ("/srv/assets", False),  # the root itself is not an entry
        ("/srv/assets/", False),
        ("/srv/assets-evil/photo.jpg", False),  # a prefix of the string, not of the path
        ("/srv/other/photo.jpg", False),
        ("/srv/assets/../other/photo.jpg", False),
        ("/srv/assets/bad\udcff.jpg", False),  # not valid UTF-8: never synced
    ],
)
def test_watchfiles_call(path: str, keep: bool) -> None:
    filt = SyncdFilter(ROOT, ["cache/", "*.psd", "!keep.psd"])
    assert filt(Change.added, path) is keep
    root_itself = path.rstrip("/") == str(ROOT)
    assert filt(Change.deleted, path) is (keep or root_itself)


def test_only_the_roots_own_deletion_passes_for_the_root() -> None:
    # The watcher needs it: a deleted root's watch is gone and must be armed again.
    filt = SyncdFilter(ROOT)
    assert filt(Change.deleted, str(ROOT))
    assert not filt(Change.modified, str(ROOT))
    assert not filt(Change.deleted, "/srv")  # outside is still outside


def test_call_accepts_resolved_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    filt = SyncdFilter(tmp_path / "link")
    assert filt(Change.added, str(tmp_path / "link" / "a.jpg"))
    assert filt(Change.added, str(real / "a.jpg"))
    assert filt.relative(str(real / "d" / "a.jpg")) == "d/a.jpg"
    assert not filt(Change.added, str(tmp_path / "a.jpg"))


def test_call_resolves_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    filt = SyncdFilter(Path("root"))
    assert filt.relative("root/a/b.jpg") == "a/b.jpg"
    assert filt.relative(os.path.join(tmp_path, "root", "b.jpg")) == "b.jpg"


def test_reason_names_the_rule() -> None:
    filt = SyncdFilter(ROOT, ["cache/", "*.psd"])
    assert filt.reason("a/.git", True) == "built-in name '.git'"
    assert filt.reason("a.part", False) is not None
    assert "built-in pattern" in (filt.reason("a.part", False) or "")
    assert filt.reason("a/art.psd", False) == "exclude pattern '*.psd'"
    assert filt.reason("x/cache/a.jpg", False) == "exclude pattern 'cache/' on parent x/cache/"
    assert filt.reason("x/a.jpg", False) is None
    assert filt.reason("multi\nline~", False) == "built-in pattern '.*~'"


def test_live_watcher_drops_partial_files(tmp_path: Path) -> None:
    filt = SyncdFilter(tmp_path, ["*.psd"])

    def write_soon() -> None:
        time.sleep(0.3)
        (tmp_path / "clip.mp4.part").write_bytes(b"partial")
        (tmp_path / "art.psd").write_bytes(b"psd")
        (tmp_path / ".DS_Store").write_bytes(b"")
        (tmp_path / "clip.mp4").write_bytes(b"done")

    thread = threading.Thread(target=write_soon)
    thread.start()
    try:
        for changes in watch(
            tmp_path,
            watch_filter=filt,
            debounce=200,
            step=10,
            rust_timeout=5_000,
            yield_on_timeout=True,
        ):
            assert changes, "no event within 5 s"
            assert {Path(path).name for _, path in changes} == {"clip.mp4"}
            break
    finally:
        thread.join()
