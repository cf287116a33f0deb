"""Tests of syncd.state.store on real SQLite files under tmp_path."""

from __future__ import annotations

import sqlite3

import pytest

from syncd.errors import StateError
from syncd.model import Known
from syncd.state.store import FolderBookmark, State


def k(path: str, uuid: str = "u1") -> Known:
    return Known(path, 10, 123, 7, "aa", uuid, "bb")


def test_round_trip_and_wal(tmp_path):
    db = tmp_path / "sub" / "state.db"
    with State.open(db) as st:
        fid = st.ensure_folder("/srv/a", "/a")
        assert st.ensure_folder("/srv/a", "/a") == fid
        st.record(fid, k("x/1.jpg"))
        st.record(fid, k("2.jpg", "u2"))
        assert st.pending == 2
        st.flush()
        assert st.pending == 0
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with State.open(db) as st:
        fid2 = st.folder_id("/srv/a", "/a")
        assert fid2 == fid
        assert st.known(fid2) == {"x/1.jpg": k("x/1.jpg"), "2.jpg": k("2.jpg", "u2")}
        assert st.folder_id("/srv/a", "/other") is None
        assert st.known(None) == {}


def test_close_flushes_pending_rows(tmp_path):
    db = tmp_path / "state.db"
    st = State.open(db)
    fid = st.ensure_folder("/l", "/r")
    st.record(fid, k("a"))
    st.close()
    with State.open(db) as again:
        assert list(again.known(fid)) == ["a"]


def test_forget_and_replace(tmp_path):
    with State.open(tmp_path / "s.db") as st:
        fid = st.ensure_folder("/l", "/r")
        st.record(fid, k("a"))
        st.record(fid, k("b"))
        st.flush()
        st.forget(fid, "a")
        st.record(fid, k("b", "u9"))
        st.flush()
        assert st.known(fid) == {"b": k("b", "u9")}


def test_bookmark(tmp_path):
    with State.open(tmp_path / "s.db") as st:
        fid = st.ensure_folder("/l", "/r")
        assert st.bookmark(fid) == FolderBookmark(None, None, None)
        st.set_bookmark(fid, "2026-11-26T10:00:00Z", 42)
        b = st.bookmark(fid)
        assert (b.listed_at, b.remote_count) == ("2026-11-26T10:00:00Z", 42)
        assert b.last_sync is not None


def test_parked_files_clear_when_synced(tmp_path):
    with State.open(tmp_path / "s.db") as st:
        fid = st.ensure_folder("/l", "/r")
        st.park(fid, "a", "upload", "HTTP 500")
        st.park(fid, "a", "upload", "HTTP 502")
        st.park(fid, "b", "delete", "HTTP 400")
        parked = st.parked(fid)
        assert [(p.path, p.attempts, p.error) for p in parked] == [
            ("a", 2, "HTTP 502"),
            ("b", 1, "HTTP 400"),
        ]
        st.record(fid, k("a"))
        st.flush()
        assert [p.path for p in st.parked(fid)] == ["b"]
        st.unpark(fid, "b")
        assert st.parked(fid) == []


def test_readonly_missing_database_is_not_created(tmp_path):
    db = tmp_path / "none" / "state.db"
    with State.open(db, readonly=True) as st:
        assert st.folder_id("/l", "/r") is None
        assert st.known(None) == {}
    assert not db.exists()
    assert not db.parent.exists()


def test_readonly_existing_database_reads(tmp_path):
    db = tmp_path / "state.db"
    with State.open(db) as st:
        fid = st.ensure_folder("/l", "/r")
        st.record(fid, k("a"))
    with State.open(db, readonly=True) as st:
        assert list(st.known(st.folder_id("/l", "/r"))) == ["a"]


def test_unusable_path_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot open the state database"):
        State.open(blocker / "state.db")


OLD_FOLDERS = """
CREATE TABLE folders (
    id INTEGER PRIMARY KEY, local TEXT NOT NULL, remote TEXT NOT NULL, listed_at TEXT,
    remote_count INTEGER, last_sync REAL, UNIQUE (local, remote)
);
"""


def test_an_older_database_is_migrated_and_reconcile_times_kept_apart(tmp_path):
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_FOLDERS)
    conn.execute("INSERT INTO folders (local, remote, last_sync) VALUES ('/a', '/x', 7.0)")
    conn.commit()
    conn.close()
    with State.open(db) as state:
        fid = state.folder_id("/a", "/x")
        assert fid is not None
        migrated = state._conn.execute("SELECT reconciled_at FROM folders").fetchone()
        assert migrated == (7.0,)  # until then every run was a whole-folder reconcile
        state.set_bookmark(fid, "2026-01-01T00:00:00Z", 3, reconciled=True)
        reconciled = state._conn.execute(
            "SELECT reconciled_at, last_sync FROM folders WHERE id = ?", (fid,)
        ).fetchone()
        assert reconciled[0] == reconciled[1]
        state.set_bookmark(fid, "2026-01-01T00:00:01Z", 4)  # a daemon batch
        after = state._conn.execute(
            "SELECT reconciled_at, last_sync FROM folders WHERE id = ?", (fid,)
        ).fetchone()
        assert after[0] == reconciled[0]  # the batch is a sync, not a reconcile
        assert after[1] >= reconciled[1]
        assert state.bookmark(fid).remote_count == 4
