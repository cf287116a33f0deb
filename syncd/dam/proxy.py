"""Which proxy a DAM request goes through: the environment's (HTTPS_PROXY, NO_PROXY),
for https only, read once per client rather than per request."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

__all__ = ["env_proxy"]


def env_proxy(url: str) -> str | None:
    """The proxy the environment asks for an https `url` (HTTPS_PROXY, NO_PROXY).

    Only https goes through a proxy, inside a CONNECT tunnel: the proxy sees the CONNECT
    line and TLS bytes, never the key. A plain-http request would reach the proxy whole,
    key header included, so an http DAM (which the config allows only on loopback) is
    always reached directly, whatever HTTP_PROXY says.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not any(k.lower().endswith("_proxy") for k in os.environ):
        return None  # the common case, without importing urllib.request (~10 ms)
    import urllib.request

    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get("https")
