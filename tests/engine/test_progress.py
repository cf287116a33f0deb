"""Tests of syncd.engine.progress: byte formatting and the run summary."""

from __future__ import annotations

import time

import pytest

from syncd.engine.progress import Summary, human_bytes
from syncd.model import Skip


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024 + 100, "10.1 KiB"),
        (1024**2, "1.0 MiB"),
        (int(2.5 * 1024**2), "2.5 MiB"),
        (5 * 1024**3, "5.0 GiB"),
        (1024**4, "1.0 TiB"),
        (3 * 1024**5, "3072.0 TiB"),  # TiB is the largest unit
        (-2048, "-2.0 KiB"),
        (512.4, "512 B"),  # rates are floats
    ],
)
def test_human_bytes(n, shown):
    assert human_bytes(n) == shown


@pytest.mark.parametrize(("n", "shown"), [(1024**2 - 1, "1.0 MiB"), (1024**3 - 1, "1.0 GiB")])
def test_human_bytes_rounds_up_into_the_next_unit(n, shown):
    assert human_bytes(n) == shown


def full_summary() -> Summary:
    return Summary(
        uploaded=3,
        updated=1,
        deleted=2,
        adopted=4,
        unchanged=5,
        hashed=6,
        bytes=2048,
        skipped=[Skip("s.tmp", "not a regular file (fifo)")],
        failed=[Skip("f.jpg", "cannot read the file: Permission denied")],
        refused=["/srv/a: refusing to delete 30 of 40 synced files"],
        unknown_kept=7,
        started=time.monotonic() - 2.0,
    )


def test_summary_as_dict():
    d = full_summary().as_dict()
    duration = d.pop("duration_s")
    assert d == {
        "uploaded": 3,
        "updated": 1,
        "deleted": 2,
        "moved": 0,
        "adopted": 4,
        "strays_deleted": 0,
        "unchanged": 5,
        "hashed": 6,
        "skipped": 1,
        "failed": 1,
        "bytes": 2048,
        "refused_deletes": 1,
        "unknown_remote_kept": 7,
    }
    assert 2.0 <= duration < 10.0
    assert duration == round(duration, 3)


def test_summary_render_lists_everything():
    lines = full_summary().render().splitlines()
    assert lines[0].startswith("uploaded 3, updated 1, deleted 2, skipped 1, failed 1 · 2.0 KiB in")
    assert lines[0].endswith("/s)")  # the byte rate
    assert lines[1:] == [
        "already on the DAM: 4 matched by content, 5 unchanged",
        (
            "kept 7 DAM files syncd did not upload (set delete_unknown = true on the folder to"
            " delete them)"
        ),
        "skipped s.tmp: not a regular file (fifo)",
        "FAILED  f.jpg: cannot read the file: Permission denied",
        "REFUSED /srv/a: refusing to delete 30 of 40 synced files",
    ]


def test_summary_render_of_a_quiet_run_is_one_line_without_a_rate():
    text = Summary().render()
    assert "\n" not in text
    assert text.startswith("uploaded 0, updated 0, deleted 0, skipped 0, failed 0 · 0 B in ")
    assert "/s" not in text


def test_summary_ok():
    assert Summary().ok
    assert Summary(skipped=[Skip("x", "ignored")], unknown_kept=3).ok
    assert not Summary(failed=[Skip("x", "boom")]).ok
    assert not Summary(refused=["too many deletes"]).ok


def test_render_without_counts_keeps_only_problems():
    s = Summary(uploaded=3)
    assert s.render(counts=False) == ""
    s.failed.append(Skip("a.jpg", "cannot read the file"))
    s.refused.append("/srv: refusing to delete 30 of 40")
    text = s.render(counts=False)
    assert "uploaded" not in text
    assert "FAILED  a.jpg: cannot read the file" in text
    assert "REFUSED /srv: refusing to delete 30 of 40" in text


def test_absorb_adds_a_part_to_the_totals():
    total = Summary(uploaded=1, bytes=10)
    part = Summary(uploaded=2, updated=1, deleted=3, moved=4, adopted=5, bytes=6)
    part.failed.append(Skip("a", "boom"))
    part.refused.append("no")
    total.absorb(part)
    assert (total.uploaded, total.updated, total.deleted, total.moved) == (3, 1, 3, 4)
    assert (total.adopted, total.bytes) == (5, 16)
    assert ([f.path for f in total.failed], total.refused) == (["a"], ["no"])
