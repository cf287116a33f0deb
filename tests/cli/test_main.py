"""End-to-end: the real `syncd` command in a subprocess against the real emulator over
HTTP, on real files under tmp_path. Covers the user journeys of `--initial-sync`, the bad
inputs, the delete-safety refusals and every exit code."""

from __future__ import annotations

import hashlib
import os
import socket
import sys

import anyio
import pytest

from syncd.emulator import serve
from tests.conftest import KEY, NAMES, TOKEN, dam_tree, local_tree, run_syncd, write, write_config


def tree(root, n=12):
    for i in range(n):
        write(root / f"dir{i % 3}" / f"sub {i % 2}" / f"file-{i}.jpg", os.urandom(100 + i))
    return root


def requests(emu):
    return sum(emu.stats.requests.values())


def writes(emu):
    return sum(v for k, v in emu.stats.requests.items() if not k.startswith("GET"))


async def test_first_sync_noop_rerun_then_changes(tmp_path, emulator):
    root = tree(tmp_path / "assets", 30)
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/assets"}])

    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    assert run.summary["uploaded"] == 30
    assert dam_tree(emulator, "/assets") == local_tree(root)
    uuids = {r.client_path: r.uuid for r in emulator.files()}

    before, before_writes = requests(emulator), writes(emulator)
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    s = run.summary
    assert (s["uploaded"], s["updated"], s["deleted"], s["hashed"]) == (0, 0, 0, 0)
    assert s["unchanged"] == 30
    # A constant number of requests: key check, recursive count, updated_after.
    assert requests(emulator) - before == 3
    assert writes(emulator) == before_writes

    write(root / "dir0" / "sub 0" / "file-0.jpg", b"new content")
    (root / "dir1" / "sub 1" / "file-1.jpg").unlink()
    write(root / "new" / "added.jpg", b"added")
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    s = run.summary
    assert (s["uploaded"], s["updated"], s["deleted"]) == (1, 1, 1)
    assert dam_tree(emulator, "/assets") == local_tree(root)
    # Untouched files keep their assets.
    after = {r.client_path: r.uuid for r in emulator.files()}
    assert after["/assets/dir2/sub 0/file-2.jpg"] == uuids["/assets/dir2/sub 0/file-2.jpg"]


async def test_awkward_names_round_trip(tmp_path, emulator):
    root = tmp_path / "src"
    for i, name in enumerate(NAMES):
        write(root / ("d #%?&+ é" if i % 2 else "") / name, f"content {i}")
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/a b"}])
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    assert dam_tree(emulator, "/a b") == local_tree(root)
    again = await run_syncd("--config", cfg, "--initial-sync")
    assert again.summary["uploaded"] == 0


