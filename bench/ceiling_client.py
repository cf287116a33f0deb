"""The ceiling client: a minimal aiohttp loop that POSTs every file under a folder to the
DAM with fixed concurrency and does nothing else (no state, no hashing, no retries, no
logging). What syncd's upload loop is measured against.

With `--bytes`, each body is encoded by hand into one `bytes` (as syncd encodes small
files) instead of aiohttp's FormData, the cheapest way aiohttp can send it.

Usage: python bench/ceiling_client.py URL TOKEN KEY ROOT CONCURRENCY [--bytes]
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from urllib.parse import quote

import aiohttp


def files(root: str) -> list[tuple[str, str]]:
    """(DAM folder, local path) of every file under `root`."""
    out: list[tuple[str, str]] = []
    for dirpath, _, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        folder = "/ceiling" if rel == "." else f"/ceiling/{rel}"
        out.extend((folder, os.path.join(dirpath, name)) for name in names)
    return out


def encoded(name: str, data: bytes) -> tuple[bytes, str]:
    """A hand-encoded multipart body: the info part, then the file part."""
    boundary = secrets.token_hex(16)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="info[files[]]"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps({'name': name})}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="files[]"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def main(
    url: str,
    token: str,
    key: str,
    todo: list[tuple[str, str]],
    concurrency: int,
    raw: bool,
) -> int:
    jobs: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for job in todo:
        jobs.put_nowait(job)
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency + 2)
    async with aiohttp.ClientSession(
        connector=connector, headers={"X-Filerobot-Key": key}
    ) as session:

        async def worker() -> None:
            nonlocal failures
            while not jobs.empty():
                folder, path = jobs.get_nowait()
                name = os.path.basename(path)
                with open(path, "rb") as f:  # noqa: ASYNC230 - the minimal loop reads inline
                    data = f.read()
                target = f"{url}/{token}/v4/files?folder={quote(folder)}"
                if raw:
                    body, ctype = encoded(name, data)
                    request = session.post(target, data=body, headers={"Content-Type": ctype})
                else:
                    form = aiohttp.FormData(quote_fields=False)
                    form.add_field("info[files[]]", json.dumps({"name": name}))
                    form.add_field("files[]", data, filename=name)
                    request = session.post(target, data=form)
                async with request as resp:
                    await resp.read()
                    failures += resp.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return 1 if failures else 0


if __name__ == "__main__":
    u, t, k, r, c = sys.argv[1:6]
    raise SystemExit(asyncio.run(main(u, t, k, files(r), int(c), "--bytes" in sys.argv[6:])))
