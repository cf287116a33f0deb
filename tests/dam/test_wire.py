"""Tests of syncd.dam.wire: every documented response variant maps to the right value or
error."""

from __future__ import annotations

import email.utils

import pytest

from syncd.dam.wire import classify, exact_count, parse_retry_after, remote_file, uploaded
from syncd.errors import (
    AuthError,
    NameConflict,
    NotFound,
    PermanentDamError,
    RateLimited,
    TransientDamError,
)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (200, {"status": "success"}, {}, None),
        (201, {}, {}, None),
        (401, {"status": "error", "code": "UNAUTHORIZED"}, {}, AuthError),
        (200, {"status": "error", "code": "KEY_EXPIRED"}, {}, AuthError),
        (403, {"status": "error", "code": "PERMISSION_DENIED"}, {}, AuthError),
        (403, {"status": "error"}, {}, AuthError),
        (403, {"status": "error", "code": "FOLDER_ALREADY_EXISTS"}, {}, PermanentDamError),
        (404, {"status": "error", "code": "ROUTE_NOT_FOUND"}, {}, NotFound),
        (409, {"status": "error", "code": "E801_ALREADY_EXIST"}, {}, NameConflict),
        (429, {}, {"Retry-After": "3"}, RateLimited),
        (503, {}, {}, RateLimited),
        (500, {}, {}, TransientDamError),
        (502, {"status": "error"}, {}, TransientDamError),
        (408, {}, {}, TransientDamError),
        (200, {"status": "error", "code": "INTERNAL_ERROR"}, {}, TransientDamError),
        (400, {"status": "error", "code": "ERR_UNPROCESSABLE_ENTITY"}, {}, PermanentDamError),
        (413, {}, {}, PermanentDamError),
        (302, {}, {"Location": "https://elsewhere.example"}, PermanentDamError),
    ],
)
def test_classify(status, body, headers, expected):
    error = classify(status, body, headers)
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected
        assert error is not None
        assert error.status == status


def test_classify_carries_code_and_message():
    error = classify(400, {"status": "error", "code": "BAD", "info": {"msg": "inner"}}, {})
    assert error is not None
    assert (error.code, error.message) == ("BAD", "inner")
    assert "HTTP 400" in str(error)
    assert "BAD" in str(error)


def test_retry_after_seconds_and_date():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(7.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    error = classify(429, {}, {"Retry-After": header})
    assert isinstance(error, RateLimited)
    assert error.retry_after is not None


def item(**over):
    base = {
        "uuid": "u1",
        "name": "c.jpg",
        "size": {"bytes": 4096, "pretty": "4 KB"},
        "hash": {"sha1": "ab" * 20},
        "folder": {"uuid": "f1", "name": "/assets/a/b"},
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("over", "root", "path", "size"),
    [
        ({}, "/assets", "a/b/c.jpg", 4096),
        ({"size": 4096}, "/assets", "a/b/c.jpg", 4096),
        ({"folder": {"uuid": "f", "name": "/assets/a/b/"}}, "/assets/", "a/b/c.jpg", 4096),
        ({"folder": {"uuid": "f", "name": "/assets"}}, "/assets", "c.jpg", 4096),
        ({"folder": {"uuid": "f", "name": "/"}}, "/", "c.jpg", 4096),
        ({"folder": {"uuid": "f", "name": "/x/y"}}, "/", "x/y/c.jpg", 4096),
        (
            # The path is folder + the stored name; info.name is only a hint.
            {"name": "c-7brqJR8K.jpg", "info": {"name": "c.jpg"}},
            "/assets",
            "a/b/c-7brqJR8K.jpg",
            4096,
        ),
        ({"folder": None, "url": {"path": "/assets/q/c.jpg"}}, "/assets", "q/c.jpg", 4096),
    ],
)
def test_remote_file_shapes(over, root, path, size):
    rf = remote_file(item(**over), root)
    assert rf is not None
    assert (rf.path, rf.size, rf.sha1, rf.uuid) == (path, size, "ab" * 20, "u1")


def test_remote_file_outside_root_is_ignored():
    assert remote_file(item(folder={"uuid": "f", "name": "/assets-other"}), "/assets") is None
    assert remote_file(item(folder={"uuid": "f", "name": "/"}), "/assets") is None


def test_uploaded_variants():
    one = uploaded({"status": "success", "file": item()}, "x")
    assert (one.uuid, one.remote_sha1, one.adopted) == ("u1", "ab" * 20, False)
    many = uploaded({"status": "success", "files": [item(uuid="u2")]}, "x")
    assert many.uuid == "u2"
    same = uploaded(
        {"status": "error", "code": "SAME_ASSET_EXISTS_SKIP_UPLOAD", "existing_file_uuid": "e1"},
        "x",
    )
    assert (same.uuid, same.adopted) == ("e1", True)
    with pytest.raises(TransientDamError):
        uploaded({"status": "success"}, "x")


def test_a_redirect_is_refused_with_a_hint():
    error = classify(301, {}, {"Location": "https://new.example/x"})
    assert error is not None
    assert "https://new.example/x" in error.message
    assert "dam.base_url" in error.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"stats": {"approx_files_count": 7, "approx_files_count_method": "COUNT_EXACT"}}, 7),
        ({"stats": {"approx_files_count": 7, "approx_files_count_method": "ESTIMATE"}}, None),
        ({"stats": {"approx_files_count": 7}}, None),
        ({"stats": {"approx_files_count": 7}, "info": {"total_files_count": 8}}, 8),
        ({"base": {"count": {"files_recursive": 9}}}, 9),
        ({}, None),
    ],
)
def test_exact_count_trusts_only_exact_figures(body, expected):
    assert exact_count(body) == expected
