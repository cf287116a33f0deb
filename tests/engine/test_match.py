"""Table-driven tests of syncd.engine.match: names a naming rule can make, identity by uuid, and
which assets an upload of unknown outcome provably left."""

from __future__ import annotations

import pytest

from syncd.engine.match import derived_name, fits, logical_path, unsure_matches, view
from syncd.model import Known, RemoteFile, Unsure


def asset(path, uuid="u1", *, info_name=None, sha1="aa", created="2026-12-01T10:00:05.000Z"):
    name = path.rpartition("/")[2]
    folder = "/r/" + path.rpartition("/")[0] if "/" in path else "/r"
    return RemoteFile(uuid, path, name, folder.rstrip("/"), sha1, 10, info_name, created)


@pytest.mark.parametrize(
    ("stored", "original", "expected"),
    [
        ("a.jpg", "a.jpg", True),
        ("a-7brqJR8K.jpg", "a.jpg", True),  # suffix, as CARADV saw it
        ("sky-U0wznLpH.webp", "sky.jpeg", True),  # suffix plus a format conversion
        ("test-image-7brqJR8K", "test-image", True),  # no extension
        ("0123456789abcdef0123456789abcdef.png", "x.png", True),  # random hex name
        ("6f1d2c4e-1b2a-4c3d-8e9f-0a1b2c3d4e5f.png", "x.png", True),  # random uuid name
        ("b.jpg", "a.jpg", False),
        ("a-b.jpg", "a.jpg", False),  # too short to be a random suffix
        ("a-has spaces.jpg", "a.jpg", False),
        ("2024-01-01-report.pdf", "report.pdf", False),
    ],
)
def test_derived_name(stored, original, expected):
    assert derived_name(stored, original) is expected


def test_logical_path_uses_info_name_only_when_the_naming_rule_made_the_name():
    suffixed = RemoteFile("u", "d/a-7brqJR8K.jpg", "a-7brqJR8K.jpg", "/r/d", "aa", 1, "a.jpg")
    renamed = RemoteFile("u", "d/b.jpg", "b.jpg", "/r/d", "aa", 1, "a.jpg")
    assert logical_path(suffixed) == "d/a.jpg"
    assert logical_path(renamed) == "d/b.jpg"  # renamed after upload: info.name is stale


def test_fits_needs_the_folder_and_the_name():
    r = RemoteFile("u", "d/a-7brqJR8K.jpg", "a-7brqJR8K.jpg", "/r/d", "aa", 1, "a.jpg")
    assert fits(r, "d/a.jpg")
    assert not fits(r, "e/a.jpg")
    assert not fits(r, "d/b.jpg")


def test_view_ties_assets_to_rows_by_uuid_first():
    known = {
        "a": Known("a", 10, 1, 1, "aa", "u1", "aa"),
        "gone": Known("gone", 10, 1, 2, "bb", "u2", "bb"),
        "moved": Known("moved", 10, 1, 3, "cc", "u3", "cc"),
    }
    listing = [
        asset("zz", "u1"),  # a's asset, renamed on the DAM: still a's
        asset("gone", "u2"),  # its file is gone: left over
        asset("new", "u3"),  # the DAM side of a rename whose state write was lost
        asset("a", "u9"),  # unknown, at a's path
    ]
    v = view(listing, known, ["a", "new"])
    assert {p: r.uuid for p, r in v.own.items()} == {"a": "u1", "new": "u3"}
    assert v.relocated == {"new": "moved"}
    assert [(p, r.uuid) for p, r in v.leftover] == [("gone", "u2")]
    assert {p: [r.uuid for r in rs] for p, rs in v.unknown.items()} == {"a": ["u9"]}


ENTRY = Unsure(
    "d/a.jpg", "/r/d", "a.jpg", "aa", 10, "2026-12-01T10:00:00.000Z", "2026-12-01T10:00:10.000Z"
)


@pytest.mark.parametrize(
    ("candidate", "matches"),
    [
        (asset("d/a.jpg", "x1"), True),
        (asset("d/a-7brqJR8K.jpg", "x1"), True),  # suffixed by the naming rule
        (asset("d/b.jpg", "x1", info_name="a.jpg"), True),  # info.name is the name sent
        (asset("d/a.jpg", "known"), False),  # the state knows it: it is a file's asset
        (asset("d/a.jpg", "x1", sha1="ff"), False),  # other content
        (asset("e/a.jpg", "x1"), False),  # other folder
        (asset("d/b.jpg", "x1"), False),  # other name
        (asset("d/a.jpg", "x1", created="2026-12-01T09:59:00.000Z"), False),  # before
        (asset("d/a.jpg", "x1", created="2026-12-01T10:00:11.500Z"), True),  # margin
        (asset("d/a.jpg", "x1", created="2026-12-01T10:01:00.000Z"), False),  # after
        (asset("d/a.jpg", "x1", sha1=None), False),  # proves nothing
        (asset("d/a.jpg", "x1", created=None), False),  # proves nothing
    ],
)
def test_unsure_matches_only_what_it_can_prove(candidate, matches):
    assert (unsure_matches(ENTRY, [candidate], {"known"}) == [candidate]) is matches


def test_a_temporary_name_stands_for_the_name_it_replaces():
    left = RemoteFile("u", "d/a.syncd-1234abcd.txt", "a.syncd-1234abcd.txt", "/r/d", "aa", 1)
    bare = RemoteFile("u", "README.syncd-1234abcd", "README.syncd-1234abcd", "/r", "aa", 1)
    assert logical_path(left) == "d/a.txt"
    assert logical_path(bare) == "README"
    # ...but it is no place for the file to stay.
    assert not fits(left, "d/a.txt")
