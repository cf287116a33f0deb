"""The DAM client: the HTTP session, in the one package that imports aiohttp.

It owns the single `aiohttp.ClientSession` of the process (keep-alive pool sized to the
worker count, timeouts, TLS with `dam.ca_bundle`'s extra CAs, the proxy: https only), the
`X-Filerobot-Key` header (on each request to the DAM's own origin, never to a proxy), the
wire shapes of the Filerobot v4 API (see docs/dam-api.md), and the translation of
every failure into the `syncd.errors` tree. A response is a failure when its status is not
2xx *or* its body says `"status": "error"`. Every request runs under the shared `Pacer`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode

import aiohttp
import yarl

from syncd.dam.listing import Pages, files_of
from syncd.dam.multipart import Body, multipart_body
from syncd.dam.ops import BULK, AssetOps
from syncd.dam.pacer import Pacer
from syncd.dam.proxy import env_proxy
from syncd.dam.response import decode_body, note_rate_headers, read_body, upload_timeout
from syncd.dam.tls import certificate_problem, client_context
from syncd.dam.wire import (
    Uploaded,
    classify,
    exact_count,
    iso,
    parse_http_date,
    same_content,
    uploaded,
)
from syncd.errors import ConfigError, DamTimeout, NotFound, PermanentDamError, TransientDamError
from syncd.model import RemoteFile

__all__ = ["BULK", "PAGE", "Body", "DamClient", "Uploaded"]

PAGE = 1000
# An upload up to this size times the DAM's round trip; a bigger one times the bandwidth.
_TIMED_UPLOAD_MAX = 256 * 1024


@contextmanager
def _translate(what: str, ca_bundle: Path | None) -> Iterator[None]:
    """Turn aiohttp and socket failures into `TransientDamError`, except an unverifiable
    certificate: retrying cannot fix that, so it is a `PermanentDamError` at once."""
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        problem = certificate_problem(exc.host, exc.port, exc.certificate_error, ca_bundle)
        raise PermanentDamError(f"{what}: {problem}") from exc
    except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
        raise DamTimeout(f"{what}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
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
        listing_lag_s: float = 5.0,
    ) -> None:
        self._prefix = f"{base_url.rstrip('/')}/{quote(token, safe='')}/v4"
        # The key goes only to this scheme+host+port (see `_with_key`); built as `_url`
        # builds URLs (encoded: the host keeps its case), so the two compare equal.
        origin = yarl.URL(self._prefix, encoded=True)
        self._origin = (origin.scheme, origin.raw_host, origin.port)
        self._key = key
        self.pacer = pacer
        self._workers = workers
        self._ca_bundle = ca_bundle
        # How far this DAM's listings may lag behind its writes (`dam.listing_lag_s`): a
        # trait of the DAM, so it travels with its client and a reload renews both.
        self.listing_lag_s = listing_lag_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
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
            # No key here: aiohttp 3.14 copies a session's default headers into the
            # headers it sends a proxy, the CONNECT of an https request included. The key
            # is added per request instead, by `_with_key`.
            headers={"User-Agent": "syncd"},
            timeout=self._timeout,
        )
        # HTTPS_PROXY / NO_PROXY are read once here: aiohttp's trust_env would look them
        # (and ~/.netrc) up in a worker thread on every request, which costs more CPU
        # than the request itself for small files.
        self._proxy = env_proxy(self._prefix)
        # aiohttp silently resends PUT/DELETE/GET once when a connection drops. A resent
        # streaming upload can create a second asset, and every retry must go through
        # the pacer (which looks before re-uploading), so switch that off. aiohttp has
        # no public switch: the attribute is private, so pyproject.toml pins the minor
        # versions it was checked on and tests/dam/test_no_resend.py proves it holds
        # (a renamed attribute would also warn, which the tests turn into an error).
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
        # The fleet's Redis connections; a pacer kept by a reload reconnects on first use.
        await self.pacer.aclose()

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
        size: int | None = None,
    ) -> dict[str, Any]:
        assert self._session is not None, "use DamClient as an async context manager"
        self.requests += 1
        url = self._url(path, params)
        with _translate(what, self._ca_bundle):
            async with self._session.request(
                method,
                url,
                json=json_body,
                data=data,
                headers=self._with_key(url, headers),
                proxy=self._proxy,
                # A redirect would carry the key header to another host: never follow one.
                allow_redirects=False,
                timeout=upload_timeout(size, self._timeout) if upload else self._timeout,
            ) as resp:
                # Capped after decompression; past the cap the request fails (retried).
                raw = await read_body(resp, what)
                self._note_date(resp.headers.get("Date"))
                note_rate_headers(self.rate_headers, resp.headers)
                body = decode_body(raw, resp.status, what)
                if upload and same_content(body):
                    return body  # identical content: the caller adopts it
                error = classify(resp.status, body, resp.headers)
                if error is not None:
                    error.message = f"{what}: {error.message}"
                    raise error
                return body

    def _with_key(self, url: yarl.URL, headers: Mapping[str, str] | None) -> dict[str, str]:
        """`headers` plus the key, when `url` is on the DAM's own origin.

        Every URL is built from `dam.base_url`, so another origin means a bug, and the
        request then goes without the key (and fails as unauthorised) rather than carry it
        to a host it was not meant for. Redirects are never followed, for the same reason.
        """
        sent = dict(headers or {})
        # yarl caches these parts; building `url.origin()` per request costs more.
        if (url.scheme, url.raw_host, url.port) == self._origin:
            sent["X-Filerobot-Key"] = self._key
        return sent

    def _note_date(self, value: str | None) -> None:
        # The header changes once a second; parse it only then. An unreadable or absurd
        # one is ignored: the clock stays what the last good header said.
        if not value or value == self._date_header:
            return
        self._date_header = value
        when = parse_http_date(value)
        if when is not None:
            self.server_time = when
            self._date_seen = time.monotonic()

    def now(self) -> datetime:
        """The DAM's clock now, as near as syncd can tell: its last `Date` header plus the
        time since that header first arrived (the header has whole seconds, so this may
        run up to a second behind), or this machine's clock before any response."""
        return self.clock_at(time.monotonic())

    def clock_at(self, instant: float) -> datetime:
        """The DAM's clock at `instant` (a `time.monotonic()` reading), as for `now`."""
        if self.server_time is None:
            return datetime.now(UTC) - timedelta(seconds=time.monotonic() - instant)
        return self.server_time + timedelta(seconds=instant - self._date_seen)

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
        """Every file below `folder`, page by page until a short page, once per uuid.

        A listing that does not end (full pages of files listed before, or more files than
        the DAM reported) raises `TransientDamError` (see `syncd.dam.listing`). Only a page
        that adds files feeds the watchdog's heartbeat: a loop is no progress.
        """
        pages = Pages(folder, PAGE)
        while not pages.done:
            what = f"list {folder} @{pages.offset}"
            params = {
                "folder": folder,
                "recursive": 1 if recursive else 0,
                "limit": PAGE,
                "offset": pages.offset,
                "sort": "created_at:asc",
                "updated_after": updated_after,
                "q": q,
            }
            try:
                body = await self.pacer.call(
                    partial(self._list_page, what, params), what=what, beat=False
                )
            except NotFound:
                return
            fresh = pages.take(body, what)
            if fresh:
                self.pacer.heartbeat()
            for rf in fresh:
                yield rf

    async def _list_page(self, what: str, params: Mapping[str, object]) -> dict[str, Any]:
        body = await self._send("GET", "/files", what=what, params=params)
        files_of(body, what)  # a malformed page is retried like any failed request
        return body

    # writes

    async def upload(
        self,
        folder: str,
        name: str,
        body: Callable[[], Body],
        *,
        stream: bool,
        before_retry: Callable[[], Any] | None = None,
        size: int | None = None,
    ) -> Uploaded:
        """Upload one file into `folder` as `name`.

        Args:
            body: makes a fresh body per attempt (a stream cannot be replayed).
            stream: use the streaming `PUT` upload (for big files) instead of multipart.
            before_retry: looks for a committed copy before a retry (see `Pacer.call`).
            size: the file's size, which sets each attempt's deadline (see
                `syncd.dam.response.upload_deadline`); a body given as bytes has its own.
        """
        what = f"upload {folder.rstrip('/')}/{name}"

        async def attempt() -> Uploaded:
            content = body()
            if stream:
                resp = await self._send(
                    "PUT",
                    "/files",
                    what=what,
                    params={"folder": folder, "filename": name},
                    data=content,
                    headers={"Content-Type": "application/octet-stream"},
                    upload=True,
                    size=len(content) if isinstance(content, bytes) else size,
                )
            else:
                data, headers = multipart_body(name, content)
                resp = await self._send(
                    "POST",
                    "/files",
                    what=what,
                    params={"folder": folder},
                    data=data,
                    headers=headers,
                    upload=True,
                    size=len(data) if isinstance(data, bytes) else size,
                )
            result = uploaded(resp, what)
            if result.modified_at is not None and (
                self.latest_change is None or result.modified_at > self.latest_change
            ):
                self.latest_change = result.modified_at
            return result

        # A big body's round trip is its size over the bandwidth, not how busy the DAM is.
        timed = not stream and size is not None and size <= _TIMED_UPLOAD_MAX
        return await self.pacer.call(attempt, what=what, before_retry=before_retry, timed=timed)
