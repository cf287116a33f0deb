"""A uuid the DAM gave must look like one before syncd splices it into a URL path
(`syncd.dam.ops.uuid_segment`): `..` or `a/b?x=` would otherwise address another resource.
A bad one fails only the request for it, with a `PermanentDamError` that shows it escaped,
and nothing is sent."""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.dam.client import DamClient
from syncd.dam.limits import Backoff
from syncd.dam.ops import AssetOps, uuid_segment
from syncd.dam.pacer import Pacer
from syncd.emulator import Emulator
from syncd.engine.moves import carry_out_moves
from syncd.errors import PermanentDamError
from syncd.model import Action, Op
from tests.conftest import KEY, TOKEN

SYNCD = Path(__file__).resolve().parents[2] / "syncd"

GOOD = ["0b6f5f0e-8d1c-4d57-9a0e-3c0f7d1f2a9b", "a", "ABC-123", "x" * 64]
BAD: list[object] = [
    ".",
    "..",
    "",
    "a/b",
    "../folders",
    "x?y=1",
    "a#b",
    "%2e%2e",
    "a b",
    "a\nb",
    "\x1b[31mred",
    "é",
    "a.b",
    "x" * 65,
    None,
    7,
    ["a"],
    {"uuid": "a"},
]


@pytest.mark.parametrize("uuid", GOOD)
def test_a_plain_token_is_a_uuid(uuid: str) -> None:
    assert uuid_segment(uuid, "delete") == uuid


@pytest.mark.parametrize("uuid", BAD, ids=repr)
def test_anything_else_is_refused_and_shown_escaped(uuid: object) -> None:
    with pytest.raises(PermanentDamError) as caught:
        uuid_segment(uuid, "delete")
    message = str(caught.value)
    assert message.startswith("delete: the DAM gave ")
    assert message.endswith(" as a uuid, which is not one")
    if len(repr(uuid)) <= 100:
        assert repr(uuid) in message
    assert message.isprintable()  # escaped: no raw newline or ESC reaches a console


def test_a_huge_value_is_cut_in_the_message() -> None:
    with pytest.raises(PermanentDamError) as caught:
        uuid_segment("/" * 10_000, "rename")
    assert len(str(caught.value)) < 200


@pytest.fixture
async def dam(emulator: Emulator) -> AsyncIterator[DamClient]:
    pacer = Pacer(2, backoff=Backoff(base_s=0.01, cap_s=0.05, max_attempts=3))
    async with DamClient(emulator.url, TOKEN, KEY, pacer) as client:
        yield client


@pytest.mark.parametrize("uuid", ["..", ".", "a/../../x", "x?limit=1"])
async def test_no_request_goes_out_for_a_bad_uuid(dam: DamClient, emulator: Emulator, uuid: str):
    with anyio.fail_after(10):
        for call in (dam.details, dam.exists, dam.delete):
            with pytest.raises(PermanentDamError, match=re.escape(repr(uuid))):
                await call(uuid)
        with pytest.raises(PermanentDamError, match=r"^rename: the DAM gave "):
            await dam.rename(uuid, "b.txt")
    assert dam.requests == 0
    assert sum(emulator.stats.requests.values()) == 0


async def test_a_bad_uuid_fails_only_its_own_move(dam: DamClient, emulator: Emulator) -> None:
    with anyio.fail_after(10):
        good = await dam.upload("/r", "a.txt", lambda: b"a", stream=False)
        moves = [
            Action(Op.MOVE, "a2.txt", uuid=good.uuid, source="a.txt"),
            Action(Op.MOVE, "b2.txt", uuid="..", source="b.txt"),
        ]
        outcome = await carry_out_moves(dam, "/r", moves)
    assert [a.path for a in outcome.done] == ["a2.txt"]
    assert [(a.path, str(e)) for a, e in outcome.failed] == [
        ("b2.txt", "rename: the DAM gave '..' as a uuid, which is not one")
    ]
    assert [f.path for f in emulator.files()] == ["/r/a2.txt"]


class FolderOps(AssetOps):
    """`AssetOps` over canned replies: an empty folder whose listing gives `uuid`."""

    def __init__(self, uuid: object) -> None:
        self.uuid = uuid
        self.sent: list[tuple[str, str]] = []

    async def count(self, folder: str) -> int | None:
        return 0

    async def _call(self, method: str, path: str, *, what: str, **kw: Any) -> dict[str, Any]:
        self.sent.append((method, path))
        return {"folders": [{"path": "/r/gone", "uuid": self.uuid}]}


@pytest.mark.parametrize("uuid", ["..", None, 42, "a/b"], ids=repr)
async def test_a_bad_folder_uuid_is_not_deleted(uuid: object) -> None:
    ops = FolderOps(uuid)
    with pytest.raises(PermanentDamError, match=r"^remove /r/gone: the DAM gave "):
        await ops.remove_empty_folder("/r/gone")
    assert ops.sent == [("GET", "/folders")]
    # Removing emptied folders logs the failure and goes on.
    await ops.remove_emptied_folders("/r", ["gone"])
    assert ops.sent == [("GET", "/folders")] * 2


async def test_a_good_folder_uuid_is_deleted() -> None:
    ops = FolderOps("f-1")
    assert await ops.remove_empty_folder("/r/gone")
    assert ops.sent == [("GET", "/folders"), ("DELETE", "/folders/f-1")]


def test_every_uuid_spliced_into_a_url_is_checked() -> None:
    """Every f-string in syncd (the emulator, the server side, aside) that builds a
    `/files/...` or `/folders/...` path passes what follows through `uuid_segment`."""
    unchecked = []
    for source in sorted(SYNCD.rglob("*.py")):
        if "emulator" in source.parts:
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr):
                continue
            for part, spliced in itertools.pairwise(node.values):
                if not (
                    isinstance(part, ast.Constant)
                    and str(part.value).endswith(("/files/", "/folders/"))
                    and isinstance(spliced, ast.FormattedValue)
                ):
                    continue
                call = spliced.value
                if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "uuid_segment"):
                    unchecked.append(f"{source.name}:{node.lineno}: {ast.unparse(node)}")
    assert unchecked == []
