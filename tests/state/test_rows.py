"""`StatRows`: a folder's rows in path order, taken a stretch at a time from a connection
of their own, on a real SQLite file."""

from __future__ import annotations

import threading

import pytest

from syncd.model import Known
from syncd.state import rows as rows_module
from syncd.state.store import State


def fill(st: State, fid: int, paths: list[str]) -> None:
    for i, p in enumerate(paths):
        st.record(fid, Known(p, i, i + 1, i + 2, "aa", f"u{i}"))


@pytest.mark.parametrize("in_file", [True, False])
def test_stretches_in_path_order_across_fetches(tmp_path, monkeypatch, in_file):
    monkeypatch.setattr(rows_module, "_FETCH", 7)  # many refills, and stretches across them
    paths = [f"d{i % 13}/f{i:03d}" for i in range(200)] + ["a", "é", "z/📷"]
    st = State.open(tmp_path / "state.db") if in_file else State(*_memory())
    other = st.ensure_folder("/other", "/o")
    fill(st, other, ["d1/f000x"])  # another folder's rows never show
    fid = st.ensure_folder("/l", "/r")
    fill(st, fid, paths)  # pending: stat_rows flushes them first
    rows = st.stat_rows(fid)
    ends = ["a", "d1/", "d10", "d5/", "d5/f100", "z/", None, None]
    taken = [rows.until(end) for end in ends]
    rows.close()
    assert [r[0] for t in taken for r in t] == sorted(paths)
    for start, end, stretch in zip(["", *ends], ends, taken, strict=False):
        assert all(
            (start is None or r[0] >= start) and (end is None or r[0] < end) for r in stretch
        )
    assert taken[0] == []  # nothing sorts before "a"
    assert taken[-1] == []  # all were taken by the first None
    row = next(r for t in taken for r in t if r[0] == "a")
    i = paths.index("a")
    assert row == ("a", i, i + 1, i + 2)
    st.close()


def test_read_from_another_thread_beside_writes(tmp_path):
    st = State.open(tmp_path / "state.db")
    fid = st.ensure_folder("/l", "/r")
    fill(st, fid, [f"f{i:04d}" for i in range(5000)])
    rows = st.stat_rows(fid)
    got: list[int] = []
    worker = threading.Thread(target=lambda: got.append(len(rows.until(None))))
    st.record(fid, Known("zz-late", 1, 1, 1, "aa", "late"))
    st.flush()  # the reader keeps the snapshot it started with
    worker.start()
    worker.join(10)
    rows.close()
    assert got == [5000]
    st.close()


def _memory():
    import sqlite3

    from syncd.state.schema import SCHEMA

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    return conn, None
