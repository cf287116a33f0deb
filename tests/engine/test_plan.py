"""Table-driven tests of the pure sync decisions in syncd.engine.plan."""

from __future__ import annotations

import pytest

from syncd.engine.match import view
from syncd.engine.plan import DeletePolicy, needs_hash, pair_moves, plan, stat_changes
from syncd.model import Action, Known, LocalFile, Op, RemoteFile


def lf(path: str, size: int = 10, mtime: int = 1, inode: int = 1, sha1: str | None = None):
    return LocalFile(path, size, mtime, inode, sha1)


def kn(path: str, uuid: str, size: int = 10, mtime: int = 1, inode: int = 1, sha1: str = "aa"):
    return Known(path, size, mtime, inode, sha1, uuid, sha1)


def rf(path: str, uuid: str, sha1: str | None = "aa", size: int | None = 10):
    return RemoteFile(uuid, path, path.rpartition("/")[2], "/r", sha1, size)


def full(local, known, remote, policy=None):
    """Plan against a DAM listing, matched the way `syncd.engine.folder` matches it."""
    return plan(local, known, view(remote, known, local), policy or DeletePolicy())


def ops(actions: list[Action]) -> set[tuple[str, str]]:
    return {(a.op.value, a.path) for a in actions}


DEFAULT = DeletePolicy()

INCREMENTAL = [
    pytest.param({"a": lf("a")}, {}, {("upload", "a")}, id="new file uploads"),
    pytest.param({"a": lf("a")}, {"a": kn("a", "u1")}, set(), id="unchanged stat is skipped"),
    pytest.param(
        {"a": lf("a", mtime=2, sha1="aa")},
        {"a": kn("a", "u1")},
        {("refresh", "a")},
        id="touched, same content: state only",
    ),
    pytest.param(
        {"a": lf("a", mtime=2, sha1="bb")},
        {"a": kn("a", "u1")},
        {("update", "a")},
        id="same size, new content: replace",
    ),
    pytest.param(
        {"a": lf("a", size=11, mtime=2)},
        {"a": kn("a", "u1")},
        {("update", "a")},
        id="new size: replace without hashing",
    ),
    pytest.param(
        {"b": lf("b")},
        {"a": kn("a", "u1"), "b": kn("b", "u2")},
        {("delete", "a")},
        id="gone locally: delete by uuid",
    ),
]


@pytest.mark.parametrize(("local", "known", "expected"), INCREMENTAL)
def test_incremental(local, known, expected):
    assert ops(plan(local, known, None, DEFAULT).actions) == expected


FULL = [
    pytest.param({"a": lf("a")}, {}, [], {("upload", "a")}, id="empty DAM uploads"),
    pytest.param(
        {"a": lf("a", sha1="aa")},
        {},
        [rf("a", "r1")],
        {("adopt", "a")},
        id="DAM already holds identical content: adopt",
    ),
    pytest.param(
        {"a": lf("a", sha1="bb")},
        {},
        [rf("a", "r1")],
        {("upload", "a")},
        id="DAM holds other content syncd did not upload: upload beside, never over it",
    ),
    pytest.param(
        {"a": lf("a")},
        {"a": kn("a", "u1")},
        [rf("a", "u1")],
        set(),
        id="in sync: nothing",
    ),
    pytest.param(
        {"a": lf("a")},
        {"a": kn("a", "u1")},
        [],
        {("upload", "a")},
        id="deleted on the DAM: upload again",
    ),
    pytest.param(
        {"a": lf("a")},
        {"a": kn("a", "u1")},
        [rf("a", "u1", sha1="zz")],
        {("update", "a")},
        id="changed on the DAM: local wins",
    ),
    pytest.param(
        {},
        {"a": kn("a", "u1")},
        [],
        {("forget", "a")},
        id="gone on both sides: forget",
    ),
    pytest.param(
        {"a": lf("a")},
        {"a": kn("a", "u1")},
        [rf("a", "u1"), rf("x", "r9")],
        set(),
        id="unknown remote file is kept by default",
    ),
    pytest.param(
        {"a": lf("a", sha1="aa")},
        {"a": kn("a", "u1")},
        [rf("a", "u1"), rf("a", "u2")],
        set(),
        id="unknown duplicate at the same path is kept without delete_unknown",
    ),
]


@pytest.mark.parametrize(("local", "known", "remote", "expected"), FULL)
def test_full(local, known, remote, expected):
    result = full(local, known, remote)
    assert ops(result.actions) == expected


