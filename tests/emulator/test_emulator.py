"""End-to-end tests of the DAM emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

import syncd
from syncd.emulator import Emulator, Options, make_app, run, serve
from syncd.emulator.cli import build_parser
from syncd.emulator.permissions import ROUTE_PERMISSIONS
from tests.conftest import emulator_command

TOKEN = "tok"
KEY = "sekret"
# The subprocess test runs `python -m syncd.emulator` from this checkout, installed or not.
REPO = Path(syncd.__file__).resolve().parent.parent
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with serve(token=TOKEN, key=KEY, seed=1) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"X-Filerobot-Key": KEY}) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, emu: Emulator, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    """Send one API request and return (status, JSON body)."""
    with anyio.fail_after(10):
        async with http.request(method, f"{emu.api_url}/{path}", **kwargs) as response:
            return response.status, await response.json()


async def put(
    http: aiohttp.ClientSession, emu: Emulator, folder: str, name: str, data: bytes
) -> tuple[int, Any]:
    """Upload through the streaming PUT endpoint."""
    params = {"folder": folder, "filename": name}
    return await call(http, emu, "PUT", "files", params=params, data=data)


async def post(
    http: aiohttp.ClientSession, emu: Emulator, folder: str, name: str, data: bytes
) -> tuple[int, Any]:
    """Upload through multipart POST the way Scaleflex's uploader does (info part first)."""
    form = aiohttp.FormData()
    form.add_field("info[files[]]", json.dumps({"name": name, "type": "text/plain"}))
    # A stream, not bytes: aiohttp warns (an error here) about bytes bodies over 1 MiB.
    form.add_field("files[]", io.BytesIO(data), filename="blob.bin")
    return await call(http, emu, "POST", "files", params={"folder": folder}, data=form)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.mark.e2e
async def test_auth_token_and_error_shape(emu: Emulator, http: aiohttp.ClientSession) -> None:
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(f"{emu.api_url}/files") as response:
                assert response.status == 401
                assert "Date" in response.headers
                body = await response.json()
            assert body["status"] == "error"
            assert body["code"] == "UNAUTHORIZED"
            assert set(body) >= {"msg", "hint"}
            wrong = {"X-Filerobot-Key": "nope"}
            async with anonymous.get(f"{emu.api_url}/files", headers=wrong) as response:
                assert response.status == 401
            lower = {"x-filerobot-key": KEY}
            async with anonymous.get(f"{emu.api_url}/files", headers=lower) as response:
                assert response.status == 200
            async with anonymous.get(f"{emu.url}/other/v4/files", headers=lower) as response:
                assert response.status == 404
                assert (await response.json())["code"] == "ROUTE_NOT_FOUND"
    status, body = await call(http, emu, "GET", "no/such/route")
    assert (status, body["code"]) == (404, "ROUTE_NOT_FOUND")
    status, body = await call(http, emu, "POST", "files/some-uuid")
    assert (status, body["code"]) == (405, "METHOD_NOT_ALLOWED")
    emu.revoke_key()
    status, body = await call(http, emu, "GET", "files")
    assert (status, body["code"]) == (401, "KEY_EXPIRED")


