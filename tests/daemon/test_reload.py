"""End-to-end SIGHUP: the real `syncd` daemon re-reads its config and key while running,
against the real emulator, with `$NOTIFY_SOCKET` showing RELOADING=1 and READY=1."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
from structlog.testing import capture_logs

from syncd.config.schema import Config, load_config
from syncd.emulator import Emulator
from tests.conftest import KEY, dam_tree, write, write_config
from tests.harness import (
    DaemonRun,
    NotifySocket,
    daemon_in_process,
    notify_socket,
    running_daemon,
)


def folders(tmp_path: Path, *specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"local": str(tmp_path / name), "remote": f"/{name}", **extra} for name, extra in specs]


async def reload(d: DaemonRun, listener: NotifySocket) -> dict[str, Any]:
    """SIGHUP; wait for RELOADING=1 then READY=1, and return the reload's log event."""
    before, seen = len(listener.sequence()), len(d.events)
    d.proc.send_signal(signal.SIGHUP)
    await d.until(lambda: len(listener.sequence()) >= before + 2, what="READY=1")
    assert listener.sequence()[before:] == ["RELOADING", "READY"]
    outcomes = ("reload_done", "reload_rejected")
    found = await d.until(
        lambda: [e for e in d.events[seen:] if e["event"] in outcomes], what="the reload's outcome"
    )
    return found[-1]


async def test_sighup_adds_removes_and_changes_folders_without_remote_deletes(
    tmp_path, emulator, dam, short_dir
):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    write(tmp_path / "a/one.txt", "1")
    write(tmp_path / "a/pic.psd", "psd")  # excluded at first
    write(tmp_path / "b/keep.txt", "b")
    write(tmp_path / "c/early.txt", "c")  # c is not configured yet
    cfg = tmp_path / "syncd.toml"
    sync = {"settle_ms": 100}
    write_config(
        cfg,
        emulator,
        folders(tmp_path, ("a", {"exclude": ["*.psd"]}), ("b", {})),
        sync=sync,
    )
    pulse = dam.pulse
    async with (
        notify_socket(short_dir, pulse) as listener,
        running_daemon(cfg, pulse, env={"NOTIFY_SOCKET": listener.address}) as d,
    ):
        with anyio.fail_after(30):
            assert dam_tree(emulator, "/a").keys() == {"one.txt"}
            assert dam_tree(emulator, "/b").keys() == {"keep.txt"}

            # a: *.psd no longer excluded, *.raw now is; b: removed; c: added.
            write_config(
                cfg,
                emulator,
                folders(tmp_path, ("a", {"exclude": ["*.raw"]}), ("c", {})),
                sync=sync,
            )
            done = await reload(d, listener)
            assert done["event"] == "reload_done"
            assert (done["added"], done["removed"], done["changed"]) == (1, 1, 1)

            # The new folder and the un-excluded file come up with the reconcile.
            await d.until(lambda: "early.txt" in dam_tree(emulator, "/c"), what="c synced")
            await d.until(lambda: "pic.psd" in dam_tree(emulator, "/a"), what="pic.psd")

            # b is no longer watched: its changes touch nothing on the DAM.
            (tmp_path / "b/keep.txt").unlink()
            write(tmp_path / "b/late.txt", "late")
            write(tmp_path / "a/new.raw", "raw")  # excluded now
            write(tmp_path / "c/later.txt", "watched")
            await d.until(lambda: "later.txt" in dam_tree(emulator, "/c"), what="c watched")
            # b's and the .raw events came first; had they been acted on, it would show.
            assert dam_tree(emulator, "/b").keys() == {"keep.txt"}
            assert "new.raw" not in dam_tree(emulator, "/a")
    assert listener.sequence() == ["READY", "RELOADING", "READY", "STOPPING"]


