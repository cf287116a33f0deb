"""The ceiling client: a minimal aiohttp loop that POSTs every file under a folder to the
DAM with fixed concurrency and does nothing else (no state, no hashing, no retries, no
logging). What syncd's upload loop is measured against.

Usage: python bench/ceiling_client.py URL TOKEN KEY ROOT CONCURRENCY
"""

from __future__ import annotations

import asyncio
import json
import os
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


async def main(
    url: str, token: str, key: str, todo: list[tuple[str, str]], concurrency: int
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
                form = aiohttp.FormData(quote_fields=False)
                form.add_field("info[files[]]", json.dumps({"name": name}))
                form.add_field("files[]", data, filename=name)
                async with session.post(
                    f"{url}/{token}/v4/files?folder={quote(folder)}", data=form
                ) as resp:
                    await resp.read()
                    failures += resp.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return 1 if failures else 0


if __name__ == "__main__":
    u, t, k, r, c = sys.argv[1:6]
    raise SystemExit(asyncio.run(main(u, t, k, files(r), int(c))))