def test_unknown_remote_files_are_counted_not_deleted():
    remote = [rf("a", "u1"), rf("a", "u2"), rf("x", "r9")]
    result = full({"a": lf("a")}, {"a": kn("a", "u1")}, remote)
    assert result.actions == []
    assert result.unknown_kept == 2


def test_adopt_carries_uuid_and_remote_sha1():
    (action,) = full({"a": lf("a", sha1="aa")}, {}, [rf("a", "r1")]).actions
    assert action == Action(Op.ADOPT, "a", lf("a", sha1="aa"), "r1", "aa")


def test_unknown_content_at_the_path_is_replaced_only_with_delete_unknown():
    remote = [rf("a", "r1")]
    kept = full({"a": lf("a", sha1="bb")}, {}, remote)
    assert (kept.actions[0].op, kept.actions[0].uuid, kept.unknown_kept) == (Op.UPLOAD, None, 1)
    replaced = full({"a": lf("a", sha1="bb")}, {}, remote, DeletePolicy(delete_unknown=True))
    assert (replaced.actions[0].op, replaced.actions[0].uuid) == (Op.REPLACE, "r1")


def test_foreign_assets_are_never_deleted_or_replaced():
    foreign = Known("a", 10, 1, 1, "aa", "elsewhere", "aa", foreign=True)
    gone = plan({}, {"a": foreign}, None, DEFAULT, synced=2, local_total=1)
    assert [(a.op, a.uuid) for a in gone.actions] == [(Op.FORGET, "elsewhere")]
    changed = plan({"a": lf("a", size=99, mtime=2)}, {"a": foreign}, None, DEFAULT)
    assert [(a.op, a.uuid) for a in changed.actions] == [(Op.UPLOAD, None)]


def test_delete_unknown_deletes_remote_only_files():
    policy = DeletePolicy(delete_unknown=True)
    result = full({"a": lf("a")}, {}, [rf("x", "r9")], policy)
    assert ops(result.actions) == {("upload", "a"), ("delete", "x")}


def test_own_duplicate_is_removed():
    known = {"a": kn("a", "u1")}
    remote = [rf("a", "u1"), rf("b", "u2")]
    known["b"] = kn("b", "u2")
    result = full({"a": lf("a")}, known, remote)
    assert ops(result.actions) == {("delete", "b")}


@pytest.mark.parametrize(
    ("synced", "deleting", "refused"),
    [
        (100, 10, False),  # 10%: not more than 10%
        (100, 11, False),  # 11% but only 11 files: not more than 25
        (100, 26, True),  # 26% and 26 files
        (1000, 26, False),  # 26 files but 2.6%
        (300, 31, True),  # 10.3% and 31 files
    ],
)
def test_delete_threshold(synced, deleting, refused):
    known = {f"f{i}": kn(f"f{i}", f"u{i}") for i in range(synced)}
    local = {f"f{i}": lf(f"f{i}") for i in range(deleting, synced)}
    result = plan(local, known, None, DEFAULT)
    assert (result.refused is not None) is refused
    assert result.count(Op.DELETE) == (0 if refused else deleting)
    if refused:
        assert "--force-delete" in (result.refused or "")
        assert result.withheld_deletes == deleting


def test_force_delete_overrides_threshold():
    known = {f"f{i}": kn(f"f{i}", f"u{i}") for i in range(100)}
    result = plan({}, known, None, DeletePolicy(force=True), root_problem=None)
    # An empty root is refused even with --force-delete: it looks like an unmount.
    assert result.count(Op.DELETE) == 0
    assert "empty" in (result.refused or "")
    local = {"f0": lf("f0")}
    result = plan(local, known, None, DeletePolicy(force=True))
    assert result.count(Op.DELETE) == 99
    assert result.refused is None


def test_root_problem_blocks_every_delete():
    known = {"a": kn("a", "u1"), "b": kn("b", "u2")}
    result = plan({"a": lf("a")}, known, None, DEFAULT, root_problem="not mounted")
    assert result.count(Op.DELETE) == 0
    assert "not mounted" in (result.refused or "")


def test_protected_paths_are_never_deleted():
    known = {"d/x": kn("d/x", "u1"), "d/y": kn("d/y", "u2"), "e": kn("e", "u3"), "k": kn("k", "u4")}
    result = plan({"k": lf("k")}, known, None, DEFAULT, protected=["d", "e"])
    assert result.count(Op.DELETE) == 0
    assert result.refused is None