async def test_bad_inputs_are_skipped_and_do_not_stop_the_run(tmp_path, emulator):
    root = tmp_path / "src"
    write(root / "ok.jpg", b"fine")
    secret = write(tmp_path / "outside" / "shadow", b"root:secret-hash:19000")
    os.symlink(secret, root / "innocent.jpg")
    os.symlink(root / "ok.jpg", root / "inside-link.jpg")
    os.mkfifo(root / "pipe.jpg")
    sock_path = root / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fsencode(sock_path))
    bad = os.open(os.fsencode(root) + b"/bad-\xff.jpg", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(bad, b"latin-1 name")
    os.close(bad)
    try:
        cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
        run = await run_syncd("--config", cfg, "--initial-sync")
    finally:
        sock.close()
    assert run.code == 0, run.stderr
    assert set(dam_tree(emulator, "/x")) == {"ok.jpg", "inside-link.jpg"}
    shadow_sha1 = hashlib.sha1(secret.read_bytes()).hexdigest()
    assert shadow_sha1 not in {r.sha1 for r in emulator.files()}
    reasons = {e["path"]: e["reason"] for e in run.events if e["event"] == "file_skipped"}
    assert "outside" in reasons["innocent.jpg"]
    assert "fifo" in reasons["pipe.jpg"]
    assert "socket" in reasons["s.sock"]
    assert any("UTF-8" in r for r in reasons.values())
    assert run.summary["skipped"] == 4


async def test_builtin_ignores_and_excludes(tmp_path, emulator):
    root = tmp_path / "src"
    keep = ["a.jpg", "psd/keep.txt", "notes.bak"]
    junk = [
        ".DS_Store",
        "Thumbs.db",
        "desktop.ini",
        "x.jpg.part",
        "y.crdownload",
        "z.tmp",
        "~$report.docx",
        ".~lock.sheet.ods#",
        ".a.jpg.swp",
        "b.jpg~",
        ".git/config",
        "d/.svn/entries",
        "big.psd",
        "cache/c.jpg",
        "d/cache/e.jpg",
    ]
    for name in keep + junk:
        write(root / name, name)
    cfg = write_config(
        tmp_path / "c.toml",
        emulator,
        [{"local": str(root), "remote": "/x", "exclude": ["*.psd", "cache/"]}],
    )
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    assert set(dam_tree(emulator, "/x")) == set(keep)


async def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path, emulator):
    root = tree(tmp_path / "src", 5)
    state = tmp_path / "state" / "s.db"
    cfg = write_config(
        tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}], state=state
    )
    run = await run_syncd("--config", cfg, "--initial-sync", "--dry-run")
    assert run.code == 0, run.stderr
    assert run.stdout.count("  upload ") == 5
    assert "plan: 5 uploads, 0 updates, 0 deletes" in run.stdout
    assert run.summary["dry_run"] is True
    assert emulator.files() == []
    assert not state.exists()

    assert (await run_syncd("--config", cfg, "--initial-sync")).code == 0
    write(root / "dir0" / "sub 0" / "file-0.jpg", b"changed")
    (root / "dir1" / "sub 1" / "file-1.jpg").unlink()
    snapshot = dam_tree(emulator, "/x")
    run = await run_syncd("--config", cfg, "--initial-sync", "--dry-run")
    assert "  update  dir0/sub 0/file-0.jpg" in run.stdout
    assert "  delete  dir1/sub 1/file-1.jpg" in run.stdout
    assert dam_tree(emulator, "/x") == snapshot


async def test_mass_delete_is_refused_until_forced(tmp_path, emulator):
    root = tmp_path / "src"
    for i in range(40):
        write(root / f"f{i:02d}.jpg", f"c{i}")
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
    assert (await run_syncd("--config", cfg, "--initial-sync")).code == 0
    for i in range(30):
        (root / f"f{i:02d}.jpg").unlink()

    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 1
    assert "--force-delete" in run.event("sync_refused")["reason"]
    assert len(dam_tree(emulator, "/x")) == 40
    assert run.summary["deleted"] == 0

    run = await run_syncd("--config", cfg, "--initial-sync", "--force-delete")
    assert run.code == 0, run.stderr
    assert dam_tree(emulator, "/x") == local_tree(root)


async def test_emptied_root_deletes_nothing(tmp_path, emulator):
    root = tree(tmp_path / "mnt", 6)
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
    assert (await run_syncd("--config", cfg, "--initial-sync")).code == 0
    for path in list(root.rglob("*")):
        if path.is_file():
            path.unlink()
    run = await run_syncd("--config", cfg, "--initial-sync", "--force-delete")
    assert run.code == 1
    assert "empty" in run.event("sync_refused")["reason"]
    assert len(dam_tree(emulator, "/x")) == 6


