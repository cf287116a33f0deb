"""TLS trust for the DAM connection: which server certificates syncd accepts, and what it
says when one is refused.

Verification is always on: there is no switch to turn it off, and `dam.ca_bundle` can only
add CAs to the system's (for a TLS-inspecting proxy or a private CA). The aiohttp side (the
connector, the exception) stays in `syncd.dam.client`; this module does not import aiohttp.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from syncd.errors import ConfigError

__all__ = ["certificate_problem", "client_context"]


def client_context(ca_bundle: Path) -> ssl.SSLContext:
    """A verifying client context trusting the system's CAs plus those in `ca_bundle`.

    It reads files (some ms): call it off the event loop.

    Raises:
        ConfigError: the bundle cannot be read or holds no certificate.
    """
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_bundle)
    except OSError as exc:  # ssl.SSLError too; the file changed since the config was read
        fix = "give a readable PEM file of CA certificates"
        raise ConfigError(f"dam.ca_bundle: cannot load {ca_bundle} ({exc}); {fix}") from None
    return context


def certificate_problem(
    host: str, port: int | None, error: Exception, ca_bundle: Path | None
) -> str:
    """`<key>: <problem>; <fix>` for a server certificate that failed verification.

    Args:
        host, port: the server that presented it.
        error: the `ssl` error, usually an `ssl.SSLCertVerificationError`.
        ca_bundle: the extra CAs that were trusted, if any.
    """
    reason = getattr(error, "verify_message", None) or str(error)
    where = f"{host}:{port}" if port else host
    problem = f"the TLS certificate of {where} could not be verified ({reason})"
    if ca_bundle is None:
        return (
            f"dam.base_url: {problem}; if a proxy inspects TLS on this network or the DAM uses"
            " a private CA, set dam.ca_bundle to that CA's certificate (a PEM file)"
        )
    return (
        f"dam.ca_bundle: {problem}, even with the CAs in {ca_bundle}; add the CA that signed"
        " it to that file"
    )