@pytest.mark.parametrize(
    ("local", "known", "remote", "expected"),
    [
        pytest.param({"a": lf("a")}, {}, None, [], id="new file: hashed while uploading"),
        pytest.param(
            {"a": lf("a", mtime=2)}, {"a": kn("a", "u")}, None, ["a"], id="touched same size"
        ),
        pytest.param(
            {"a": lf("a", size=3)}, {"a": kn("a", "u")}, None, [], id="size changed: no need"
        ),
        pytest.param({"a": lf("a")}, {}, [rf("a", "r")], ["a"], id="DAM has same path+size"),
        pytest.param({"a": lf("a")}, {}, [rf("a", "r", size=99)], [], id="DAM size differs"),
        pytest.param(
            {"a": lf("a")}, {"a": kn("a", "r")}, [rf("a", "r")], [], id="in sync by state"
        ),
    ],
)
def test_needs_hash(local, known, remote, expected):
    matched = None if remote is None else view(remote, known, local)
    assert needs_hash(local, known, matched) == expected


def _rows_until(rows):
    """`StatRows.until` over a sorted list, recording each call's `end`."""
    at = [0]

    def until(end):
        stop = at[0]
        while stop < len(rows) and (end is None or rows[stop][0] < end):
            stop += 1
        taken, at[0] = rows[at[0] : stop], stop
        return taken

    return until


def test_stat_changes_finds_changed_new_and_gone():
    # The walk's stretches: the root's files before d/, d/'s, and the rest. e/ has
    # vanished, so its rows fall into the last stretch and are found gone there.
    segments = [
        ("d/", [("a", 10, 1, 1), ("c", 10, 2, 1)]),
        ("d0", [("d/same", 10, 1, 1)]),
        (None, [("new", 10, 1, 1), ("replaced", 10, 1, 9), ("resized", 11, 1, 1), ("z", 10, 1, 1)]),
    ]
    rows = [
        ("a", 10, 1, 1),
        ("c", 10, 1, 1),
        ("d/same", 10, 1, 1),
        ("e/gone", 10, 1, 1),
        ("e/gone2", 10, 1, 1),
        ("replaced", 10, 1, 1),
        ("resized", 10, 1, 1),
        ("z", 10, 1, 1),
    ]
    diff = stat_changes(segments, _rows_until(rows))
    assert sorted(diff.changed) == ["c", "new", "replaced", "resized"]
    assert diff.changed["c"] == lf("c", 10, 2, 1)
    assert diff.gone == ["e/gone", "e/gone2"]
    assert (diff.local, diff.synced) == (7, 8)


def test_stat_changes_of_an_unchanged_tree_builds_nothing():
    rows = [(f"d{i // 10}/f{i}", 1, 2, i) for i in range(100)]
    rows.sort()
    segments: list[tuple[str | None, list[tuple[str, int, int, int]]]] = []
    for d in sorted({r[0].split("/")[0] for r in rows}):
        segments += [(f"{d}/", []), (f"{d}0", [r for r in rows if r[0].startswith(f"{d}/")])]
    segments.append((None, []))
    diff = stat_changes(segments, _rows_until(rows))
    assert diff.changed == {}
    assert diff.gone == []
    assert (diff.local, diff.synced) == (100, 100)


def test_partial_inputs_use_the_folder_totals():
    # Only the changed paths are passed; the totals still drive the delete safety.
    known = {f"g{i}": kn(f"g{i}", f"u{i}") for i in range(30)}
    result = plan({}, known, None, DEFAULT, synced=40, local_total=10)
    assert result.refused is not None
    assert "30 of 40" in result.refused
    result = plan({}, known, None, DEFAULT, synced=1000, local_total=970)
    assert result.count(Op.DELETE) == 30


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("a.jpg", "b.jpg"),  # rename
        ("a.jpg", "sub/a.jpg"),  # move
        ("d/a.jpg", "e/a.jpg"),  # directory rename
        ("A.jpg", "a.jpg"),  # case-only rename
    ],
)
def test_a_renamed_file_becomes_a_move_that_keeps_the_uuid(old, new):
    known = {old: kn(old, "u1", inode=42), "other": kn("other", "u2", inode=7)}
    local = {new: lf(new, inode=42), "other": lf("other", inode=7)}
    for remote in (None, view([rf(old, "u1"), rf("other", "u2")], known, local)):
        result = plan(local, known, remote, DEFAULT)
        assert [(a.op, a.path, a.source, a.uuid) for a in result.actions] == [
            (Op.MOVE, new, old, "u1")
        ]