async def test_existing_dam_content_is_matched_not_uploaded(tmp_path, emulator):
    root = tree(tmp_path / "src", 10)
    first = write_config(
        tmp_path / "a.toml",
        emulator,
        [{"local": str(root), "remote": "/x"}],
        state=tmp_path / "a.db",
    )
    assert (await run_syncd("--config", first, "--initial-sync")).code == 0
    committed = emulator.stats.uploads_committed
    # A new machine (empty state) pointed at a DAM that already holds the files.
    fresh = write_config(
        tmp_path / "b.toml",
        emulator,
        [{"local": str(root), "remote": "/x"}],
        state=tmp_path / "b.db",
    )
    run = await run_syncd("--config", fresh, "--initial-sync")
    assert run.code == 0, run.stderr
    assert (run.summary["uploaded"], run.summary["adopted"]) == (0, 10)
    assert emulator.stats.uploads_committed == committed
    assert dam_tree(emulator, "/x") == local_tree(root)


async def test_unknown_remote_files_need_delete_unknown(tmp_path, emulator):
    root = tree(tmp_path / "src", 3)
    other = tree(tmp_path / "other", 2)
    seed = write_config(
        tmp_path / "seed.toml",
        emulator,
        [{"local": str(other), "remote": "/x/foreign"}],
        state=tmp_path / "seed.db",
    )
    assert (await run_syncd("--config", seed, "--initial-sync")).code == 0
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    assert run.summary["unknown_remote_kept"] == 2
    assert len(dam_tree(emulator, "/x")) == 5
    cfg = write_config(
        tmp_path / "c.toml",
        emulator,
        [{"local": str(root), "remote": "/x", "delete_unknown": True}],
    )
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    assert dam_tree(emulator, "/x") == local_tree(root)


async def test_failed_files_are_listed_and_exit_1_then_recover(tmp_path, emulator):
    root = tmp_path / "src"
    write(root / "small.jpg", b"x" * 100)
    write(root / "huge.mov", b"y" * 5000)
    emulator.configure({"max_upload_bytes": 1000})
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 1
    failed = run.event("file_failed")
    assert failed["path"] == "huge.mov"
    assert "ERR_FILE_TOO_LARGE" in failed["reason"]
    assert run.summary["failed"] == 1
    assert set(dam_tree(emulator, "/x")) == {"small.jpg"}

    emulator.configure({"max_upload_bytes": 0})
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr
    assert dam_tree(emulator, "/x") == local_tree(root)


@pytest.mark.e2e
async def test_big_files_stream_with_constant_memory(tmp_path):
    """A 160 MiB file goes up through the streaming PUT without being held in memory."""
    root = tmp_path / "src"
    root.mkdir()
    big = root / "master.mov"
    with big.open("wb") as f:
        for _ in range(160):
            f.write(os.urandom(1 << 20))
    async with serve(token=TOKEN, key=KEY, content="none") as emu:
        cfg = write_config(
            tmp_path / "c.toml",
            emu,
            [{"local": str(root), "remote": "/v"}],
            dam={"stream_threshold_mb": 16},
        )
        # Measure the child's peak RSS from a wrapper, so other tests' children don't count.
        probe = (
            "import resource, subprocess, sys;"
            "rc = subprocess.run(sys.argv[1:]).returncode;"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)"
        )
        env = {**os.environ, "SYNCD_API_KEY": KEY}
        with anyio.fail_after(120):
            proc = await anyio.run_process(
                [
                    sys.executable,
                    "-c",
                    probe,
                    sys.executable,
                    "-m",
                    "syncd",
                    "--config",
                    str(cfg),
                    "--initial-sync",
                ],
                env=env,
                check=False,
            )
        maxrss_kib, rc = map(int, proc.stdout.split())
        assert rc == 0, proc.stderr.decode()
        assert emu.stats.requests["PUT /{token}/v4/files"] == 1
        (rec,) = emu.files()
        assert rec.size == big.stat().st_size
        assert rec.sha1 == hashlib.sha1(big.read_bytes()).hexdigest()
    assert maxrss_kib < 120 * 1024, f"peak RSS {maxrss_kib} KiB for a 160 MiB file"


# exit codes


