"""A local emulator of the part of the Scaleflex DAM (Filerobot) v4 HTTP API that syncd uses,
for tests, the demo and benchmarks: a real aiohttp server on loopback with the project
policies of docs/dam-api.md §2.3, fault injection and an unauthenticated `/_emulator/` control API.

Modules: `options` (runtime settings, including switches for undocumented DAM behaviour),
`model` (records, errors, path rules), `policies` (upload and listing rules), `store` (the
in-memory DAM), `index` (listing filters and the lagging listing index), `blobs` (content),
`shapes` (wire format), `permissions` (key permissions per route), `faults` (fault
injection), `malice` (a deliberately hostile DAM), `formdata` (multipart reader), `handlers` and `uploads` (request handlers),
`app` (routes and middleware), `server` (`Emulator`, `serve`) and `cli` (`run`).

Example:
    ```python
    async with serve(token="t", key="k", naming="suffix") as emu:
        ...  # talk to f"{emu.url}/t/v4/files" with header X-Filerobot-Key: k
        assert emu.files()[0].original_name == "a.jpg"
    ```
"""

from __future__ import annotations

from syncd.emulator.app import make_app
from syncd.emulator.cli import run
from syncd.emulator.model import EmulatorError
from syncd.emulator.options import Options
from syncd.emulator.server import Emulator, FileRecord, Stats, serve

__all__ = [
    "Emulator",
    "EmulatorError",
    "FileRecord",
    "Options",
    "Stats",
    "make_app",
    "run",
    "serve",
]
