"""The fleet: several syncd hosts that share one DAM project's quota through Redis.

`FleetQuota` (in `syncd.fleet.quota`) is what the pacer asks before each request when
`[fleet] redis_url` is set: one GCRA bucket for the whole fleet, one pause from
`Retry-After`, and the rate the fleet has learned. The bucket's arithmetic runs as Lua in
Redis (`syncd.fleet.scripts`), atomically, on Redis's clock. redis-py is imported only
when a fleet is configured.
"""
