"""The DAM client and pacer of a process, built from the [dam] and [fleet] settings, and the check
that the key and project token are accepted before any work starts."""

from __future__ import annotations

from syncd.config.schema import Config
from syncd.dam.client import DamClient
from syncd.dam.limits import Backoff
from syncd.dam.pacer import Pacer
from syncd.errors import ConfigError
from syncd.fleet.quota import fleet_quota

__all__ = ["check_access", "make_dam", "make_pacer"]


def make_pacer(config: Config) -> Pacer:
    """The one pacer of a process, from the [dam] settings, sharing the fleet's quota
    when [fleet] names a Redis."""
    dc = config.dam
    pacer = Pacer(
        dc.workers,
        minimum=dc.min_workers,
        backoff=Backoff(
            base_s=dc.backoff_base_s, cap_s=dc.backoff_max_s, max_attempts=dc.max_attempts
        ),
        max_requests_per_second=dc.max_requests_per_second or None,
    )
    pacer.fleet = fleet_quota(config, pacer.learned)
    return pacer


def make_dam(config: Config, key: str, pacer: Pacer) -> DamClient:
    """The DAM client of a process, from the [dam] settings."""
    return DamClient(
        config.dam.base_url,
        config.dam.token,
        key,
        pacer,
        workers=config.dam.workers,
        timeout_s=config.dam.timeout_s,
        connect_timeout_s=config.dam.connect_timeout_s,
        ca_bundle=config.dam.ca_bundle,
        listing_lag_s=config.dam.listing_lag_s,
    )


async def check_access(dam: DamClient, config: Config) -> None:
    """Fail fast on a rejected key (`AuthError`), or on an unknown token or an unverifiable
    TLS certificate (`ConfigError`)."""
    try:
        await dam.check_access()
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: {exc}") from None