def test_a_renamed_and_edited_file_is_not_a_move():
    known = {"a.jpg": kn("a.jpg", "u1", inode=42)}
    local = {"b.jpg": lf("b.jpg", size=99, mtime=5, inode=42)}
    result = plan(local, known, None, DEFAULT)
    assert ops(result.actions) == {("upload", "b.jpg"), ("delete", "a.jpg")}


def test_pair_moves_never_moves_a_foreign_asset():
    gone = {"a": Known("a", 10, 1, 42, "aa", "x", "aa", foreign=True)}
    assert pair_moves(gone, {"b": lf("b", inode=42)}) == []


def remote(path, uuid, *, name=None, info_name=None, sha1="aa", size=10):
    head = path.rpartition("/")[0]
    stored = name or path.rpartition("/")[2]
    at = f"{head}/{stored}" if head else stored
    return RemoteFile(uuid, at, stored, "/r", sha1, size, info_name)


@pytest.mark.parametrize(
    "asset",
    [
        pytest.param(remote("renamed.jpg", "u1", info_name="photo.jpg"), id="info.name kept"),
        pytest.param(remote("x/f.jpg", "u1", name="f-AbCd1234.jpg"), id="suffix naming"),
        pytest.param(remote("x/f.jpg", "u1", name="0" * 32 + ".jpg"), id="random naming"),
    ],
)
def test_an_asset_known_by_uuid_is_in_sync_whatever_its_names_say(asset):
    path = "renamed.jpg" if asset.info_name else "x/f.jpg"
    result = full({path: lf(path)}, {path: kn(path, "u1")}, [asset])
    assert result.actions == []
    assert result.unknown_kept == 0


def test_a_rename_whose_state_write_was_lost_is_adopted_not_repeated():
    # The DAM renamed u1 to b.jpg; the state still says a.jpg (a crash in between).
    known = {"a.jpg": kn("a.jpg", "u1", inode=42)}
    local = {"b.jpg": lf("b.jpg", inode=42)}
    result = full(local, known, [remote("b.jpg", "u1", info_name="a.jpg")])
    assert {(a.op, a.path, a.uuid) for a in result.actions} == {
        (Op.ADOPT, "b.jpg", "u1"),
        (Op.FORGET, "a.jpg", "u1"),
    }


def test_an_asset_renamed_on_the_dam_is_put_back_keeping_its_uuid():
    known = {"d/a.jpg": kn("d/a.jpg", "u1")}
    result = full({"d/a.jpg": lf("d/a.jpg")}, known, [remote("e/zz.jpg", "u1")])
    (action,) = result.actions
    assert (action.op, action.path, action.uuid, action.source, action.remote_path) == (
        Op.MOVE,
        "d/a.jpg",
        "u1",
        None,
        "e/zz.jpg",
    )


def test_a_swap_is_two_moves():
    known = {"a": kn("a", "ua", inode=1, mtime=1), "b": kn("b", "ub", inode=2, mtime=2)}
    local = {"a": lf("a", inode=2, mtime=2), "b": lf("b", inode=1, mtime=1)}
    for listing in (None, view([rf("a", "ua"), rf("b", "ub")], known, local)):
        result = plan(local, known, listing, DEFAULT)
        assert {(a.op, a.path, a.uuid, a.source) for a in result.actions} == {
            (Op.MOVE, "a", "ub", "b"),
            (Op.MOVE, "b", "ua", "a"),
        }


def test_a_file_moved_over_another_takes_its_place_and_the_old_asset_goes():
    known = {"a": kn("a", "ua", inode=1, mtime=1), "b": kn("b", "ub", inode=2, mtime=2)}
    local = {"b": lf("b", inode=1, mtime=1)}
    result = plan(local, known, None, DeletePolicy(force=True))
    assert {(a.op, a.path, a.uuid) for a in result.actions} == {
        (Op.MOVE, "b", "ua"),
        (Op.DELETE, "b", "ub"),
    }


