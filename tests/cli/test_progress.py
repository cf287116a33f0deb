"""Tests of syncd.cli.progress: the progress bar on a terminal and the progress events in logs."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from syncd.cli.progress import LogProgress, TtyProgress


def test_log_progress_emits_sync_progress():
    progress = LogProgress(every_s=0)
    with capture_logs() as logs:
        progress.add(4, 4000)
        progress.advance(1, 1000)
        progress.advance(2, 2000)
        progress.close()
    assert [e["event"] for e in logs] == ["sync_progress", "sync_progress"]
    last = logs[-1]
    assert last["log_level"] == "info"
    assert {k: last[k] for k in ("files", "files_total", "bytes", "bytes_total")} == {
        "files": 3,
        "files_total": 4,
        "bytes": 3000,
        "bytes_total": 4000,
    }
    assert last["files_per_s"] > 0
    assert last["eta_s"] is not None
    assert last["eta_s"] >= 0


def test_log_progress_waits_for_its_interval():
    progress = LogProgress(every_s=3600)
    with capture_logs() as logs:
        progress.add(2, 10)
        progress.advance(1, 5)
        progress.advance(1, 5)
    assert logs == []


def test_tty_progress_draws_a_bar():
    out = io.StringIO()
    bar = TtyProgress(out)
    bar.add(2, 2048)
    bar.advance(1, 1024)
    bar.advance(1, 1024)
    bar.close()
    text = out.getvalue()
    assert "2/2 files" in text
    assert "2.0 KiB" in text