@pytest.mark.e2e
async def test_slow_responses(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.options.slow_ms = 60
    started = anyio.current_time()
    status, _ = await call(http, emu, "GET", "files")
    assert status == 200
    assert anyio.current_time() - started >= 0.06


@pytest.mark.e2e
async def test_multipart_upload_shape(emu: Emulator, http: aiohttp.ClientSession) -> None:
    data = os.urandom(4096)
    status, body = await post(http, emu, "/a/b", "photo.jpg", data)
    assert status == 200
    assert body["status"] == "success"
    assert body["info"] == {"uploaded_files": 1, "files_count": 1, "version": "emulator"}
    f = body["file"]
    assert f["name"] == "photo.jpg"
    assert f["extension"] == "jpg"
    assert f["type"] == "image/jpeg"
    assert f["size"] == {"bytes": 4096, "pretty": "4 KB"}
    assert f["hash"] == {"sha1": sha1(data)}
    assert f["url"]["path"] == "/a/b/photo.jpg"
    assert f["url"]["permalink"] == f"{emu.url}/{TOKEN}/v4/get/{f['uuid']}"
    assert f["url"]["cdn"].endswith(f"?vh={sha1(data)[:6]}")
    assert ISO_MS.fullmatch(f["created_at"])
    assert ISO_MS.fullmatch(f["modified_at"])
    assert f["overwrite"] is False
    assert f["meta"] == {}
    assert f["folder"]["name"] == "/a/b"
    assert f["info"] == {"name": "photo.jpg", "type": "text/plain"}
    status, listed = await call(http, emu, "GET", "folders", params={"recursive": "1"})
    assert [x["path"] for x in listed["folders"]] == ["/a", "/a/b"]
    for route in (f"get/{f['uuid']}", f"get/{f['uuid']}/download"):
        with anyio.fail_after(10):
            async with http.get(f"{emu.api_url}/{route}") as response:
                assert await response.read() == data


@pytest.mark.e2e
async def test_multipart_variants(emu: Emulator, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("name[one]", "renamed.txt")
    form.add_field("one", b"first", filename="ignored.txt")
    form.add_field("meta[two]", "{}")
    form.add_field("two", b"second", filename="été 100%.txt")  # aiohttp percent-encodes it
    status, body = await call(http, emu, "POST", "files", params={"folder": "/m"}, data=form)
    assert status == 200
    assert "file" not in body
    assert [f["name"] for f in body["files"]] == ["renamed.txt", "été 100%.txt"]
    assert body["info"]["uploaded_files"] == body["info"]["files_count"] == 2
    status, body = await call(http, emu, "POST", "files", data=aiohttp.FormData({"a": "b"}))
    assert (status, body["code"]) == (400, "ERR_UNPROCESSABLE_ENTITY")


@pytest.mark.e2e
async def test_put_upload_and_missing_filename(emu: Emulator, http: aiohttp.ClientSession) -> None:
    data = b"streamed" * 1000
    status, body = await put(http, emu, "/s", "big.bin", data)
    assert status == 200
    assert body["file"]["size"]["bytes"] == len(data)
    assert body["file"]["hash"]["sha1"] == sha1(data)
    assert body["file"]["type"] == "application/octet-stream"
    status, body = await call(http, emu, "PUT", "files", params={"folder": "/s"}, data=b"x")
    assert (status, body["code"]) == (400, "ERR_UNPROCESSABLE_ENTITY")


@pytest.mark.e2e
async def test_recursive_listing_pages(emu: Emulator, http: aiohttp.ClientSession) -> None:
    # Creation order equals name order here, so paging holds under either sort setting.
    for i in range(2500):
        data = i.to_bytes(4, "big")
        emu.store.upload(f"/root/d{i % 7}", f"f{i:04}.txt", sha1=sha1(data), size=4, content=data)
    seen: list[str] = []
    sizes = []
    for offset in (0, 1000, 2000):
        params = {"folder": "/root", "recursive": "1", "limit": "1000", "offset": str(offset)}
        status, body = await call(http, emu, "GET", "files", params=params)
        assert status == 200
        assert body["type"] == "LIST"
        assert "folders" not in body
        assert body["stats"]["approx_files_count"] == body["info"]["total_files_count"] == 2500
        assert body["stats"]["approx_files_size"] == 10000
        assert body["base"]["count"] == {"files_recursive": 2500, "files_direct": 0}
        sizes.append(len(body["files"]))
        seen += [f["name"] for f in body["files"]]
    assert sizes == [1000, 1000, 500]
    assert seen == [f"f{i:04}.txt" for i in range(2500)]  # no gaps, no repeats
    status, body = await call(http, emu, "GET", "files", params={"folder": "/root"})
    assert body["files"] == []
    assert len(body["folders"]) == 7
    assert body["folders"][0]["count"]["files_direct"] == 358
    params = {"folder": "/root/d0", "sort": "name:desc", "limit": "2"}
    status, body = await call(http, emu, "GET", "files", params=params)
    assert [f["name"] for f in body["files"]] == ["f0000.txt", "f0007.txt"]  # sort ignored
    emu.configure({"sort": "honoured"})
    status, body = await call(http, emu, "GET", "files", params=params)
    assert [f["name"] for f in body["files"]] == ["f2499.txt", "f2492.txt"]
    emu.configure({"sort": "ignored"})  # still validated when ignored
    for bad in ({"limit": "0"}, {"limit": "4001"}, {"sort": "size:up"}, {"recursive": "x"}):
        status, body = await call(http, emu, "GET", "files", params=bad)
        assert (status, body["code"]) == (400, "ERR_UNPROCESSABLE_ENTITY")
    status, body = await call(http, emu, "GET", "files", params={"folder": "/nope"})
    assert (status, body["code"]) == (404, "FOLDER_NOT_FOUND")


@pytest.mark.e2e
async def test_updated_after_and_q(emu: Emulator, http: aiohttp.ClientSession) -> None:
    # The most convenient readings of the unknowns: see the tests of each switch below.
    emu.configure(
        {
            "naming": "suffix",
            "updated_after": "exact",
            "q_match": "both",
            "rename_info_name": "rewritten",
        }
    )
    _, a = await put(http, emu, "/", "Alpha.txt", b"a")
    _, b = await put(http, emu, "/", "beta.txt", b"b")
    newest = max(a["file"]["modified_at"], b["file"]["modified_at"])
    await anyio.sleep(0.005)  # let the millisecond clock pass `newest` before the rename
    status, _renamed = await call(
        http, emu, "PATCH", f"files/{a['file']['uuid']}", json={"name": "alpha2.txt"}
    )
    assert status == 200
    plus_two = timezone(timedelta(hours=2))
    offset_form = datetime.fromisoformat(newest).astimezone(plus_two).isoformat()
    assert offset_form.endswith("+02:00")
    for after in (newest, offset_form):
        _, body = await call(http, emu, "GET", "files", params={"updated_after": after})
        assert [f["uuid"] for f in body["files"]] == [a["file"]["uuid"]]
    for after, count in (("0", 2), ("4102444800", 0), ("2000-01-01T00:00:00Z", 2)):
        _, body = await call(http, emu, "GET", "files", params={"updated_after": after})
        assert len(body["files"]) == count
    emu.configure({"updated_after": "ignored"})
    _, body = await call(http, emu, "GET", "files", params={"updated_after": "4102444800"})
    assert len(body["files"]) == 2
    _, body = await call(http, emu, "GET", "files", params={"q": "ALPHA"})
    assert [f["info"]["name"] for f in body["files"]] == ["alpha2.txt"]
    _, body = await call(http, emu, "GET", "files", params={"q": "beta.txt"})
    assert body["files"][0]["name"].startswith("beta-")  # matched through info.name


@pytest.mark.e2e
async def test_delete_single_and_bulk(emu: Emulator, http: aiohttp.ClientSession) -> None:
    uuids = [
        (await put(http, emu, "/d", f"{i}.txt", bytes([i])))[1]["file"]["uuid"] for i in range(3)
    ]
    status, body = await call(http, emu, "DELETE", f"files/{uuids[0]}")
    assert body == {"status": "success", "action": "file_deleted", "file_uuid": uuids[0]}
    status, body = await call(http, emu, "DELETE", f"files/{uuids[0]}")
    assert (status, body["code"]) == (404, "ROUTE_NOT_FOUND")
    status, body = await call(http, emu, "DELETE", "files", json={"files_uuids": uuids})
    assert body == {"status": "success", "action": "files_deleted", "files_uuids": uuids[1:]}
    status, body = await call(http, emu, "DELETE", "files", json={"files_uuids": ["x"] * 1001})
    assert status == 400
    assert emu.files() == []


@pytest.mark.e2e
async def test_rename_and_move(emu: Emulator, http: aiohttp.ClientSession) -> None:
    _, a = await put(http, emu, "/r", "a.txt", b"a")
    _, b = await put(http, emu, "/r", "b.txt", b"b")
    a_uuid, b_uuid = a["file"]["uuid"], b["file"]["uuid"]
    status, body = await call(http, emu, "PATCH", f"files/{a_uuid}", json={"name": "c.txt"})
    assert status == 200
    assert body["action"] == "file_renamed"
    assert body["file_uuid"] == a_uuid
    assert (body["file"]["name"], body["file"]["info"]["name"]) == ("c.txt", "a.txt")
    assert body["file"]["modified_at"] > a["file"]["modified_at"]
    status, body = await call(http, emu, "PATCH", f"files/{a_uuid}", json={"name": "b.txt"})
    assert (status, body["code"]) == (409, "E801_ALREADY_EXIST")
    status, body = await call(http, emu, "POST", "folders", json={"name": "/t"})
    t_uuid = body["folder_uuid"]
    status, body = await call(http, emu, "PUT", f"files/{a_uuid}/folders/{t_uuid}")
    assert body["action"] == "files_moved"
    assert body["files_uuids"] == [a_uuid]
    assert body["files"][0]["url"]["path"] == "/t/c.txt"
    status, body = await call(http, emu, "PUT", f"files/{a_uuid}/folders/nope")
    assert status == 404
    move = {"files_uuids": [a_uuid, b_uuid, "unknown"], "new_folder_name": "/new/place"}
    status, body = await call(http, emu, "POST", "files/move", json=move)
    assert status == 200
    assert sorted(body["files_uuids"]) == sorted([a_uuid, b_uuid])
    assert {r.path for r in emu.files()} == {"/new/place/c.txt", "/new/place/b.txt"}
    # info.name is kept on rename, so only client_path follows where the client put it.
    assert {(r.client_path, r.original_path) for r in emu.files()} == {
        ("/new/place/c.txt", "/new/place/a.txt"),
        ("/new/place/b.txt", "/new/place/b.txt"),
    }
    _, c = await put(http, emu, "/r", "c.txt", b"other")
    status, body = await call(
        http,
        emu,
        "POST",
        "files/move",
        json={"files_uuids": [c["file"]["uuid"]], "new_folder_name": "/new/place"},
    )
    assert (status, body["code"]) == (409, "E801_ALREADY_EXIST")


@pytest.mark.e2e
async def test_folders(emu: Emulator, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, emu, "POST", "folders", json={"name": "/x/y"})
    assert status == 200
    assert body["action"] == "folder_created"
    folder = body["folder"]
    assert (folder["name"], folder["path"]) == ("y", "/x/y")
    assert set(folder) >= {"uuid", "created_at", "updated_at", "count", "size", "meta"}
    status, body = await call(http, emu, "POST", "folders", json={"name": "/x/y"})
    assert (status, body["code"]) == (403, "FOLDER_ALREADY_EXISTS")
    await put(http, emu, "/x", "f.txt", b"12345")
    _, body = await call(http, emu, "GET", "folders", params={"folder": "/"})
    assert [f["path"] for f in body["folders"]] == ["/x"]
    assert body["info"]["total_folders_count"] == 1
    x = body["folders"][0]
    assert x["count"] == {"files_recursive": 1, "files_direct": 1}
    assert x["size"] == {"total_recursive_bytes": 5, "total_recursive_pretty": "5 B"}
    status, body = await call(http, emu, "GET", f"folders/{folder['uuid']}")
    assert body["folder"]["path"] == "/x/y"
    status, body = await call(http, emu, "DELETE", f"folders/{x['uuid']}")
    assert (status, body["code"]) == (409, "FOLDER_NOT_EMPTY")
    status, body = await call(http, emu, "DELETE", f"folders/{folder['uuid']}")
    assert body == {"status": "success", "action": "folder_deleted", "folder_uuid": folder["uuid"]}
    status, body = await call(http, emu, "GET", f"folders/{folder['uuid']}")
    assert status == 404
    emu.store.delete_files([r.uuid for r in emu.files()])
    status, body = await call(http, emu, "DELETE", "folders", json={"folders_uuids": [x["uuid"]]})
    assert body["action"] == "folders_deleted"
    assert body["folders_uuids"] == [x["uuid"]]
    root = emu.store.root.uuid
    status, body = await call(http, emu, "DELETE", f"folders/{root}")
    assert status == 403


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("naming", "pattern"),
    [
        ("keep", r"shot\.png"),
        ("suffix", r"shot-[A-Za-z0-9]{8}\.png"),
        ("uuid", r"[0-9a-f]{32}\.png"),
    ],
)
async def test_naming(
    emu: Emulator, http: aiohttp.ClientSession, naming: str, pattern: str
) -> None:
    emu.configure({"naming": naming})
    _, body = await put(http, emu, "/n", "shot.png", b"png")
    assert re.fullmatch(pattern, body["file"]["name"])
    assert body["file"]["info"]["name"] == "shot.png"
    assert emu.files()[0].original_path == "/n/shot.png"


@pytest.mark.e2e
async def test_same_name_policies(emu: Emulator, http: aiohttp.ClientSession) -> None:
    _, first = await put(http, emu, "/p", "a.txt", b"v1")
    old = first["file"]["uuid"]
    _, over = await put(http, emu, "/p", "a.txt", b"v2")
    assert over["file"]["uuid"] != old
    assert over["file"]["overwrite"] is True
    assert [r.uuid for r in emu.files()] == [over["file"]["uuid"]]
    emu.options.same_name = "version"
    current = over["file"]["uuid"]
    _, ver = await put(http, emu, "/p", "a.txt", b"v3")
    assert ver["file"]["uuid"] == current
    assert ver["file"]["overwrite"] is True
    assert ver["file"]["hash"]["sha1"] == sha1(b"v3")
    assert ver["file"]["modified_at"] > over["file"]["modified_at"]
    assert [(r.uuid, r.version) for r in emu.files()] == [(current, 2)]
    emu.options.same_name = "refuse"
    status, body = await put(http, emu, "/p", "a.txt", b"v4")
    assert (status, body["code"], body["existing_file_uuid"]) == (
        409,
        "FILE_ALREADY_EXISTS",
        current,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("policy", ["override", "version", "refuse"])
async def test_random_names_never_collide(
    emu: Emulator, http: aiohttp.ClientSession, policy: str
) -> None:
    emu.configure({"naming": "suffix", "same_name": policy})
    _, first = await put(http, emu, "/p", "a.txt", b"v1")
    status, second = await put(http, emu, "/p", "a.txt", b"v2")
    assert status == 200
    assert second["file"]["uuid"] != first["file"]["uuid"]
    assert sorted(r.sha1 for r in emu.files()) == sorted([sha1(b"v1"), sha1(b"v2")])
    # Identical content re-sent under the same name: the skip compares stored names by
    # default, so a renaming rule stores it again, as a second asset...
    status, again = await put(http, emu, "/p", "a.txt", b"v2")
    assert (status, again["file"]["uuid"] in (first["file"]["uuid"], second["file"]["uuid"])) == (
        200,
        False,
    )
    # ...and it is cancelled when the skip compares the names sent.
    emu.configure({"same_asset_by": "sent"})
    status, same = await put(http, emu, "/p", "a.txt", b"v2")
    assert same["code"] == "SAME_ASSET_EXISTS_SKIP_UPLOAD"


@pytest.mark.e2e
async def test_same_asset_and_sha1_conflict(emu: Emulator, http: aiohttp.ClientSession) -> None:
    _, first = await post(http, emu, "/s", "a.txt", b"same")
    status, body = await post(http, emu, "/s", "a.txt", b"same")
    assert status == 409
    assert "file" not in body
    assert body["code"] == "SAME_ASSET_EXISTS_SKIP_UPLOAD"
    assert body["existing_file_uuid"] == first["file"]["uuid"]
    assert body["similar_file_path"] == ""
    assert isinstance(body["info"], dict)
    emu.options.same_asset_status = 200
    status, body = await post(http, emu, "/s", "a.txt", b"same")
    assert (status, body["status"], body["code"]) == (200, "error", "SAME_ASSET_EXISTS_SKIP_UPLOAD")
    status, body = await post(http, emu, "/elsewhere", "b.txt", b"same")
    assert status == 200
    assert body["status"] == "success"
    emu.options.duplicates = "refuse"
    status, body = await post(http, emu, "/third", "c.txt", b"same")
    assert (status, body["code"]) == (200, "ERROR_SHA1_CONFLICT")
    assert body["similar_file_path"] in {"/s/a.txt", "/elsewhere/b.txt"}
    assert "file" not in body
    assert len(emu.files()) == 2


@pytest.mark.e2e
async def test_shape_options(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.configure({"size_as_int": True, "folder_trailing_slash": True})
    _, body = await put(http, emu, "/a/b", "x.txt", b"abc")
    assert body["file"]["size"] == 3
    assert body["file"]["folder"]["name"] == "/a/b/"
    _, body = await put(http, emu, "/", "y.txt", b"abcd")
    assert body["file"]["folder"]["name"] == "/"


# ---- switches for undocumented DAM behaviour (docs/dam-api.md §12) ---------------------------


async def listed(
    http: aiohttp.ClientSession, emu: Emulator, **params: str
) -> tuple[list[str], dict[str, Any]]:
    """The names a recursive listing shows, and the whole reply."""
    _, body = await call(http, emu, "GET", "files", params={"recursive": "1", **params})
    return [f["name"] for f in body["files"]], body


@pytest.mark.e2e
async def test_q_match(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.configure({"naming": "suffix"})
    await put(http, emu, "/", "beta.txt", b"b")
    for mode, q, found in (
        ("stored", "beta.txt", 0),  # the stored name is beta-XXXXXXXX.txt
        ("stored", "BETA-", 1),
        ("both", "beta.txt", 1),
        ("words", "beta", 1),
        ("words", "bet", 0),
        ("ignored", "nothing like it", 1),
    ):
        emu.configure({"q_match": mode})
        names, body = await listed(http, emu, q=q)
        assert (len(names), body["info"]["total_files_count"]) == (found, found), (mode, q)


@pytest.mark.e2e
@pytest.mark.parametrize("drift", [False, True])
async def test_page_drift(emu: Emulator, http: aiohttp.ClientSession, drift: bool) -> None:
    emu.configure({"page_drift": drift})
    for name in ("a.txt", "b.txt", "c.txt"):
        await put(http, emu, "/", name, name.encode())
    page = {"limit": "2", "sort": "created_at:asc"}
    first, _ = await listed(http, emu, offset="0", **page)
    await put(http, emu, "/", "d.txt", b"d")  # a file added between two pages
    second, _ = await listed(http, emu, offset="2", **page)
    if drift:
        assert (first, second) == (["c.txt", "b.txt"], ["b.txt", "a.txt"])  # b repeats
    else:
        assert (first, second) == (["a.txt", "b.txt"], ["c.txt", "d.txt"])


@pytest.mark.e2e
async def test_listing_sha1(emu: Emulator, http: aiohttp.ClientSession) -> None:
    for setting in (True, False):
        emu.configure({"listing_sha1": setting})
        name = f"{setting}.txt"
        _, uploaded = await put(http, emu, "/h", name, name.encode())
        assert uploaded["file"]["hash"]["sha1"] == sha1(name.encode())
        _, details = await call(http, emu, "GET", f"files/{uploaded['file']['uuid']}")
        assert details["file"]["hash"]["sha1"] == sha1(name.encode())
        _, body = await listed(http, emu)
        hashes = {f["name"]: f.get("hash", {}).get("sha1") for f in body["files"]}
        if setting:
            assert hashes == {"True.txt": sha1(b"True.txt")}
        else:
            assert hashes == {"True.txt": None, "False.txt": None}


@pytest.mark.e2e
@pytest.mark.parametrize("noop_conflict", [True, False])
async def test_noop_rename_and_moves(
    emu: Emulator, http: aiohttp.ClientSession, noop_conflict: bool
) -> None:
    emu.configure({"noop_conflict": noop_conflict})
    _, a = await put(http, emu, "/n", "a.txt", b"a")
    _, b = await put(http, emu, "/m", "b.txt", b"b")
    a_uuid, b_uuid = a["file"]["uuid"], b["file"]["uuid"]
    folder_uuid = a["file"]["folder"]["uuid"]
    bulk = {"files_uuids": [b_uuid, a_uuid], "new_folder_name": "/n"}
    for method, path, body in (
        ("PATCH", f"files/{a_uuid}", {"name": "a.txt"}),
        ("PUT", f"files/{a_uuid}/folders/{folder_uuid}", None),
        ("POST", "files/move", bulk),
    ):
        status, reply = await call(http, emu, method, path, json=body)
        if noop_conflict:
            assert (status, reply["code"]) == (409, "E801_ALREADY_EXIST"), path
        else:
            assert (status, reply["status"]) == (200, "success"), path
    moved = "/m/b.txt" if noop_conflict else "/n/b.txt"  # a failed bulk move moves nothing
    assert sorted(r.path for r in emu.files()) == sorted(["/n/a.txt", moved])


@pytest.mark.e2e
async def test_denied_permissions(emu: Emulator, http: aiohttp.ClientSession) -> None:
    _, a = await put(http, emu, "/", "a.txt", b"a")
    control = f"{emu.url}/_emulator/options"
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as session:
            deny = {"denied_permissions": ["OBJECTS_LIST", "FILE_RENAME"]}
            async with session.post(control, json=deny) as response:
                assert (await response.json())["options"]["denied_permissions"] == [
                    "OBJECTS_LIST",
                    "FILE_RENAME",
                ]
            async with session.post(control, json={"denied_permissions": ["NOPE"]}) as response:
                assert response.status == 400
                assert "denied_permissions" in (await response.json())["msg"]
    for method, path, permission in (
        ("GET", "files", "OBJECTS_LIST"),
        ("PATCH", f"files/{a['file']['uuid']}", "FILE_RENAME"),
    ):
        status, body = await call(http, emu, method, path, json={"name": "b.txt"})
        assert (status, body["status"], body["code"]) == (403, "error", "PERMISSION_DENIED")
        assert permission in body["msg"]
    status, _ = await call(http, emu, "GET", f"files/{a['file']['uuid']}")
    assert status == 200
    assert (await put(http, emu, "/", "b.txt", b"b"))[0] == 200
    emu.configure({"denied_permissions": []})
    assert (await call(http, emu, "GET", "files"))[0] == 200
    assert emu.stats.statuses[403] == 2


@pytest.mark.e2e
def test_every_api_route_needs_a_permission() -> None:
    routes = {
        (route.method, route.resource.canonical.removeprefix("/{token}/v4"))
        for route in make_app(Emulator()).router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/{token}/v4/")
        and route.method != "HEAD"
    }
    assert set(ROUTE_PERMISSIONS) <= routes
    # Downloads go through the permalink, for which docs/dam-api.md names no permission.
    assert routes - set(ROUTE_PERMISSIONS) == {
        ("GET", "/get/{uuid}"),
        ("GET", "/get/{uuid}/download"),
    }


@pytest.mark.e2e
async def test_listing_lag(http: aiohttp.ClientSession) -> None:
    async with serve(token=TOKEN, key=KEY, listing_lag_s=60) as emu:
        _, uploaded = await put(http, emu, "/lag", "a.txt", b"a")
        uuid = uploaded["file"]["uuid"]
        names, body = await listed(http, emu)
        assert names == []
        assert body["stats"]["approx_files_count"] == body["info"]["total_files_count"] == 0
        assert body["base"]["count"]["files_recursive"] == 0
        assert (await listed(http, emu, q="a.txt"))[0] == []
        status, details = await call(http, emu, "GET", f"files/{uuid}")
        assert (status, details["file"]["name"]) == (200, "a.txt")  # details are live
        _, folders = await call(http, emu, "GET", "folders")
        assert [f["count"]["files_recursive"] for f in folders["folders"]] == [1]  # live too
        emu.configure({"listing_lag_s": 0.3})  # a shorter lag applies to queued changes
        with anyio.fail_after(5):
            while not names:
                await anyio.sleep(0.05)
                names, body = await listed(http, emu)
        assert names == ["a.txt"]
        assert body["stats"]["approx_files_count"] == body["base"]["count"]["files_recursive"] == 1
        emu.configure({"listing_lag_s": 0})
        await put(http, emu, "/lag", "b.txt", b"b")
        assert (await listed(http, emu))[0] == ["a.txt", "b.txt"]  # live again at once


@pytest.mark.e2e
@pytest.mark.parametrize("style", ["seconds", "date", "none"])
async def test_rate_limit(emu: Emulator, http: aiohttp.ClientSession, style: str) -> None:
    emu.configure({"rate_limit": 1, "retry_after_style": style})
    with anyio.fail_after(10):
        async with http.get(f"{emu.api_url}/files") as response:
            assert response.status == 200
        async with http.get(f"{emu.api_url}/files") as response:
            assert response.status == 429
            retry_after = response.headers.get("Retry-After")
            assert (await response.json())["status"] == "error"
    if style == "seconds":
        assert retry_after == "1"
    elif style == "date":
        assert retry_after is not None
        assert parsedate_to_datetime(retry_after) > datetime.now(UTC)
    else:
        assert retry_after is None
    assert emu.stats.rate_limited == 1
    assert emu.stats.statuses[429] == 1
    with anyio.fail_after(10):
        async with (
            aiohttp.ClientSession() as control,
            control.get(f"{emu.url}/_emulator/stats") as response,
        ):
            assert response.status == 200  # control endpoints are never limited


@pytest.mark.e2e
async def test_server_errors_and_error_bodies(emu: Emulator, http: aiohttp.ClientSession) -> None:
    emu.options.error_rate = 1
    statuses = set()
    for _ in range(12):
        with anyio.fail_after(10):
            async with http.get(f"{emu.api_url}/files") as response:
                statuses.add(response.status)
                if response.status == 503:
                    assert "Retry-After" not in response.headers
    assert statuses == {500, 502, 503}
    emu.options.error_rate = 0
    emu.options.error_body_rate = 1
    status, body = await put(http, emu, "/", "a.txt", b"a")
    assert (status, body["status"], body["code"]) == (200, "error", "INTERNAL_ERROR")
    assert emu.files() == []
    assert emu.stats.faults["error_body"] == 1


@pytest.mark.e2e
@pytest.mark.parametrize("when", ["before", "after"])
async def test_connection_reset_around_commit(
    emu: Emulator, http: aiohttp.ClientSession, when: str
) -> None:
    emu.configure({f"reset_{when}_commit_rate": 1.0})
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, emu, "/r", "a.txt", b"payload")
    assert len(emu.files()) == (1 if when == "after" else 0)
    assert emu.stats.uploads_committed == (1 if when == "after" else 0)
    assert emu.stats.faults[f"reset_{when}_commit"] == 1


@pytest.mark.e2e
async def test_awkward_names_round_trip(emu: Emulator, http: aiohttp.ClientSession) -> None:
    folder = "/dir with space/ünï#%?&+'\""
    names = [
        "a b.txt",
        "hash#.txt",
        "pct%20.txt",
        "q?.txt",
        "amp&=.txt",
        "plus+.txt",
        "quo'\".txt",
        "日本.txt",
    ]
    for name in names:
        status, body = await put(http, emu, folder, name, name.encode())
        assert status == 200
        assert body["file"]["name"] == name
        assert body["file"]["url"]["path"] == f"{folder}/{name}"
    # aiohttp percent-encodes multipart file names by default; with quote_fields=False
    # (and in browsers) they travel as raw UTF-8 with quotes backslash-escaped.
    for quote_fields, name in ((True, "m&ö %41+.txt"), (False, 'raw "q" & ü %41.txt')):
        form = aiohttp.FormData(quote_fields=quote_fields)
        form.add_field("file", name.encode(), filename=name)
        params = {"folder": folder}
        status, body = await call(http, emu, "POST", "files", params=params, data=form)
        assert body["file"]["name"] == name
        names.append(name)
    _, body = await call(http, emu, "GET", "files", params={"folder": folder, "sort": "name:asc"})
    assert sorted(f["name"] for f in body["files"]) == sorted(names)
    assert body["base"]["path"] == folder
    _, body = await call(http, emu, "GET", "files", params={"recursive": "1", "q": "+"})
    assert {f["name"] for f in body["files"]} == {"plus+.txt", "m&ö %41+.txt"}


@pytest.mark.e2e
async def test_content_modes(tmp_path: Path) -> None:
    headers = {"X-Filerobot-Key": KEY}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with serve(token=TOKEN, key=KEY, content="disk", data_dir=tmp_path) as emu:
            big = os.urandom(3 * 1024 * 1024 + 17)  # many reads; delimiters straddle them
            _, body = await post(http, emu, "/", "d.bin", big)
            assert body["file"]["hash"]["sha1"] == sha1(big)
            uuid = body["file"]["uuid"]
            with anyio.fail_after(10):
                async with http.get(f"{emu.api_url}/get/{uuid}/download") as response:
                    assert await response.read() == big
            assert (tmp_path / "blobs" / uuid).read_bytes() == big
            assert list((tmp_path / "staging").iterdir()) == []
        async with serve(token=TOKEN, key=KEY, content="none") as emu:
            _, body = await put(http, emu, "/", "n.bin", b"gone")
            assert body["file"]["hash"]["sha1"] == sha1(b"gone")
            status, body = await call(http, emu, "GET", f"get/{body['file']['uuid']}")
            assert (status, body["code"]) == (410, "CONTENT_NOT_STORED")


@pytest.mark.e2e
async def test_control_endpoints(emu: Emulator, http: aiohttp.ClientSession) -> None:
    await put(http, emu, "/c", "a.txt", b"a")
    base = f"{emu.url}/_emulator"
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as control:
            async with control.get(f"{base}/files") as response:
                files = (await response.json())["files"]
            assert [f["path"] for f in files] == ["/c/a.txt"]
            assert files[0]["sha1"] == sha1(b"a")
            async with control.get(f"{base}/stats") as response:
                stats = await response.json()
            assert stats["requests"]["PUT /{token}/v4/files"] == 1
            assert stats["uploads_committed"] == 1
            async with control.post(f"{base}/options", json={"naming": "uuid"}) as response:
                assert (await response.json())["options"]["naming"] == "uuid"
            async with control.post(f"{base}/options", json={"naming": "bad"}) as response:
                assert response.status == 400
            async with control.post(f"{base}/revoke") as response:
                assert response.status == 200
            _status, body = await call(http, emu, "GET", "files")
            assert body["code"] == "KEY_EXPIRED"
            async with control.post(f"{base}/reset") as response:
                assert response.status == 200
    assert emu.files() == []
    assert emu.options.naming == "uuid"
    assert not emu.key_revoked
    assert emu.snapshot() == {}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--error-rate", "3"], "error_rate"),
        (["--deny", "FILE_LIST"], "unknown permission 'FILE_LIST'"),
        (["--listing-lag-s", "-1"], "listing_lag_s"),
        (["--sort", "x"], "--sort"),
    ],
)
def test_cli_rejects_bad_values(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        run(args)
    assert caught.value.code == 2
    assert named in capsys.readouterr().err


def test_cli_names_every_unknown_with_the_options_defaults() -> None:
    parser = build_parser()
    text = parser.format_help()
    assert "undocumented behaviour (docs/dam-api.md §12)" in text
    flags = {
        "--q-match": "q_match",
        "--listing-lag-s": "listing_lag_s",
        "--rename-info-name": "rename_info_name",
        "--updated-after": "updated_after",
        "--sort": "sort",
        "--page-drift": "page_drift",
        "--no-listing-sha1": "listing_sha1",
        "--no-noop-conflict": "noop_conflict",
        "--same-asset-by": "same_asset_by",
        "--deny": "deny",
    }
    defaults = Options().as_dict()
    args = vars(parser.parse_args([]))
    for flag, dest in flags.items():
        assert flag in text
        assert args[dest] == defaults.get(dest, defaults["denied_permissions"]), flag


@pytest.mark.e2e
async def test_command_line_serves_until_sigterm() -> None:
    unknowns = ["--q-match", "words", "--listing-lag-s", "0.5", "--rename-info-name", "rewritten"]
    unknowns += ["--updated-after", "exact", "--sort", "honoured", "--page-drift"]
    unknowns += ["--no-listing-sha1", "--no-noop-conflict", "--deny", "FILE_MOVE"]
    async with emulator_command("--token", "t", "--key", "k", *unknowns) as (process, line):
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+) token=t\n", line)
        assert match, line
        async with aiohttp.ClientSession(headers={"X-Filerobot-Key": "k"}) as http:
            with anyio.fail_after(10):
                async with http.get(f"{match[1]}/t/v4/files") as response:
                    assert response.status == 200
                async with http.get(f"{match[1]}/_emulator/options") as response:
                    options = (await response.json())["options"]
        assert options == {
            **Options().as_dict(),
            "q_match": "words",
            "listing_lag_s": 0.5,
            "rename_info_name": "rewritten",
            "updated_after": "exact",
            "sort": "honoured",
            "page_drift": True,
            "listing_sha1": False,
            "noop_conflict": False,
            "denied_permissions": ["FILE_MOVE"],
        }
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0
