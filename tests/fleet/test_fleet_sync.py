"""A fleet end to end: real `syncd --initial-sync` processes with `[fleet]`, a real
redis-server and the emulator rate-limited over real HTTP. Hosts that share the quota
stay under it together; Redis dying mid-run costs neither the run nor a duplicate."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from syncd.emulator import serve
from tests.conftest import KEY, TOKEN, Run, dam_tree, local_tree, run_syncd, write, write_config
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e


def host_config(tmp_path: Path, emu: object, i: int, files: int, fleet: dict[str, str]) -> Path:
    root = tmp_path / f"host-{i}"
    for n in range(files):
        write(root / f"d{n % 3}" / f"f{n:03d}.txt", f"host {i} file {n}\n" * 3)
    return write_config(
        tmp_path / f"host-{i}.toml",
        emu,  # type: ignore[arg-type]
        [{"local": str(root), "remote": f"/host-{i}"}],
        state=tmp_path / f"state-{i}.db",
        fleet=fleet,
    )


async def test_two_hosts_learn_one_rate_together(tmp_path: Path, redis: RedisServer) -> None:
    async with serve(token=TOKEN, key=KEY, rate_limit=25, rate_burst=5) as emu:
        configs = [host_config(tmp_path, emu, i, 40, {"redis_url": redis.url}) for i in (1, 2)]
        runs: list[Run] = []

        async def one(cfg: Path) -> None:
            runs.append(await run_syncd("--config", cfg, "--initial-sync"))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for cfg in configs:
                    tg.start_soon(one, cfg)
        for i in (1, 2):
            assert dam_tree(emu, f"/host-{i}") == local_tree(tmp_path / f"host-{i}")
    for run in runs:
        assert run.code == 0, run.stderr[-3000:]
        assert run.event("fleet_joined")["key_prefix"] == f"syncd:{{{TOKEN}}}:"
    # One rate for the pair, measured from what the DAM accepted from both: near the
    # DAM's 25/s, not each host's share of it.
    learned = float(redis.command("GET", f"syncd:{{{TOKEN}}}:rate"))
    assert 0.75 * 25 < learned < 1.25 * 25


async def test_a_host_that_joins_later_starts_at_the_fleets_rate(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with serve(token=TOKEN, key=KEY, rate_limit=25, rate_burst=5) as emu:
        refused = []
        for i in (1, 2):
            cfg = host_config(tmp_path, emu, i, 50, {"redis_url": redis.url})
            before = emu.stats.rate_limited
            with anyio.fail_after(60):
                run = await run_syncd("--config", cfg, "--initial-sync")
            assert run.code == 0, run.stderr[-3000:]
            refused.append(emu.stats.rate_limited - before)
            assert dam_tree(emu, f"/host-{i}") == local_tree(tmp_path / f"host-{i}")
    # The first host learned the limit the hard way; the second is spaced to it from its
    # first request instead of bursting into it (a host of its own would).
    assert refused[0] >= 5, refused
    assert refused[1] <= 2, refused


async def test_redis_dying_mid_run_costs_no_file_and_no_duplicate(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with serve(token=TOKEN, key=KEY, rate_limit=40, rate_burst=5) as emu:
        cfg = host_config(tmp_path, emu, 1, 60, {"redis_url": redis.url})
        result: list[Run] = []

        async def sync() -> None:
            result.append(await run_syncd("--config", cfg, "--initial-sync"))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sync)
                while emu.stats.statuses[200] < 15:  # noqa: ASYNC110  # the emulator's counter
                    await anyio.sleep(0.02)
                redis.stop()
        assert dam_tree(emu, "/host-1") == local_tree(tmp_path / "host-1")
    (run,) = result
    assert run.code == 0, run.stderr[-3000:]
    assert [e["event"] for e in run.events].count("fleet_unreachable") == 1
    warning = run.event("fleet_unreachable")
    assert warning["key"] == "fleet.redis_url"
    assert "pacing this host alone" in warning["action"]


async def test_two_hosts_split_one_root_by_excludes_into_one_dam_folder(
    tmp_path: Path, redis: RedisServer
) -> None:
    # The README's sharding recipe: one root, one DAM folder, each host its sub-folders.
    root = tmp_path / "archive"
    for year in ("2019", "2020", "2021"):
        for n in range(5):
            write(root / year / f"shot-{n}.jpg", f"{year} {n}")
    write(root / "top.jpg", "named by no host")
    takes = {"a": ["2019"], "b": ["2020", "2021"]}
    async with serve(token=TOKEN, key=KEY, rate_limit=60, rate_burst=10) as emu:
        configs = [
            write_config(
                tmp_path / f"{host}.toml",
                emu,
                [
                    {
                        "local": str(root),
                        "remote": "/archive",
                        "exclude": ["/*", *(f"!/{year}/" for year in years)],
                    }
                ],
                state=tmp_path / f"{host}.db",
                fleet={"redis_url": redis.url},
            )
            for host, years in takes.items()
        ]
        for _ in range(2):  # the second pass finds the other host's files: nothing changes
            runs: list[Run] = []

            async def one(cfg: Path, runs: list[Run] = runs) -> None:
                runs.append(await run_syncd("--config", cfg, "--initial-sync"))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for cfg in configs:
                        tg.start_soon(one, cfg)
            assert [r.code for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
            expected = {k: v for k, v in local_tree(root).items() if k != "top.jpg"}
            assert dam_tree(emu, "/archive") == expected  # each file once, top.jpg by none
        # The second pass: nothing to upload, and nothing of the other host's deleted.
        assert [(r.summary["uploaded"], r.summary["deleted"]) for r in runs] == [(0, 0), (0, 0)]


async def test_a_fleet_under_a_limit_per_key_still_completes(
    tmp_path: Path, redis: RedisServer
) -> None:
    # The other reading of the limit's scope (docs/dam-api.md §7.1): each host has a key
    # and a quota of its own, yet they share one fleet. The shared bucket may hold them
    # below their two quotas; it must not cost a file, a duplicate or a failed run.
    other_key = "second-host-key-77ab"
    async with serve(
        token=TOKEN,
        key=KEY,
        extra_keys=[other_key],
        rate_limit=20,
        rate_burst=5,
        rate_limit_scope="key",
    ) as emu:
        configs = [host_config(tmp_path, emu, i, 40, {"redis_url": redis.url}) for i in (1, 2)]
        runs: list[Run] = []

        async def one(cfg: Path, key: str) -> None:
            runs.append(
                await run_syncd("--config", cfg, "--initial-sync", env={"SYNCD_API_KEY": key})
            )

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, configs[0], KEY)
                tg.start_soon(one, configs[1], other_key)
        for i in (1, 2):
            assert dam_tree(emu, f"/host-{i}") == local_tree(tmp_path / f"host-{i}")
        stats = emu.stats.as_dict()
    assert [r.code for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    accepted = sum(stats["statuses"].values()) - stats["rate_limited"]
    span = stats["last_reply_s"] - stats["first_request_s"]
    # Not starved: at least one key's quota was used (two keys would allow 40/s).
    assert accepted / span > 0.8 * 20, (accepted, span)
