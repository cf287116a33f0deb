"""`syncd probe` against the real emulator over real HTTP: each reading of each
undocumented behaviour is reported as the emulator is set to, each permission the key
lacks is reported missing, and nothing is left behind, whatever happens (a check that
raises, a cancellation, SIGINT or SIGTERM); when the key cannot delete, the probe names
exactly what it left. Most variants run the probe's core in-process for speed; the exit
codes, the JSON document, the text table and the signals go through the real command."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.config.schema import load_config
from syncd.emulator import Emulator
from syncd.emulator.model import Folder
from syncd.probe.report import render, to_json
from syncd.probe.run import PERMISSIONS, Findings, Probe, run_probe
from tests.conftest import KEY, REPO, run_syncd, write_config


@pytest.fixture
def cfg(tmp_path: Path, emulator: Emulator) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return write_config(tmp_path / "syncd.toml", emulator, [{"local": str(root), "remote": "/m"}])


async def probe(cfg: Path) -> Findings:
    with anyio.fail_after(20):
        return await run_probe(load_config(cfg), KEY)


def left_on(emu: Emulator) -> tuple[list[str], list[str]]:
    """Every file and every folder on the emulator, by path."""
    folders = [f.path for f in emu.store.root.subtree()[1:]]
    return sorted(r.path for r in emu.files()), sorted(folders)


def nothing_left(emu: Emulator) -> None:
    assert left_on(emu) == ([], [])


# (emulator options, what the probe must report)
VARIANTS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"naming": "keep"}, {"naming": "keep", "same_name": "override"}),
    ({"naming": "suffix"}, {"naming": "suffix", "same_name": None}),
    ({"naming": "uuid"}, {"naming": "random", "same_name": None}),
    ({"same_name": "version"}, {"same_name": "version"}),
    ({"same_name": "refuse"}, {"same_name": "refuse"}),
    # The policy acts on stored names, which suffix naming makes unique: not observable.
    ({"same_name": "refuse", "naming": "suffix"}, {"same_name": None}),
    ({"duplicates": "accept"}, {"duplicates": "accept", "identical_same_name": "skipped"}),
    ({"duplicates": "refuse"}, {"duplicates": "refuse", "identical_same_name": "skipped"}),
    ({"q_match": "stored"}, {"q_mode": "substring", "q_matches_original_name": False}),
    ({"q_match": "both"}, {"q_mode": "substring", "q_matches_original_name": True}),
    ({"q_match": "words"}, {"q_mode": "words", "q_matches_original_name": False}),
    ({"q_match": "ignored"}, {"q_mode": "ignored", "q_matches_original_name": False}),
    # Suffix naming gives info.name a part the stored name lacks, even with no rename.
    (
        {"q_match": "both", "naming": "suffix", "rename_info_name": "rewritten"},
        {"q_matches_original_name": True},
    ),
    ({"rename_info_name": "kept"}, {"rename_rewrites_info_name": False}),
    (
        {"rename_info_name": "rewritten", "q_match": "both"},
        # keep naming, and info.name follows the rename: not observable, so false
        {"rename_rewrites_info_name": True, "q_matches_original_name": False},
    ),
    (
        {"updated_after": "exact"},
        {"updated_after_honoured": True, "updated_after_granularity": "exact"},
    ),
    (
        {"updated_after": "second"},
        {"updated_after_honoured": True, "updated_after_granularity": "second"},
    ),
    (
        {"updated_after": "ignored"},
        {"updated_after_honoured": False, "updated_after_granularity": None},
    ),
    ({"sort": "honoured"}, {"sort_honoured": True}),
    ({"sort": "ignored"}, {"sort_honoured": False}),
    ({"listing_sha1": False}, {"listing_sha1": False}),
    ({"noop_conflict": True}, {"noop_rename_conflict": True}),
    ({"noop_conflict": False}, {"noop_rename_conflict": False}),
]


async def test_reports_the_rate_limit_headers_it_saw(emulator, cfg):
    emulator.configure({"rate_limit": 20})  # the probe's burst is faster: one 429
    found = await probe(cfg)
    assert found.rate_limit_headers == {"Retry-After": "1"}
    assert found.ok, found
    nothing_left(emulator)


@pytest.mark.parametrize(
    ("options", "expected"), VARIANTS, ids=[json.dumps(o)[1:-1] for o, _ in VARIANTS]
)
async def test_reports_each_reading_and_leaves_nothing(emulator, cfg, options, expected):
    emulator.configure(options)
    found = await probe(cfg)
    assert {k: getattr(found, k) for k in expected} == expected
    assert found.listing_lag_s == 0.0
    assert found.permissions == dict.fromkeys(PERMISSIONS, True)
    assert found.rate_limit_headers == {}
    assert found.max_post_bytes is None
    assert found.failures == []
    assert found.ok, found
    nothing_left(emulator)


async def test_measures_the_listing_lag(emulator, cfg):
    emulator.configure({"listing_lag_s": 0.5, "q_match": "both"})
    found = await probe(cfg)
    # Polled at growing intervals (about 0.6 s here), rounded up to 0.1 s; the margin
    # is for a busy machine.
    assert found.listing_lag_s is not None
    assert 0.5 <= found.listing_lag_s <= 1.5
    # The listing checks waited for the lag: they still see every write.
    assert found.q_mode == "substring"
    assert found.q_matches_original_name is True
    assert found.updated_after_granularity == "second"
    assert found.ok, found
    nothing_left(emulator)


# denied -> what is reported missing: what needs a file cannot be exercised without one
DENIED = {
    "OBJECTS_LIST": {"OBJECTS_LIST"},
    "OBJECTS_FETCH": {"OBJECTS_FETCH"},
    "FILE_UPLOAD": {"FILE_UPLOAD", "FILE_RENAME", "FILE_MOVE", "FILE_DELETE"},
    "FILE_RENAME": {"FILE_RENAME"},
    "FILE_MOVE": {"FILE_MOVE"},
    "DIR_CREATE": {"DIR_CREATE"},
}


@pytest.mark.parametrize(("denied", "missing"), DENIED.items(), ids=list(DENIED))
async def test_a_missing_permission_is_reported_and_nothing_is_left(emulator, cfg, denied, missing):
    emulator.configure({"denied_permissions": [denied]})
    found = await probe(cfg)
    assert found.permissions == {p: p not in missing for p in PERMISSIONS}
    assert any(n.startswith(f"{denied} is missing") for n in found.notes)
    assert sorted(found.unexercised) == sorted(missing - {denied})
    unexercised = [n.split()[0] for n in found.notes if "could not be exercised" in n]
    assert unexercised == found.unexercised
    assert not found.ok
    assert found.cleaned_up
    nothing_left(emulator)


async def test_without_file_delete_it_stops_at_one_file_and_names_it(emulator, cfg):
    emulator.configure({"denied_permissions": ["FILE_DELETE"]})
    found = await probe(cfg)
    # The other permissions are exercised on that one file, without making anything new.
    assert found.permissions == {p: p != "FILE_DELETE" for p in PERMISSIONS}
    (record,) = emulator.files()
    scratch = found.scratch_folder
    assert left_on(emulator) == ([record.path], [scratch])
    assert found.left_behind == [
        f"file {record.path} (uuid {record.uuid})",
        f"folder {scratch} (uuid {emulator.store.folder(scratch).uuid})",
    ]
    assert not found.cleaned_up


async def test_without_dir_delete_the_folders_are_named(emulator, cfg):
    emulator.configure({"denied_permissions": ["DIR_DELETE"]})
    found = await probe(cfg)
    assert found.permissions == {p: p != "DIR_DELETE" for p in PERMISSIONS}
    files, folders = left_on(emulator)
    assert files == []
    assert folders == [found.scratch_folder, f"{found.scratch_folder}/moved"]
    assert [line.split(" (")[0] for line in found.left_behind] == [f"folder {f}" for f in folders]


async def test_all_inside_the_scratch_folder_goes_and_nothing_outside(emulator, cfg, monkeypatch):
    # A file the probe holds no uuid for, as when an upload's reply was lost, is swept; a
    # file outside the scratch folder is never touched.
    mine = emulator.store.upload("/m", "mine.txt", sha1="1" * 40, size=1)
    settle = Probe.settle

    async def with_a_stray(self: Probe) -> None:
        emulator.store.upload(f"{self.path}/moved", "stray.txt", sha1="2" * 40, size=1)
        await settle(self)

    monkeypatch.setattr(Probe, "settle", with_a_stray)
    found = await probe(cfg)
    assert found.ok, found
    assert left_on(emulator) == (["/m/mine.txt"], ["/m"])
    assert emulator.files()[0].uuid == mine.uuid


async def test_a_dam_that_ignores_folder_loses_nothing_outside(emulator, cfg, monkeypatch):
    # Listings that answer for the whole project: the sweep and the folder removal must
    # still touch nothing outside the scratch folder.
    emulator.store.upload("/m", "mine.txt", sha1="1" * 40, size=1)
    emulator.store.ensure_folder("/m/empty")
    store = emulator.store
    list_files, list_folders = store.list_files, store.list_folders
    monkeypatch.setattr(
        store, "list_files", lambda folder, **kw: list_files(store.root, **kw | {"recursive": True})
    )
    monkeypatch.setattr(
        store,
        "list_folders",
        lambda folder, **kw: list_folders(store.root, **kw | {"recursive": True}),
    )
    found = await probe(cfg)
    assert found.cleaned_up, found
    assert left_on(emulator) == (["/m/mine.txt"], ["/m", "/m/empty"])


async def test_a_check_that_raises_still_cleans_up(emulator, cfg, monkeypatch):
    async def broken(self: Probe) -> None:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(Probe, "check_q", broken)
    with pytest.raises(ExceptionGroup) as caught:
        await probe(cfg)
    assert caught.group_contains(RuntimeError, match="a bug in a check")
    nothing_left(emulator)


async def test_a_cancelled_probe_still_cleans_up(emulator, cfg):
    emulator.configure({"slow_ms": 20})
    config = load_config(cfg)
    with anyio.fail_after(20):
        with anyio.move_on_after(0.15) as scope:  # a few requests in: files exist
            await run_probe(config, KEY)
    assert scope.cancelled_caught
    nothing_left(emulator)


# ---- the real command --------------------------------------------------------------------


async def test_the_command_prints_one_json_document(emulator, cfg):
    emulator.configure({"naming": "suffix", "q_match": "both"})
    run = await run_syncd("probe", "--config", cfg, "--json")
    assert run.code == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["naming"] == "suffix"
    assert report["same_name"] is None
    assert report["q_matches_original_name"] is True
    assert report["rename_rewrites_info_name"] is False
    assert report["listing_lag_s"] == 0.0
    assert report["permissions"] == dict.fromkeys(PERMISSIONS, True)
    assert report["scratch_folder"].startswith("/.syncd-probe-")
    assert report["cleaned_up"] is True
    assert report["max_post_bytes"] is None
    assert any("max_post_bytes" in n for n in report["notes"])
    assert any(a.startswith("set dam.listing_lag_s = 1 ") for a in report["advice"])
    assert run.stderr == ""
    nothing_left(emulator)


async def test_the_command_prints_a_plain_table(emulator, cfg):
    emulator.configure({"naming": "suffix"})
    run = await run_syncd("probe", "--config", cfg)
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    (same_name,) = [line for line in lines if line.startswith("same_name ")]
    assert same_name.split(None, 2)[1:] == [
        "-",
        "not observable: the naming rule gives every upload a fresh name",
    ]
    assert any(line.split()[:2] == ["naming", "suffix"] for line in lines)
    assert any(line.split()[:3] == ["permission", "DIR_DELETE", "yes"] for line in lines)
    assert "advice:" in lines
    assert "\x1b" not in run.stdout
    nothing_left(emulator)


async def test_a_missing_permission_exits_1_and_says_which(emulator, cfg):
    emulator.configure({"denied_permissions": ["FILE_RENAME"]})
    run = await run_syncd("probe", "--config", cfg, "--json")
    assert run.code == 1
    report = json.loads(run.stdout)
    assert report["permissions"]["FILE_RENAME"] is False
    assert "the key lacks FILE_RENAME" in run.stderr
    assert any(a.startswith("grant FILE_RENAME") for a in report["advice"])
    nothing_left(emulator)


async def test_what_it_cannot_delete_is_named_with_where(emulator, cfg):
    emulator.configure({"denied_permissions": ["FILE_DELETE"]})
    run = await run_syncd("probe", "--config", cfg)
    assert run.code == 1
    (record,) = emulator.files()
    assert f"left behind in {emulator.url}/proj: file {record.path}" in run.stderr
    assert "LEFT BEHIND" in run.stdout


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SYNCD_API_KEY": "wrong-key"}, "the DAM rejected the API key"),
        ({"SYNCD_API_KEY": ""}, "no API key configured"),
    ],
    ids=["rejected", "missing"],
)
async def test_a_rejected_or_missing_key_exits_77_having_written_nothing(emulator, cfg, env, says):
    run = await run_syncd("probe", "--config", cfg, "--json", env=env)
    assert run.code == 77
    assert says in run.stderr
    assert run.stdout == ""
    assert not [r for r in emulator.stats.requests if not r.startswith("GET ")]
    nothing_left(emulator)


async def test_a_bad_config_exits_78_naming_file_and_key(emulator, cfg):
    cfg.write_text(cfg.read_text().replace("[dam]", "[dam]\nworkers = 0"))
    run = await run_syncd("probe", "--config", cfg)
    assert run.code == 78
    assert f"{cfg}: dam.workers:" in run.stderr
    assert not emulator.stats.requests


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_mid_run_stops_it_and_nothing_is_left(emulator, cfg, monkeypatch, signum):
    # Slow replies keep it running; the signal lands while the first upload is in flight,
    # so that upload may be stored after its reply is lost: the sweep must find it.
    emulator.configure({"slow_ms": 100})
    created = anyio.Event()
    ensure = emulator.store.ensure_folder

    def spy(path: str) -> Folder:
        folder = ensure(path)
        if folder.path.startswith("/.syncd-probe-"):
            created.set()
        return folder

    monkeypatch.setattr(emulator.store, "ensure_folder", spy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env |= {"SYNCD_API_KEY": KEY, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "syncd", "probe", "--config", str(cfg), "--json"]
    async with await anyio.open_process(command, env=env) as proc:
        with anyio.fail_after(30):
            await created.wait()
            proc.send_signal(signum)
            await proc.wait()
            assert proc.stdout is not None
            out = b"".join([chunk async for chunk in proc.stdout])
    assert proc.returncode == 130
    report = json.loads(out)
    assert report["interrupted"] == signum.name
    assert report["cleaned_up"] is True
    nothing_left(emulator)


def test_text_from_the_dam_is_escaped_before_it_is_printed():
    found = Findings(dam="http://dam/t", scratch_folder="/.syncd-probe-00")
    found.notes.append("evil \x1b[31mred\x1b[0m\nnext line \u202eevil")
    found.rate_limit_headers = {"X-RateLimit-Limit\x07": "10\r"}
    text = render(found)
    document = to_json(found)
    for shown in (text, json.loads(document)["notes"][0]):
        assert "\x1b" not in shown
        assert "\u202e" not in shown
    assert "evil \\x1b[31mred\\x1b[0m\\nnext line \\u202eevil" in text
    assert "X-RateLimit-Limit\\x07: 10\\r" in text
    assert all(line.isprintable() for line in text.splitlines())
