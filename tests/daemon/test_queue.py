"""Tests of syncd.daemon.queue: the settle window, latest-wins keys and in-flight requeueing, with
an injected clock and stat."""

from __future__ import annotations

from syncd.daemon.queue import SettleQueue


class FakeFiles:
    """`(size, mtime)` per key, changed by the test."""

    def __init__(self) -> None:
        self.stats: dict[tuple[int, str], tuple[int, int] | None] = {}

    def __call__(self, key):
        return self.stats.get(key)


def make(settle=0.3):
    files = FakeFiles()
    return SettleQueue(settle, files), files


def test_a_path_is_due_once_its_stat_held_still_for_the_window():
    q, files = make()
    files.stats[(0, "a")] = (10, 1)
    q.note([(0, "a")], now=0.0)
    assert q.next_due() == 0.3
    assert q.take_due(0.29) == []
    assert q.take_due(0.3) == [(0, "a")]
    assert len(q) == 1  # in flight
    q.done([(0, "a")], now=0.4)
    assert len(q) == 0


def test_a_growing_file_is_not_taken_until_it_stops():
    q, files = make()
    key = (0, "big.mov")
    for i in range(10):  # a chunk every 0.2 s
        files.stats[key] = (i * 100, i)
        q.note([key], now=i * 0.2)
        assert q.take_due(i * 0.2 + 0.1) == []
    assert q.take_due(1.8 + 0.3) == [key]


def test_a_change_seen_only_at_the_check_restarts_the_window():
    q, files = make()
    key = (0, "a")
    files.stats[key] = (1, 1)
    q.note([key], now=0.0)
    files.stats[key] = (2, 2)  # written again, event not delivered yet
    assert q.take_due(0.3) == []
    assert q.next_due() == 0.6
    assert q.take_due(0.6) == [key]


def test_many_events_for_one_path_are_one_entry():
    q, files = make()
    files.stats[(0, "a")] = (1, 1)
    q.note([(0, "a")] * 1000, now=0.0)
    assert q.take_due(1.0) == [(0, "a")]


def test_a_delete_then_recreate_within_the_window_is_one_job():
    q, files = make()
    key = (0, "a")
    files.stats[key] = None
    q.note([key], now=0.0)
    files.stats[key] = (5, 9)
    q.note([key], now=0.1)
    assert q.take_due(0.35) == []
    assert q.take_due(0.4) == [key]


def test_a_path_changed_during_its_upload_is_queued_once_more():
    q, files = make()
    key = (0, "a")
    files.stats[key] = (1, 1)
    q.note([key], now=0.0)
    assert q.take_due(0.3) == [key]
    files.stats[key] = (2, 2)
    q.note([key, key, key], now=0.35)  # three saves during the upload
    assert not q.waiting(key)
    q.done([key], now=0.5)
    assert q.waiting(key)
    assert q.take_due(0.8) == [key]
    q.done([key], now=0.9)
    assert len(q) == 0


def test_tracked_keys_cover_pending_and_in_flight_for_the_journal():
    q, files = make()
    for name in ("a", "b"):
        files.stats[(0, name)] = (1, 1)
    q.note([(0, "a")], now=0.0)
    q.note([(0, "b")], now=0.2)
    assert q.take_due(0.3) == [(0, "a")]
    assert q.tracked() == {(0, "a"), (0, "b")}
    stats = q.statistics(now=1.0)
    assert (stats.pending, stats.in_flight) == (1, 1)
    # "a" is uploading but not committed yet: it is still the oldest job.
    assert stats.oldest_age_s == 1.0


def test_done_reports_each_paths_lag_from_its_first_event():
    q, files = make()
    files.stats[(0, "a")] = (1, 1)
    files.stats[(0, "b")] = (1, 1)
    q.note([(0, "a")], now=0.0)
    q.note([(0, "a")], now=0.1)  # a second event does not restart the lag
    q.note([(0, "b")], now=0.2)
    due = q.take_due(0.6)
    assert sorted(due) == [(0, "a"), (0, "b")]
    assert sorted(q.done(due, now=1.0)) == [0.8, 1.0]
    assert q.done([(0, "a")], now=2.0) == []  # not in flight any more: no lag


def test_drop_forgets_a_removed_folders_paths_only():
    q, files = make()
    for key in ((1, "a"), (1, "b"), (2, "a")):
        files.stats[key] = (1, 1)
    q.note([(1, "a"), (1, "b"), (2, "a")], now=0.0)
    assert q.take_due(0.5) == [(1, "a"), (1, "b"), (2, "a")]
    q.note([(1, "a"), (1, "b"), (2, "a")], now=0.6)  # changed again while in flight
    assert q.drop(1) == 0  # nothing of folder 1 is pending; "again" marks are dropped
    q.done([(1, "a"), (1, "b"), (2, "a")], now=0.7)
    assert q.tracked() == {(2, "a")}  # only folder 2's path is queued once more
    q.note([(1, "c")], now=0.8)
    assert q.drop(1) == 1
    assert q.tracked() == {(2, "a")}
