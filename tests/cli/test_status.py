"""`syncd status`: the real command, read while a real daemon writes the state, and its
text and JSON forms."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.cli.status import collect, render
from syncd.config.schema import load_config
from syncd.state.store import State
from tests.conftest import KEY, run_syncd, write
from tests.harness import config, make_files, running_daemon


async def status_json(cfg: Path) -> dict[str, Any]:
    run = await run_syncd("status", "--config", cfg, "--json")
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


async def test_status_while_the_daemon_runs_and_after_it_stopped(tmp_path, emulator, dam):
    root = tmp_path / "root"
    make_files(root, 20)
    write(root / "huge.bin", b"x" * 5000)  # the DAM refuses it: parked
    emulator.options.max_upload_bytes = 4000
    # A long settle window keeps new files pending long enough to be seen.
    cfg = config(tmp_path, emulator, root, settle_ms=60_000)
    async with running_daemon(cfg, dam.pulse) as d:
        with anyio.fail_after(30):
            report = await status_json(cfg)
            assert report["daemon_running"] is True
            assert report["daemon_pid"] == d.proc.pid
            (folder,) = report["folders"]
            assert folder["local"] == str(root)
            assert folder["in_sync"] == 20
            assert folder["pending"] == 0
            assert folder["last_reconcile"] is not None
            assert folder["last_sync"] is not None
            assert folder["parked_count"] == 1
            (parked,) = folder["parked"]
            assert parked["path"] == "huge.bin"
            assert parked["op"] == "upload"
            assert "413" in parked["error"]

            for name in ("n1.txt", "n2.txt", "n3.txt"):
                write(root / name, name)
            # The daemon saves its queue every second: look (each look takes a process
            # start, ~0.3 s) until it has.
            while (await status_json(cfg))["folders"][0]["pending"] != 3:
                pass

            text = await run_syncd("status", "--config", cfg)
            assert text.code == 0
            assert f"daemon: running (pid {d.proc.pid})" in text.stdout
            assert "in sync:        20" in text.stdout
            assert "pending:        3" in text.stdout
            assert "parked:         1" in text.stdout
            assert "huge.bin: upload failed" in text.stdout
    after = await status_json(cfg)
    assert after["daemon_running"] is False
    assert after["folders"][0]["pending"] == 3  # left in the journal for the next start
    for out in (json.dumps(report), text.stdout, text.stderr, json.dumps(after)):
        assert KEY not in out


async def test_status_of_a_never_synced_folder(tmp_path, emulator):
    root = tmp_path / "root"
    cfg = load_config(config(tmp_path, emulator, root))
    report = collect(cfg)
    assert report.daemon_pid is None
    assert not cfg.state.path.exists()  # looking never creates the database
    assert report.folders[0].in_sync == 0
    assert "last reconcile: never" in render(report)
    assert "daemon: not running" in render(report)


@pytest.mark.e2e
async def test_status_with_a_bad_config_names_the_file(tmp_path):
    cfg = write(tmp_path / "bad.toml", "[dam\n")
    run = await run_syncd("status", "--config", cfg)
    assert run.code == 78
    assert f"{cfg}: line 1" in run.stderr


async def test_status_reads_a_database_an_older_syncd_wrote(tmp_path, emulator):
    root = tmp_path / "root"
    cfg = load_config(config(tmp_path, emulator, root))
    with State.open(cfg.state.path) as state:
        fid = state.ensure_folder(str(root), "/x")
    # What syncd 0.1 (schema 3) left: no reconciled_at column, not migrated yet.
    conn = sqlite3.connect(cfg.state.path)
    conn.execute("ALTER TABLE folders DROP COLUMN reconciled_at")
    conn.execute("UPDATE folders SET last_sync = 0 WHERE id = ?", (fid,))
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    (folder,) = collect(cfg).folders
    assert folder.last_reconcile is None
    assert folder.last_sync == "1970-01-01T00:00:00Z"


async def test_status_shows_refused_deletes_and_the_command_that_carries_them_out(
    tmp_path, emulator
):
    root = tmp_path / "root"
    make_files(root, 40)
    cfg = config(tmp_path, emulator, root, max_delete_percent=10, max_delete_count=5)
    assert (await run_syncd("sync", "--config", cfg)).code == 0
    for path in sorted(root.rglob("*.txt"))[:30]:
        path.unlink()

    refused = await run_syncd("--config", cfg, "sync")  # global option before the command
    assert refused.code == 1
    assert len(emulator.files()) == 40  # nothing was deleted

    (folder,) = (await status_json(cfg))["folders"]
    assert folder["refused_deletes"] == 30
    assert "refusing to delete 30 of 40" in folder["refused"]
    assert folder["refused_since"] is not None
    assert folder["command"] == f"syncd sync --force-delete --config {cfg}"
    text = (await run_syncd("status", "--config", cfg)).stdout
    assert "REFUSED:        30 deletes held back since" in text
    assert f"    syncd sync --force-delete --config {cfg}" in text.splitlines()

    # The command status gave carries the deletes out, and the refusal is gone.
    command = folder["command"].split()
    assert command[:3] == ["syncd", "sync", "--force-delete"]
    done = await run_syncd(*command[1:])
    assert done.code == 0, done.stderr
    assert len(emulator.files()) == 10
    (folder,) = (await status_json(cfg))["folders"]
    assert folder["refused"] is None
    assert folder["command"] is None
    assert "REFUSED" not in (await run_syncd("status", "--config", cfg)).stdout


async def test_a_run_that_no_longer_needs_the_deletes_clears_the_refusal(tmp_path, emulator):
    root = tmp_path / "root"
    make_files(root, 40)
    cfg = config(tmp_path, emulator, root, max_delete_percent=10, max_delete_count=5)
    assert (await run_syncd("sync", "--config", cfg)).code == 0
    moved = tmp_path / "aside"
    root.rename(moved)
    root.mkdir()  # the disk "not mounted": an empty root
    assert (await run_syncd("sync", "--config", cfg)).code == 1
    (folder,) = (await status_json(cfg))["folders"]
    assert folder["refused_deletes"] == 40
    root.rmdir()
    moved.rename(root)  # mounted again: nothing to delete
    assert (await run_syncd("sync", "--config", cfg)).code == 0
    (folder,) = (await status_json(cfg))["folders"]
    assert folder["refused"] is None
    assert len(emulator.files()) == 40