def test_a_path_whose_file_moved_away_and_was_recreated_uploads_anew():
    known = {"a": kn("a", "ua", inode=1, mtime=1)}
    local = {"a": lf("a", size=5, inode=9, mtime=9), "b": lf("b", inode=1, mtime=1)}
    result = plan(local, known, None, DEFAULT)
    assert {(a.op, a.path, a.uuid) for a in result.actions} == {
        (Op.MOVE, "b", "ua"),
        (Op.UPLOAD, "a", None),
    }


@pytest.mark.parametrize(
    ("change", "foreign"),
    [
        (remote("b.jpg", "u1", info_name="a.jpg"), False),  # syncd's own rename
        (remote("a.jpg", "u1", name="a-XyZ12345.jpg"), False),  # suffix naming
        (remote("a.jpg", "u9"), True),  # an asset syncd does not know
        (remote("zz.jpg", "u1"), True),  # renamed by someone else
        (remote("b.jpg", "u1", sha1="ff"), True),  # other content
        (remote("b.jpg", "u1", sha1=None, size=99), True),  # no sha1, other size
        (remote("b.jpg", "u1", sha1=None), False),  # no sha1, same size
    ],
)
def test_foreign_change_goes_by_uuid(change, foreign):
    from syncd.engine.plan import foreign_change

    row = kn("a.jpg" if change.name.startswith("a") else "b.jpg", "u1")
    assert (foreign_change([change], {"u1": row}) is not None) is foreign


def test_an_unknown_asset_holding_the_new_content_replaces_the_outdated_one():
    # A replacement cut short (uploaded aside under a temporary name, then a crash).
    known = {"a.txt": kn("a.txt", "old", sha1="aa")}
    local = {"a.txt": lf("a.txt", size=20, mtime=2)}
    listing = [rf("a.txt", "old"), remote("a.syncd-1234abcd.txt", "new", sha1="bb", size=20)]
    matched = view(listing, known, local)
    assert needs_hash(local, known, matched) == ["a.txt"]
    local["a.txt"] = lf("a.txt", size=20, mtime=2, sha1="bb")
    result = plan(local, known, matched, DEFAULT)
    assert {(a.op, a.path, a.uuid, a.remote_path) for a in result.actions} == {
        (Op.MOVE, "a.txt", "new", "a.syncd-1234abcd.txt"),  # renamed into place
        (Op.DELETE, "a.txt", "old", None),  # before the move: it holds the name
    }


def test_an_overwritten_asset_is_deleted_even_in_full_mode_with_shared_uuids():
    # In full mode the caller passes every uuid a local path maps to as "still used";
    # b's row is among them, but its file was overwritten by a's: its asset must go.
    known = {"a": kn("a", "ua", inode=1, mtime=1), "b": kn("b", "ub", inode=2, mtime=2)}
    local = {"b": lf("b", inode=1, mtime=1)}
    matched = view([rf("a", "ua"), rf("b", "ub")], known, local)
    result = plan(local, known, matched, DeletePolicy(force=True), still_used={"ub"})
    assert {(a.op, a.path, a.uuid) for a in result.actions} == {
        (Op.MOVE, "b", "ua"),
        (Op.DELETE, "b", "ub"),
    }


def test_the_outdated_asset_of_an_adopted_twin_is_deleted_whatever_still_used_says():
    known = {"a.txt": kn("a.txt", "old", sha1="aa")}
    local = {"a.txt": lf("a.txt", size=20, mtime=2, sha1="bb")}
    listing = [rf("a.txt", "old"), remote("a.syncd-1234abcd.txt", "new", sha1="bb", size=20)]
    result = plan(local, known, view(listing, known, local), DEFAULT, still_used={"old"})
    assert (Op.DELETE, "a.txt", "old") in {(a.op, a.path, a.uuid) for a in result.actions}


def test_a_move_onto_a_path_whose_delete_is_refused_waits_with_it():
    known = {"a": kn("a", "ua", inode=1, mtime=1), "b": kn("b", "ub", inode=2, mtime=2)}
    known |= {f"k{i}": kn(f"k{i}", f"u{i}", inode=10 + i) for i in range(3)}
    local = {"b": lf("b", inode=1, mtime=1)} | {
        f"k{i}": lf(f"k{i}", inode=10 + i) for i in range(3)
    }
    strict = DeletePolicy(max_delete_percent=0, max_delete_count=0)
    result = plan(local, known, None, strict)
    assert result.refused is not None
    assert [a for a in result.actions if a.op in (Op.MOVE, Op.DELETE)] == []
