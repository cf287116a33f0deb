"""What a reload changes: the pure comparison of the running config with a new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.config.diff import plan_reload
from syncd.config.schema import Config, config_from_dict
from syncd.errors import ConfigError


def make(tmp_path: Path, folders: list[dict[str, Any]], **sections: Any) -> Config:
    for f in folders:
        (tmp_path / f["local"]).mkdir(exist_ok=True)
    data: dict[str, Any] = {
        "dam": {"token": "proj", **sections.pop("dam", {})},
        "state": {"path": str(tmp_path / sections.pop("state", "state.db"))},
        "folders": folders,
        **sections,
    }
    return config_from_dict(data, tmp_path / "syncd.toml")


def test_the_same_config_changes_nothing(tmp_path):
    folders = [{"local": "a", "remote": "/a"}]
    plan = plan_reload(make(tmp_path, folders), make(tmp_path, folders))
    assert not plan.folders_changed
    assert not plan.new_client
    assert plan.dam_keys == ()


def test_added_removed_and_changed_folders(tmp_path):
    old = make(
        tmp_path,
        [
            {"local": "a", "remote": "/a"},
            {"local": "b", "remote": "/b"},
            {"local": "c", "remote": "/c", "exclude": ["*.psd"]},
            {"local": "d", "remote": "/d"},
        ],
    )
    new = make(
        tmp_path,
        [
            {"local": "a", "remote": "/a"},  # the same
            {"local": "c", "remote": "/c", "exclude": ["*.raw"]},  # new excludes
            {"local": "d", "remote": "/d", "max_delete_count": 99},  # a new limit
            {"local": "e", "remote": "/e"},  # added
            {"local": "b", "remote": "/b2"},  # another DAM folder: removed plus added
        ],
    )
    plan = plan_reload(old, new)
    assert [(str(f.local.name), f.remote) for f in plan.added] == [("e", "/e"), ("b", "/b2")]
    assert [(f.local.name, f.remote) for f in plan.removed] == [("b", "/b")]
    assert [f.local.name for f in plan.changed] == ["c", "d"]
    assert [f.local.name for f in plan.rewatch] == ["c"]  # only excludes need a new watcher
    assert plan.changed[0].exclude == ("*.raw",)


def test_dam_changes_need_a_new_client_and_pacing_changes_a_new_pacer(tmp_path):
    folders = [{"local": "a", "remote": "/a"}]
    old = make(tmp_path, folders)
    timeout = plan_reload(old, make(tmp_path, folders, dam={"timeout_s": 5}))
    assert timeout.new_client
    assert not timeout.new_pacer
    assert timeout.dam_keys == ("timeout_s",)
    workers = plan_reload(old, make(tmp_path, folders, dam={"workers": 2}))
    assert workers.new_client
    assert workers.new_pacer


def test_a_new_state_path_is_refused(tmp_path):
    folders = [{"local": "a", "remote": "/a"}]
    with pytest.raises(ConfigError, match=r"state\.path: changed from .* restart syncd"):
        plan_reload(make(tmp_path, folders), make(tmp_path, folders, state="other.db"))


def test_adding_changing_or_removing_the_fleet_rebuilds_the_pacer(tmp_path):
    folders = [{"local": "a", "remote": "/a"}]
    alone = make(tmp_path, folders)
    fleet = make(tmp_path, folders, fleet={"redis_url": "redis://10.0.0.5:6379/0"})
    other = make(tmp_path, folders, fleet={"redis_url": "redis://10.0.0.6:6379/0"})
    for old, new in ((alone, fleet), (fleet, other), (fleet, alone)):
        plan = plan_reload(old, new)
        assert plan.new_client
        assert plan.new_pacer
        assert plan.dam_keys == ("fleet",)
    assert not plan_reload(fleet, fleet).new_pacer