async def test_an_invalid_config_is_rejected_and_the_old_one_stays(
    tmp_path, emulator, dam, short_dir
):
    (tmp_path / "a").mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml", emulator, folders(tmp_path, ("a", {})), sync={"settle_ms": 100}
    )
    good = cfg.read_text()
    async with (
        notify_socket(short_dir, dam.pulse) as listener,
        running_daemon(cfg, dam.pulse, env={"NOTIFY_SOCKET": listener.address}) as d,
    ):
        with anyio.fail_after(30):
            cfg.write_text(good.replace("[dam]", "[dam]\nworkers = 0"))
            rejected = await reload(d, listener)
            assert rejected["event"] == "reload_rejected"
            assert f"{cfg}: dam.workers: " in rejected["error"]

            cfg.write_text(good + "\n[[folders]\n")  # broken TOML
            rejected = await reload(d, listener)
            assert rejected["event"] == "reload_rejected"
            assert "invalid TOML" in rejected["error"]

            # Still running on the old config.
            write(tmp_path / "a/after.txt", "x")
            await d.until(lambda: "after.txt" in dam_tree(emulator, "/a"), what="after.txt")
    assert listener.sequence() == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]


async def test_sighup_rereads_a_rotated_key_and_refuses_a_bad_one(
    tmp_path, emulator: Emulator, dam, short_dir
):
    (tmp_path / "a").mkdir()
    key_file = write(tmp_path / "api-key", KEY + "\n")
    os.chmod(key_file, 0o600)
    cfg = write_config(
        tmp_path / "syncd.toml",
        emulator,
        folders(tmp_path, ("a", {})),
        dam={"key_file": str(key_file)},
        sync={"settle_ms": 100},
    )
    env = {"SYNCD_API_KEY": ""}  # the key comes from key_file only
    async with (
        notify_socket(short_dir, dam.pulse) as listener,
        running_daemon(cfg, dam.pulse, env={**env, "NOTIFY_SOCKET": listener.address}) as d,
    ):
        with anyio.fail_after(30):
            # A wrong key is refused at the reload; the old one keeps working.
            key_file.write_text("not-the-key\n")
            rejected = await reload(d, listener)
            assert rejected["event"] == "reload_rejected"
            assert "not-the-key" not in rejected["error"]
            await d.wait_event("reconcile_done", lambda e: e["reason"] == "reload")
            seen = len(d.events)
            write(tmp_path / "a/one.txt", "1")
            await d.until(lambda: "one.txt" in dam_tree(emulator, "/a"), what="one.txt")
            # Let that batch finish: the old key must not be revoked under a request.
            await d.until(
                lambda: any(e["event"] == "sync_batch" for e in d.events[seen:]), what="batch"
            )

            # The rotation: the DAM takes only the new key from now on.
            emulator.key = "rotated-key-0c1d"
            key_file.write_text("rotated-key-0c1d\n")
            done = await reload(d, listener)
            assert done["event"] == "reload_done"
            assert done["key_changed"] is True
            write(tmp_path / "a/two.txt", "2")
            await d.until(lambda: "two.txt" in dam_tree(emulator, "/a"), what="two.txt")
    log = "\n".join(d.lines)
    assert "rotated-key-0c1d" not in log
    assert "not-the-key" not in log


async def test_a_folder_that_cannot_be_watched_rejects_the_whole_reload(
    tmp_path, emulator, dam, short_dir
):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg_file = write_config(
        tmp_path / "syncd.toml", emulator, folders(tmp_path, ("a", {})), sync={"settle_ms": 50}
    )
    old = load_config(cfg_file)
    # The new config adds b and changes a's excludes (its watcher restarts); b vanishes
    # between the config check and its watcher's start.
    write_config(
        cfg_file,
        emulator,
        folders(tmp_path, ("a", {"exclude": ["*.raw"]}), ("b", {})),
        sync={"settle_ms": 50},
    )
    new = load_config(cfg_file)

    def reread(_: Config) -> tuple[Config, str]:
        (tmp_path / "b").rmdir()
        return new, KEY

    async with notify_socket(short_dir, dam.pulse) as listener:
        with anyio.fail_after(20), capture_logs() as logs:
            async with daemon_in_process(old, listener, reread=reread) as daemon:
                await daemon.ready.wait()
                daemon.request_reload()
                while listener.sequence() != ["READY", "RELOADING", "READY"]:
                    await listener.pulse.wait()
                assert daemon.config is old
                assert [f.config for f in daemon.watchers.folders.values()] == list(old.folders)
                # The old watcher of a still runs (no *.raw exclude): its files go up.
                write(tmp_path / "a/x.raw", "raw")
                while "x.raw" not in dam_tree(emulator, "/a"):
                    await dam.pulse.wait()
                daemon.request_stop()
    (rejected,) = [e for e in logs if e["event"] == "reload_rejected"]
    assert "FileNotFoundError" in rejected["error"]
