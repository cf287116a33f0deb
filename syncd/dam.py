"""The DAM client: the only module that imports aiohttp.

It owns the single `aiohttp.ClientSession` of the process (keep-alive pool sized to the
worker count, timeouts, the `X-Filerobot-Key` header, TLS with `dam.ca_bundle`'s extra CAs),
the wire shapes of the Filerobot v4 API (see docs/dam-api.md), and the translation of
every failure into the `syncd.errors` tree. A response is a failure when its status is not
2xx *or* its body says `"status": "error"`. Every request runs under the shared `Pacer`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import yarl

from syncd.dam_ops import BULK, AssetOps
from syncd.errors import ConfigError, NotFound, PermanentDamError, TransientDamError
from syncd.model import RemoteFile
from syncd.multipart import Body, multipart_body
from syncd.pacer import Pacer
from syncd.tls import certificate_problem, client_context
from syncd.wire import (
    SAME_CONTENT_CODES,
    Uploaded,
    classify,
    exact_count,
    iso,
    remote_file,
    uploaded,
)

__all__ = ["BULK", "PAGE", "Body", "DamClient", "Uploaded"]

PAGE = 1000


def _env_proxy(url: str) -> str | None:
    """The proxy the environment asks for `url` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)."""
    if not any(k.lower().endswith("_proxy") for k in os.environ):
        return None  # the common case, without importing urllib.request (~10 ms)
    import urllib.request

    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@contextmanager
def _translate(what: str, ca_bundle: Path | None) -> Iterator[None]:
    """Turn aiohttp and socket failures into `TransientDamError`, except an unverifiable
    certificate: retrying cannot fix that, so it is a `PermanentDamError` at once."""
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        problem = certificate_problem(exc.host, exc.port, exc.certificate_error, ca_bundle)
        raise PermanentDamError(f"{what}: {problem}") from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
        raise TransientDamError(f"{what}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
    except aiohttp.ClientError as exc:
        raise TransientDamError(f"{what}: {type(exc).__name__}: {exc}") from exc


class DamClient(AssetOps):
    """A Filerobot v4 client bound to one project token and API key.

    Use as `async with DamClient(...) as dam:`; the session is closed on exit.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        key: str,
        pacer: Pacer,
        *,
        workers: int = 8,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        ca_bundle: Path | None = None,
    ) -> None:
        self._prefix = f"{base_url.rstrip('/')}/{quote(token, safe='')}/v4"
        self._key = key
        self.pacer = pacer
        self._workers = workers
        self._ca_bundle = ca_bundle
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        # Uploads of big files may take longer than any total; only stalls count.
        self._upload_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self.server_time: datetime | None = None
        self.latest_change: datetime | None = None
        self._date_header = ""
        self._date_seen = 0.0  # time.monotonic() when `_date_header` first arrived
        self.requests = 0
        # Rate-limit headers as the DAM last sent them (`syncd probe` reports them; the
        # DAM documents none, docs/dam-api.md §7.2).
        self.rate_headers: dict[str, str] = {}

    async def __aenter__(self) -> Self:
        # Without a bundle aiohttp's own verifying context (built once at import) is used.
        tls: ssl.SSLContext | bool = True
        if self._ca_bundle is not None and self._prefix.startswith("https:"):
            tls = await asyncio.to_thread(client_context, self._ca_bundle)
        connector = aiohttp.TCPConnector(
            limit=self._workers + 2,
            limit_per_host=self._workers + 2,
            keepalive_timeout=30,
            ssl=tls,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"X-Filerobot-Key": self._key, "User-Agent": "syncd"},
            timeout=self._timeout,
        )
        # HTTPS_PROXY / NO_PROXY are read once here: aiohttp's trust_env would look them
        # (and ~/.netrc) up in a worker thread on every request, which costs more CPU
        # than the request itself for small files.
        self._proxy = _env_proxy(self._prefix)
        # aiohttp silently resends PUT/DELETE/GET once when a kept-alive connection drops.
        # A resent streaming upload can create a second asset, and every retry must go
        # through the pacer (which looks before re-uploading), so switch that off.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            # Let the connector's transports close before the loop moves on (aiohttp
            # "Graceful Shutdown"); otherwise ResourceWarnings surface.
            await asyncio.sleep(0)
            self._session = None

    # plumbing

    def _url(self, path: str, params: Mapping[str, object] | None = None) -> yarl.URL:
        # urlencode with quote() keeps "+" and "&" in names intact; yarl would leave "+"
        # unescaped, which servers read as a space.
        query = ""
        if params:
            query = "?" + urlencode(
                {k: v for k, v in params.items() if v is not None}, quote_via=quote, safe="/"
            )
        return yarl.URL(self._prefix + path + query, encoded=True)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, object] | None = None,
        json_body: object = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        upload: bool = False,
    ) -> dict[str, Any]:
        assert self._session is not None, "use DamClient as an async context manager"
        self.requests += 1
        with _translate(what, self._ca_bundle):
            async with self._session.request(
                method,
                self._url(path, params),
                json=json_body,
                data=data,
                headers=headers,
                proxy=self._proxy,
                # A redirect would carry the key header to another host: never follow one.
                allow_redirects=False,
                timeout=self._upload_timeout if upload else self._timeout,
            ) as resp:
                raw = await resp.read()
                self._note_date(resp.headers.get("Date"))
                self._note_rate_headers(resp.headers)
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                if not isinstance(body, dict):
                    body = {}
                if not raw and 200 <= resp.status < 300:
                    raise TransientDamError(f"{what}: empty response", status=resp.status)
                if raw and not body and 200 <= resp.status < 300:
                    raise TransientDamError(f"{what}: response is not JSON", status=resp.status)
                if (code := body.get("code")) in SAME_CONTENT_CODES and body.get(
                    "existing_file_uuid"
                ):
                    return body  # identical content: the caller adopts it
                error = classify(resp.status, body, resp.headers)
                if error is not None:
                    error.message = f"{what}: {error.message}"
                    if code and not error.code:
                        error.code = str(code)
                    raise error
                return body

    def _note_rate_headers(self, headers: Mapping[str, str]) -> None:
        for name, value in headers.items():
            lower = name.lower()
            if lower.startswith(("x-ratelimit", "ratelimit")) or lower == "retry-after":
                self.rate_headers[name] = value

    def _note_date(self, value: str | None) -> None:
        # The header changes once a second; parse it only then.
        if not value or value == self._date_header:
            return
        self._date_header = value
        self._date_seen = time.monotonic()
        try:
            self.server_time = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return

    def now(self) -> datetime:
        """The DAM's clock now, as near as syncd can tell: its last `Date` header plus the
        time since that header first arrived (the header has whole seconds, so this may
        run up to a second behind), or this machine's clock before any response."""
        if self.server_time is None:
            return datetime.now(UTC)
        return self.server_time + timedelta(seconds=time.monotonic() - self._date_seen)

    def bookmark(self) -> str | None:
        """The DAM's clock now, as far as syncd has seen it: the later of its last `Date`
        header and the newest `modified_at` it reported for an upload. Everything that
        changes on the DAM after this moment has a later `modified_at`, so the next run
        asks `updated_after` this and gets only those changes."""
        seen = [t for t in (self.server_time, self.latest_change) if t is not None]
        return iso(max(seen)) if seen else None

    async def _call(self, method: str, path: str, *, what: str, **kw: Any) -> dict[str, Any]:
        return await self.pacer.call(lambda: self._send(method, path, what=what, **kw), what=what)

    # reads

    async def check_access(self) -> None:
        """One cheap request that fails with `AuthError` when the key is missing or
        rejected, and with `ConfigError` when the DAM does not know the project token or
        its TLS certificate cannot be verified."""
        try:
            await self._call(
                "GET", "/files", what="check the API key", params={"folder": "/", "limit": 1}
            )
        except NotFound:
            raise ConfigError(
                f"dam.token: the DAM answers 404 for {self._prefix}: it does not know this"
                " project token; copy the token from the DAM's project settings, and check"
                " dam.base_url"
            ) from None
        except PermanentDamError as exc:
            cert = exc.__cause__
            if not isinstance(cert, aiohttp.ClientConnectorCertificateError):
                raise
            bundle = self._ca_bundle
            problem = certificate_problem(cert.host, cert.port, cert.certificate_error, bundle)
            raise ConfigError(problem) from None

    async def count(self, folder: str) -> int | None:
        """The recursive file count of a DAM folder (0 when it does not exist), or None
        when the DAM did not report one."""
        try:
            body = await self._call(
                "GET",
                "/files",
                what=f"count {folder}",
                params={"folder": folder, "recursive": 1, "limit": 1},
            )
        except NotFound:
            return 0
        return exact_count(body)

    async def list_files(
        self,
        folder: str,
        *,
        recursive: bool = True,
        updated_after: str | None = None,
        q: str | None = None,
    ) -> AsyncIterator[RemoteFile]:
        """Every file below `folder`, page by page until a short page, once per uuid."""
        seen: set[str] = set()
        offset = 0
        while True:
            params = {
                "folder": folder,
                "recursive": 1 if recursive else 0,
                "limit": PAGE,
                "offset": offset,
                "sort": "created_at:asc",
                "updated_after": updated_after,
                "q": q,
            }
            try:
                body = await self._call(
                    "GET", "/files", what=f"list {folder} @{offset}", params=params
                )
            except NotFound:
                return
            items = body.get("files")
            if not isinstance(items, list):
                items = []
            for item in items:
                if not isinstance(item, dict) or "uuid" not in item:
                    continue
                rf = remote_file(item, folder)
                if rf is not None and rf.uuid not in seen:
                    seen.add(rf.uuid)
                    yield rf
            if len(items) < PAGE:
                return
            offset += len(items)

    # writes

    async def upload(
        self,
        folder: str,
        name: str,
        body: Callable[[], Body],
        *,
        stream: bool,
        before_retry: Callable[[], Any] | None = None,
    ) -> Uploaded:
        """Upload one file into `folder` as `name`.

        Args:
            body: makes a fresh body per attempt (a stream cannot be replayed).
            stream: use the streaming `PUT` upload (for big files) instead of multipart.
            before_retry: looks for a committed copy before a retry (see `Pacer.call`).
        """
        what = f"upload {folder.rstrip('/')}/{name}"

        async def attempt() -> Uploaded:
            if stream:
                resp = await self._send(
                    "PUT",
                    "/files",
                    what=what,
                    params={"folder": folder, "filename": name},
                    data=body(),
                    headers={"Content-Type": "application/octet-stream"},
                    upload=True,
                )
            else:
                content = body()
                data, headers = multipart_body(name, content)
                resp = await self._send(
                    "POST",
                    "/files",
                    what=what,
                    params={"folder": folder},
                    data=data,
                    headers=headers,
                    upload=True,
                )
            result = uploaded(resp, what)
            if result.modified_at is not None and (
                self.latest_change is None or result.modified_at > self.latest_change
            ):
                self.latest_change = result.modified_at
            return result

        return await self.pacer.call(attempt, what=what, before_retry=before_retry)
