"""The emulator's multipart reader (syncd.emulator.formdata) cross-checked against an
independent parser, python-multipart (the one Starlette and FastAPI use), on the bodies
syncd's encoder (syncd.dam.multipart) sends and on arbitrary bodies: the encoder and the
emulator were written together, so they could share one misreading that only a third
reader would show."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, parse_options_header

from syncd.dam.multipart import multipart_body
from syncd.emulator.formdata import FormReader, boundary_of, disposition
from tests.conftest import NAMES

pytestmark = pytest.mark.unit

Part = tuple[str, str | None, bytes]  # field name, file name, body


class Chunks:
    """A request body that arrives in pieces of `size` bytes."""

    def __init__(self, body: bytes, size: int) -> None:
        self._body, self._size, self._at = body, size, 0

    async def readany(self) -> bytes:
        chunk = self._body[self._at : self._at + self._size]
        self._at += len(chunk)
        return chunk


def emulator_reads(body: bytes, content_type: str, size: int) -> list[Part]:
    async def read() -> list[Part]:
        reader = FormReader(Chunks(body, size), boundary_of(content_type))
        parts = []
        while (headers := await reader.next_part()) is not None:
            field, filename = disposition(headers["content-disposition"])
            parts.append((field, filename, b"".join([c async for c in reader.body()])))
        return parts

    return anyio.run(read)


def python_multipart_reads(body: bytes, content_type: str, size: int) -> list[Part]:
    _, params = parse_options_header(content_type)
    parts: list[Part] = []
    headers: dict[bytes, bytes] = {}
    field = bytearray()
    value = bytearray()
    data = bytearray()

    def on_header_field(b: bytes, start: int, end: int) -> None:
        field.extend(b[start:end])

    def on_header_value(b: bytes, start: int, end: int) -> None:
        value.extend(b[start:end])

    def on_header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_part_data(b: bytes, start: int, end: int) -> None:
        data.extend(b[start:end])

    def on_part_end() -> None:
        _, disp = parse_options_header(headers[b"content-disposition"])
        filename = disp.get(b"filename")
        parts.append(
            (
                disp[b"name"].decode("utf-8"),
                None if filename is None else filename.decode("utf-8"),
                bytes(data),
            )
        )
        headers.clear()
        data.clear()

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    for at in range(0, len(body), size):
        parser.write(body[at : at + size])
    parser.finalize()
    return parts


class Sink:
    """Where aiohttp's multipart writer writes a streamed body."""

    def __init__(self) -> None:
        self.buf = bytearray()

    async def write(self, data: bytes) -> None:
        self.buf += data

    async def drain(self) -> None:
        return None


def encoded(name: str, content: bytes, *, streamed: bool) -> tuple[bytes, str]:
    """The body and Content-Type syncd sends to upload `content` as `name`."""
    if not streamed:
        body, headers = multipart_body(name, content)
        assert isinstance(body, bytes)
        assert headers is not None
        return body, headers["Content-Type"]

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(content), 7):
            yield content[at : at + 7]

    async def write() -> tuple[bytes, str]:
        form, _ = multipart_body(name, chunks())
        writer = form()
        sink = Sink()
        await writer.write(sink)
        return bytes(sink.buf), writer.content_type

    return anyio.run(write)


# python-multipart takes a filename that starts like "C:\" or "\\" for an old browser's
# full Windows path and keeps only its last part; syncd never sends a path, and that
# reading is python-multipart's, so such names are left out of the comparison.
names = st.one_of(
    st.sampled_from(NAMES),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40),
).filter(lambda n: n[1:3] != ":\\" and not n.startswith("\\\\"))
# Content that looks like the structure around it: line breaks, dashes, boundaries.
contents = st.lists(
    st.sampled_from([b"\r\n", b"--", b"\r\n--", b"x", b"\xff\x00", b"boundary", b"\r"])
    | st.binary(max_size=64),
    max_size=30,
).map(b"".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, content=contents, streamed=st.booleans(), size=st.integers(1, 97))
def test_both_parsers_read_what_syncd_sends(name, content, streamed, size):
    body, content_type = encoded(name, content, streamed=streamed)
    theirs = python_multipart_reads(body, content_type, size)
    ours = emulator_reads(body, content_type, size)
    # The independent parser reads exactly what syncd meant to send...
    assert theirs == [
        ("info[files[]]", None, json.dumps({"name": name}).encode()),
        ("files[]", name, content),
    ]
    # ...and the emulator reads the same parts, bodies and all. Its file name may differ
    # only where it decodes a name that looks percent-encoded (aiohttp's default
    # quoting); the upload then takes its name from the info part, which is exact.
    assert [(f, b) for f, _, b in ours] == [(f, b) for f, _, b in theirs]
    assert json.loads(ours[0][2])["name"] == name
    if "%" not in name:
        assert ours[1][1] == name


field_names = st.text(st.sampled_from("abcxyz[]_-0"), min_size=1, max_size=12)
bodies = st.lists(st.tuples(field_names, st.none() | names, contents), min_size=1, max_size=5)


def reference_encoding(parts: list[Part], boundary: str) -> bytes:
    """A plain multipart body, written by hand from RFC 7578: the test's own encoder."""
    out = bytearray()  # python-multipart does not take a preamble (RFC 2046 allows one)
    for field, filename, data in parts:
        disp = f'form-data; name="{field}"'
        if filename is not None:
            disp += '; filename="' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\nepilogue".encode()
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(parts=bodies, size=st.integers(1, 97))
def test_both_parsers_agree_on_arbitrary_bodies(parts, size):
    boundary = "b0undary-7e3c"
    parts = [(f, n, d) for f, n, d in parts if f"--{boundary}".encode() not in d]
    body = reference_encoding(parts, boundary)
    content_type = f"multipart/form-data; boundary={boundary}"
    ours = emulator_reads(body, content_type, size)
    theirs = python_multipart_reads(body, content_type, size)
    assert (
        [(f, b) for f, _, b in ours]
        == [(f, b) for f, _, b in theirs]
        == [(f, d) for f, _, d in parts]
    )
    for (_, mine, _), (_, other, _), (_, sent, _) in zip(ours, theirs, parts, strict=True):
        assert other == sent
        if sent is None or "%" not in sent:
            assert mine == sent
