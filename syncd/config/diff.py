"""What a configuration reload (SIGHUP) changes: the pure comparison of the running
config with the new one. The daemon applies the result.

A folder is the pair (local root, DAM folder): the same pair keeps its state, its queue
and its assets. Changing either side is a removed folder plus an added one, and a removed
folder only stops being watched; nothing on the DAM is deleted because of it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from syncd.config.schema import Config, DamConfig, FolderConfig
from syncd.errors import ConfigError

__all__ = ["ReloadPlan", "plan_reload"]

# [dam] keys the pacer is built from; the others only need a new HTTP client.
_PACING = frozenset(
    {
        "workers",
        "min_workers",
        "max_requests_per_second",
        "max_attempts",
        "backoff_base_s",
        "backoff_max_s",
    }
)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The differences between two configs that the daemon acts on."""

    added: tuple[FolderConfig, ...]
    removed: tuple[FolderConfig, ...]
    changed: tuple[FolderConfig, ...]  # the new settings of folders that stay
    rewatch: tuple[FolderConfig, ...]  # changed folders whose watcher must restart
    new_client: bool  # [dam] changed: a new HTTP client (and session) is needed
    new_pacer: bool  # a pacing setting changed: the pacer is rebuilt too
    dam_keys: tuple[str, ...]  # the [dam] keys that changed ("fleet": [fleet]), for the log

    @property
    def folders_changed(self) -> bool:
        """Whether any folder was added, removed or changed."""
        return bool(self.added or self.removed or self.changed)


def _identity(folder: FolderConfig) -> tuple[str, str]:
    return str(folder.local), folder.remote


def _changed_keys(old: DamConfig, new: DamConfig) -> tuple[str, ...]:
    return tuple(f.name for f in fields(DamConfig) if getattr(old, f.name) != getattr(new, f.name))


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare the running config with a freshly loaded one.

    Raises:
        ConfigError: the new config changes something that cannot change while syncd
            runs (the state database); the running config stays.
    """
    if new.state.path != old.state.path:
        raise ConfigError(
            f"{new.source}: state.path: changed from {old.state.path} to {new.state.path}, "
            "which needs a restart; restart syncd (systemctl restart syncd) to use it"
        )
    before = {_identity(f): f for f in old.folders}
    after = {_identity(f): f for f in new.folders}
    changed = tuple(f for k, f in after.items() if k in before and before[k] != f)
    rewatch = tuple(
        f
        for f in changed
        if (before[_identity(f)].exclude, before[_identity(f)].force_polling)
        != (f.exclude, f.force_polling)
    )
    dam_keys = _changed_keys(old.dam, new.dam)
    if old.fleet != new.fleet:  # the pacer holds the fleet's Redis client
        dam_keys += ("fleet",)
    return ReloadPlan(
        added=tuple(f for k, f in after.items() if k not in before),
        removed=tuple(f for k, f in before.items() if k not in after),
        changed=changed,
        rewatch=rewatch,
        new_client=bool(dam_keys),
        new_pacer=bool(_PACING.intersection(dam_keys)) or "fleet" in dam_keys,
        dam_keys=dam_keys,
    )