async def test_bad_config_exits_78_with_one_line(tmp_path, emulator):
    root = tree(tmp_path / "src", 1)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[dam]\ntoken = "{TOKEN}"\nbase_url = "{emulator.url}"\nworkerz = 4\n\n'
        f'[[folders]]\nlocal = "{root}"\nremote = "/x"\n'
    )
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 78
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(cfg) in lines[0]
    assert "dam.workerz" in lines[0]
    assert "did you mean 'workers'" in lines[0]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("folder", "needle"),
    [
        ({"local": "/does/not/exist", "remote": "/x"}, "does not exist"),
        ({"remote": "/x"}, "folders[0].local"),
        ({"local": ".", "remote": 5}, "folders[0].remote"),
    ],
)
async def test_config_problems_exit_78(tmp_path, emulator, folder, needle):
    cfg = write_config(tmp_path / "c.toml", emulator, [folder])
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 78
    assert needle in run.stderr
    assert "Traceback" not in run.stderr


async def test_overlapping_folders_exit_78(tmp_path, emulator):
    root = tree(tmp_path / "src", 1)
    cfg = write_config(
        tmp_path / "c.toml",
        emulator,
        [{"local": str(root), "remote": "/a"}, {"local": str(root / "dir0"), "remote": "/b"}],
    )
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 78
    assert "folders[0]" in run.stderr
    assert "folders[1]" in run.stderr


async def test_missing_key_exits_77(tmp_path, emulator):
    root = tree(tmp_path / "src", 1)
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
    run = await run_syncd("--config", cfg, "--initial-sync", env={"SYNCD_API_KEY": ""})
    assert run.code == 77
    assert "SYNCD_API_KEY" in run.stderr
    assert requests(emulator) == 0


async def test_rejected_key_exits_77_without_retry_storm(tmp_path, emulator):
    root = tree(tmp_path / "src", 5)
    key_file = write(tmp_path / "key", "wrong-key\n")
    key_file.chmod(0o600)
    cfg = write_config(
        tmp_path / "c.toml",
        emulator,
        [{"local": str(root), "remote": "/x"}],
        dam={"key_file": str(key_file)},
    )
    run = await run_syncd("--config", cfg, "--initial-sync", env={"SYNCD_API_KEY": ""})
    assert run.code == 77
    assert "rejected the API key" in run.stderr
    assert "wrong-key" not in run.stderr
    assert requests(emulator) == 1
    assert emulator.files() == []


async def test_key_never_appears_in_output(tmp_path, emulator):
    root = tree(tmp_path / "src", 3)
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
    run = await run_syncd("--config", cfg, "--initial-sync", "--log-level", "debug")
    assert run.code == 0
    assert KEY not in run.stderr + run.stdout
    dry = await run_syncd("--config", cfg, "--initial-sync", "--dry-run")
    assert KEY not in dry.stderr + dry.stdout


async def test_default_config_path_from_environment(tmp_path, emulator):
    root = tree(tmp_path / "src", 2)
    cfg = write_config(tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x"}])
    run = await run_syncd("--initial-sync", env={"SYNCD_CONFIG": str(cfg)})
    assert run.code == 0, run.stderr
    assert len(dam_tree(emulator, "/x")) == 2


async def test_bad_exclude_pattern_exits_78(tmp_path, emulator):
    root = tree(tmp_path / "src", 1)
    cfg = write_config(
        tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/x", "exclude": ["!"]}]
    )
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 78
    assert "folders[0].exclude[0]" in run.stderr
    assert "Traceback" not in run.stderr


async def test_unknown_project_token_exits_78(tmp_path, emulator):
    root = tree(tmp_path / "src", 1)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[dam]\ntoken = "nosuchproject"\nbase_url = "{emulator.url}"\n\n'
        f'[[folders]]\nlocal = "{root}"\nremote = "/x"\n'
    )
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 78
    assert str(cfg) in run.stderr
    assert "dam.token" in run.stderr
    assert "Traceback" not in run.stderr
