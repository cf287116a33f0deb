"""Property-based fuzzing (hypothesis) of everything that reads a DAM answer: each parser
either returns a well-typed value or raises a `DamError` for that request, whatever the
body holds (wrong types, `NaN`, huge numbers, absurd dates, lone surrogates, deep
nesting). The cases issue 10 names are pinned with `@example`, so they run every time."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from syncd.dam.listing import Pages
from syncd.dam.response import decode_body
from syncd.dam.wire import (
    Uploaded,
    classify,
    exact_count,
    iso,
    parse_http_date,
    parse_retry_after,
    parse_time,
    remote_file,
    uploaded,
)
from syncd.errors import DamError, RateLimited
from syncd.model import RemoteFile

# Quick enough for every run (the whole module takes a few seconds), the same examples
# on every run (a CI failure reproduces locally), and no example database in the tree.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

KEYS = [
    "uuid",
    "name",
    "folder",
    "url",
    "path",
    "size",
    "bytes",
    "hash",
    "sha1",
    "info",
    "msg",
    "hint",
    "message",
    "code",
    "status",
    "files",
    "file",
    "existing_file_uuid",
    "similar_file_path",
    "stats",
    "approx_files_count",
    "approx_files_count_method",
    "total_files_count",
    "base",
    "count",
    "files_recursive",
    "created_at",
    "modified_at",
]
WORDS = [
    "error",
    "success",
    "COUNT_EXACT",
    "SAME_ASSET_EXISTS_SKIP_UPLOAD",
    "ERROR_SHA1_CONFLICT",
    "KEY_EXPIRED",
    "/",
    "/a/b",
    "/a/b/",
    "c.jpg",
    "2026-11-26T10:00:00.123Z",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59+00:00",
    "\ud800",
    "a\x00b",
]
texts = st.sampled_from(WORDS) | st.text(max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=24,
)
bodies = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)
headers = st.dictionaries(
    st.sampled_from(["Retry-After", "Location", "Date"]),
    st.sampled_from(["soon", "-5", "1e999", "nan", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"])
    | st.text(max_size=30),
    max_size=3,
)
statuses = st.integers(min_value=100, max_value=599) | st.integers()


def storable(text: str) -> bool:
    text.encode()  # raises on a lone surrogate
    return "\0" not in text


def check_time(when: datetime | None) -> None:
    if when is not None:
        assert when.tzinfo is not None
        # What syncd does with a DAM time: ± a margin, and back to text.
        iso(when - timedelta(days=1))
        iso(when + timedelta(days=1))


@FUZZ
@given(statuses, bodies, headers)
@example(200, {"code": []}, {})
@example(429, {"code": {}}, {"Retry-After": "1e999"})
@example(503, {}, {"Retry-After": "nan"})
@example(429, {}, {"Retry-After": "-5"})
@example(429, {}, {"Retry-After": "garbage"})
def test_classify(status: int, body: dict[str, Any], head: dict[str, str]) -> None:
    error = classify(status, body, head)
    assert error is None or isinstance(error, DamError)
    if error is not None:
        assert isinstance(error.message, str)
        assert storable(error.message)
        assert error.code is None or isinstance(error.code, str)
        assert len(error.message) < 1000
    if isinstance(error, RateLimited) and error.retry_after is not None:
        assert math.isfinite(error.retry_after)
        assert 0 <= error.retry_after <= 86_400


@FUZZ
@given(values | bodies, st.sampled_from(["/", "/a", "/a/b/"]))
@example({"uuid": "u", "url": "a string"}, "/")
@example({"uuid": "u", "folder": "/a/string"}, "/")
@example({"uuid": "u", "name": "x", "folder": {"name": 5}}, "/")
@example({"uuid": 5, "name": "x"}, "/")
@example({"uuid": "u", "name": ["x"]}, "/")
@example({"uuid": "u", "name": "x", "size": float("nan")}, "/")
@example({"uuid": "u", "name": "x", "size": {"bytes": float("inf")}}, "/")
@example({"uuid": "u", "name": "x", "size": True}, "/")
@example({"uuid": "\ud800", "name": "x"}, "/")
def test_remote_file(item: Any, root: str) -> None:
    try:
        found = remote_file(item, root)
    except DamError:
        return
    if found is None:
        return
    assert isinstance(found, RemoteFile)
    assert isinstance(found.uuid, str)
    assert found.uuid
    for text in (found.uuid, found.path, found.name, found.folder):
        assert isinstance(text, str)
        assert storable(text)
    assert found.folder.startswith("/")
    for optional in (found.sha1, found.info_name, found.created_at, found.modified_at):
        assert optional is None or (isinstance(optional, str) and storable(optional))
    assert found.size is None or (type(found.size) is int and found.size >= 0)


@FUZZ
@given(bodies)
@example({"code": "SAME_ASSET_EXISTS_SKIP_UPLOAD"})
@example({"code": "ERROR_SHA1_CONFLICT", "existing_file_uuid": 7})
@example({"code": [], "file": {"uuid": "u", "name": "x"}})
@example({"file": {"uuid": 5}})
@example({"files": "not a list"})
@example({"file": {"uuid": "u", "modified_at": "0001-01-01T00:00:00"}})
def test_uploaded(body: dict[str, Any]) -> None:
    try:
        up = uploaded(body, "upload x")
    except DamError:
        return
    assert isinstance(up, Uploaded)
    assert isinstance(up.uuid, str)
    assert up.uuid
    assert storable(up.uuid)
    assert isinstance(up.name, str)
    assert storable(up.name)
    assert up.remote_sha1 is None or isinstance(up.remote_sha1, str)
    assert up.elsewhere is None or isinstance(up.elsewhere, str)
    check_time(up.modified_at)


@FUZZ
@given(bodies)
@example({"info": {"total_files_count": True}})
@example({"info": {"total_files_count": -3}})
@example({"stats": [], "base": "root"})
def test_exact_count(body: dict[str, Any]) -> None:
    count = exact_count(body)
    assert count is None or (type(count) is int and count >= 0)


@FUZZ
@given(values)
@example("0001-01-01T00:00:00+14:00")
@example("9999-12-31T23:59:59-12:00")
@example("2026-11-26T10:00:00")
def test_parse_time(value: Any) -> None:
    check_time(parse_time(value))


@FUZZ
@given(values | headers.flatmap(lambda h: st.sampled_from([*h.values(), ""])))
@example("Mon, 20 Nov 2026 19:12:08")  # no zone
@example("garbage, 99 Foo 12345 99:99:99")
@example("Fri, 31 Dec 9999 23:59:59 GMT")
@example("Mon, 01 Jan 0001 00:00:00 -2359")
def test_http_dates_and_retry_after(value: Any) -> None:
    check_time(parse_http_date(value))
    wait = parse_retry_after(value, now=1_800_000_000.0)
    assert wait is None or (math.isfinite(wait) and 0 <= wait <= 86_400)


nested = st.integers(min_value=1, max_value=200_000).map(lambda n: b"[" * n + b"]" * n)
encoded = values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=64) | nested | encoded, statuses)
@example(b"[" * 100_000 + b"]" * 100_000, 200)
@example(b'{"size": NaN, "n": 1e999}', 200)
@example(b"[1, 2]", 200)
@example(b"", 500)
def test_decode_body(raw: bytes, status: int) -> None:
    try:
        body = decode_body(raw, status, "list /")
    except DamError:
        return
    assert isinstance(body, dict)
    todo: list[Any] = [body]  # no recursion: the body may be nested hundreds deep
    while todo:
        value = todo.pop()
        assert not isinstance(value, float) or math.isfinite(value)
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)


@FUZZ
@given(bodies)
@example({"files": "not a list"})
@example({"files": [{"uuid": 1}, {"uuid": "u", "folder": "x"}, {"uuid": "v", "name": "v"}]})
def test_a_listing_page(body: dict[str, Any]) -> None:
    pages = Pages("/", 2)
    try:
        found = pages.take(body, "list /")
    except DamError:
        return
    assert all(isinstance(r, RemoteFile) for r in found)
    assert len({r.uuid for r in found}) == len(found)


def test_a_malformed_item_is_skipped_and_the_rest_is_listed():
    pages = Pages("/", 10)
    good = {"uuid": "u2", "name": "b.jpg", "folder": {"name": "/"}, "size": float("nan")}
    found = pages.take({"files": [{"uuid": 7, "name": "a.jpg"}, good, "junk"]}, "list /")
    assert [(r.uuid, r.size) for r in found] == [("u2", None)]
    assert pages.done
