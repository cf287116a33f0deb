"""`syncd probe`: run once against a real project, find out how it reads the parts of the
DAM API no source settles (docs/dam-api.md §12): the naming rule, the same-name and duplicate
policies, how far listings lag behind writes, what `q`, `updated_after` and `sort` do,
what a rename does to `info.name`, and which permissions the key holds.

This module owns the run: the key check, the order of the checks, the checks that write
(uploads, renames, a move), and stopping on SIGINT/SIGTERM. Every write lands in a scratch
folder, `/.syncd-probe-<hex>`, that is removed at the end whatever happens
(`syncd.probe.scratch`); the checks that read listings are in `syncd.probe.listing`, and
`syncd.probe.report` turns the `Findings` into the table, the JSON document and advice.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from syncd.config.schema import Config
from syncd.dam.client import DamClient, Uploaded
from syncd.dam.connect import check_access, make_dam, make_pacer
from syncd.dam.ops import uuid_segment
from syncd.errors import AuthError, DamError, NameConflict, NotFound, SyncdError
from syncd.probe.listing import WAIT_S, ListingChecks
from syncd.probe.scratch import PERMISSIONS, Denied, Findings, Stop, folder_uuid, items_of

__all__ = ["PERMISSIONS", "WAIT_S", "Findings", "Probe", "run_probe"]


class Probe(ListingChecks):
    """One run of every check in one scratch folder, through one DAM client.

    Args:
        dam: an open client.
        where: the DAM's address, for the report.
        wait_s: the longest a listing is polled for the probe's own writes.
    """

    def __init__(self, dam: DamClient, where: str, *, wait_s: float = WAIT_S) -> None:
        self.run_id = secrets.token_hex(4)
        super().__init__(dam, f"/.syncd-probe-{self.run_id}", where, wait_s=wait_s)
        # The file whose listing lag is measured, then renamed: uuid, name sent, content.
        self.base: tuple[str, str, bytes] | None = None
        self.other: str | None = None  # another live file, for the move
        self.work = anyio.CancelScope()  # the checks; a signal cancels it

    async def run(self, config: Config) -> None:
        """Check the key, run every check, then remove the scratch folder whatever happened.

        Raises:
            AuthError: the DAM rejects the key (nothing was written).
            ConfigError: the DAM does not know the project token (nothing was written).
        """
        try:
            with self.work:
                await self._check_key(config)
                # Stop: the key was rejected mid-run, as the findings say.
                with contextlib.suppress(Stop):
                    await self._checks()
        finally:
            await self.remove()
            self.found.rate_limit_headers = dict(self.dam.rate_headers)
            self._unexercised()

    async def _check_key(self, config: Config) -> None:
        """The key check, a one-file listing of `/`: OBJECTS_LIST too."""
        try:
            await check_access(self.dam, config)
        except AuthError as exc:
            # The DAM knows a key it refuses a listing for a missing permission.
            if exc.status != 403 or "PERMISSION" not in (exc.code or "").upper():
                raise
            self.found.permissions["OBJECTS_LIST"] = False
            self.note(f"OBJECTS_LIST is missing: {exc}")
        else:
            self.found.permissions["OBJECTS_LIST"] = True

    async def _checks(self) -> None:
        self.note("max_post_bytes: not measured (finding it would take uploads of up to 500 MB)")
        await self._step("create the scratch folder", self._create_scratch)
        await self._step("naming", self._naming)
        if not self.found.permissions.get("FILE_UPLOAD"):
            return  # every other check needs a file
        if self.found.permissions.get("FILE_DELETE") is False:
            self.note("the probe stopped after its first upload, as it could not delete it")
            await self._step("the file left behind", self._exercise_leftover)
            return
        await self._step("listing lag", self._listing_lag)
        await self._step("identical content", self._identical)
        await self._step("same name", self._same_name)
        await self._step("rename", self._rename)
        await self._step("move", self._move)
        if self.found.permissions.get("OBJECTS_LIST") is False:
            self.note("the listing checks (lag, sort, q, updated_after) need OBJECTS_LIST")
            return
        if self.base is None:
            return  # their file could not be uploaded: see failures
        await self._step("settle", self.settle)
        await self._step("sort", self.check_sort)
        await self._step("q", self.check_q)
        await self._step("updated_after", self.check_updated_after)

    async def _step(self, name: str, check: Callable[[], Awaitable[None]]) -> None:
        """Run one check; a denial is recorded already, any other DAM error is a failure."""
        try:
            await check()
        except Denied:
            pass
        except DamError as exc:
            self.found.failures.append(f"{name}: {exc}")

    def _unexercised(self) -> None:
        """Count a permission no request exercised as missing, and say why."""
        why = "an earlier step failed (see failures)"
        if self.found.interrupted:
            why = "the probe was interrupted first"
        elif self.found.key_rejected:
            why = "the DAM rejected the key"
        elif self.found.permissions.get("FILE_UPLOAD") is False:
            why = "it needs a probe file, and FILE_UPLOAD is missing"
        elif self.found.permissions.get("FILE_DELETE") is False:
            why = "the probe stopped early so as not to leave more files behind"
        for permission in PERMISSIONS:
            if permission not in self.found.permissions:
                self.found.permissions[permission] = False
                self.found.unexercised.append(permission)
                self.note(f"{permission} could not be exercised ({why}); counted as missing")
        self.found.permissions = {p: self.found.permissions[p] for p in PERMISSIONS}

    # ---- requests ----------------------------------------------------------------------

    def _name(self) -> str:
        # A fresh random word per file, so that q can single each file out.
        return f"probe-{self.run_id}-{secrets.token_hex(5)}.txt"

    def _content(self) -> bytes:
        # Unique bytes: content found elsewhere in the project would trip its duplicate
        # policy and muddle every other check.
        return f"syncd probe {self.run_id} {secrets.token_hex(16)}\n".encode()

    async def _upload(self, name: str, content: bytes) -> Uploaded:
        self.wrote = True
        up = await self.ask(
            "FILE_UPLOAD", self.dam.upload(self.path, name, lambda: content, stream=False)
        )
        self.made_folder(self.path, None)  # an upload creates its folder
        if not up.adopted:
            self.made_file(up.uuid, up.name or None, self.path)
        return up

    async def _details(self, uuid: str) -> dict[str, Any]:
        path = f"/files/{uuid_segment(uuid, 'details')}"
        body = await self.ask("OBJECTS_FETCH", self.dam._call("GET", path, what=f"details {uuid}"))
        file = body.get("file")
        return file if isinstance(file, dict) else {}

    # ---- the checks that write ---------------------------------------------------------

    async def _create_scratch(self) -> None:
        self.wrote = True
        body = await self.ask(
            "DIR_CREATE",
            self.dam._call(
                "POST", "/folders", what=f"create {self.path}", json_body={"name": self.path}
            ),
        )
        self.made_folder(self.path, folder_uuid(body))

    async def _naming(self) -> None:
        """`naming`, and FILE_DELETE before any other file is made."""
        name = self._name()
        up = await self._upload(name, self._content())
        if not up.name:
            self.note("naming: not observed: the upload reply names no stored file")
        elif up.name == name:
            self.found.naming = "keep"
        elif up.name.startswith(name.rpartition(".")[0] + "-"):
            self.found.naming = "suffix"
        else:
            self.found.naming = "random"
        await self.ask("FILE_DELETE", self.delete(up.uuid))

    async def _exercise_leftover(self) -> None:
        """Without FILE_DELETE, exercise the other permissions on the one file that will
        be left anyway, by requests that create nothing more."""
        uuid = next(iter(self.files), None)
        if uuid is None:
            return
        await self._details(uuid)
        new = self._name()
        with contextlib.suppress(Denied):
            await self.ask(
                "FILE_RENAME",
                self.dam._call(
                    "PATCH",
                    f"/files/{uuid_segment(uuid, 'rename')}",
                    what=f"rename {uuid}",
                    json_body={"name": new},
                ),
            )
            self.made_file(uuid, new, None)
        # Into the folder it is in: the 409 some DAMs answer shows the permission too.
        move = {"files_uuids": [uuid], "new_folder_name": self.path}
        with contextlib.suppress(Denied, NameConflict):
            await self.ask(
                "FILE_MOVE",
                self.dam._call("POST", "/files/move", what=f"move {uuid}", json_body=move),
            )

    async def _listing_lag(self) -> None:
        name, content = self._name(), self._content()
        up = await self._upload(name, content)
        self.base = (up.uuid, name, content)
        if self.found.permissions.get("OBJECTS_LIST") is not False:
            await self.measure_lag(up.uuid)
        await self._details(up.uuid)  # OBJECTS_FETCH, on a file known to exist

    async def _identical(self) -> None:
        """`identical_same_name` (same name, same bytes), then `duplicates` (same bytes,
        another name)."""
        if self.base is None:
            return
        _, name, content = self.base
        try:
            again = await self._upload(name, content)
        except NameConflict:
            self.found.identical_same_name = "skipped"
            self.note("identical_same_name: refused with 409, not SAME_ASSET_EXISTS_SKIP_UPLOAD")
        else:
            self.found.identical_same_name = "skipped" if again.adopted else "stored"
        dup = await self._upload(self._name(), content)
        self.found.duplicates = "refuse" if dup.adopted else "accept"
        if dup.adopted and dup.elsewhere is None:
            self.note(
                "duplicates: identical content under another name was answered with"
                " SAME_ASSET_EXISTS_SKIP_UPLOAD, not ERROR_SHA1_CONFLICT"
            )

    async def _same_name(self) -> None:
        """`same_name`: other bytes uploaded under a name just used."""
        name = self._name()
        first = await self._upload(name, self._content())
        self.other = first.uuid
        try:
            second = await self._upload(name, self._content())
        except NameConflict:
            self.found.same_name = "refuse"
            return
        self.other = second.uuid
        if second.uuid == first.uuid:
            self.found.same_name = "version"
            return
        try:
            await self._details(first.uuid)
        except NotFound:
            self.files.pop(first.uuid, None)
            self.gone.add(first.uuid)
            self.found.same_name = "override"
            return
        except Denied:
            self.files[first.uuid].sure = False
            self.note("same_name: not observed: seeing the first upload needs OBJECTS_FETCH")
            return
        self.note(
            "same_name: not observable: the naming rule gave each upload its own stored"
            " name, so both were kept"
        )

    async def _rename(self) -> None:
        """`rename_rewrites_info_name`, then `noop_rename_conflict`."""
        if self.base is None:
            return
        uuid, sent, _ = self.base
        path, what = f"/files/{uuid_segment(uuid, 'rename')}", f"rename {uuid}"
        new = self._name()
        body = await self.ask(
            "FILE_RENAME", self.dam._call("PATCH", path, what=what, json_body={"name": new})
        )
        try:
            file = await self._details(uuid)
        except Denied:
            reply = body.get("file")
            file = reply if isinstance(reply, dict) else {}
        stored = file.get("name") if isinstance(file.get("name"), str) else new
        self.made_file(uuid, stored, None)
        info = file.get("info")
        info_name = info.get("name") if isinstance(info, dict) else None
        if info_name == sent:
            self.found.rename_rewrites_info_name = False
        elif info_name == stored:
            self.found.rename_rewrites_info_name = True
        else:
            self.note("rename_rewrites_info_name: not observed: info.name is neither name")
        # Sent raw: dam.rename forgives this 409, and the probe wants to see it.
        try:
            await self.ask(
                "FILE_RENAME", self.dam._call("PATCH", path, what=what, json_body={"name": stored})
            )
        except NameConflict:
            self.found.noop_rename_conflict = True
        else:
            self.found.noop_rename_conflict = False

    async def _move(self) -> None:
        """FILE_MOVE: a file into a new subfolder, as syncd moves (`POST /files/move`)."""
        uuid = self.other
        if uuid is None or uuid not in self.files:
            return
        target = f"{self.path}/moved"
        move = {"files_uuids": [uuid], "new_folder_name": target}
        try:
            body = await self.ask(
                "FILE_MOVE",
                self.dam._call("POST", "/files/move", what=f"move to {target}", json_body=move),
            )
        except DamError:
            self.made_folder(target, None)  # the outcome is unknown: look for it at the end
            raise
        moved = [i for i in items_of(body) if i["uuid"] == uuid]
        self.made_folder(target, folder_uuid(moved[0]) if moved else None)
        self.made_file(uuid, None, target)

    # ---- signals -----------------------------------------------------------------------

    async def interrupt_on_signals(self, *, task_status: TaskStatus[None]) -> None:
        """The first SIGINT or SIGTERM stops the checks (the cleanup still runs); a second
        one cuts the cleanup short too."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.found.interrupted is None:
                    self.found.interrupted = signal.Signals(signum).name
                    self.work.cancel()
                else:
                    self.note("a second signal cut the cleanup short")
                    self.cleanup.cancel()


async def run_probe(
    config: Config, key: str, *, signals: bool = False, wait_s: float = WAIT_S
) -> Findings:
    """Run every check in a fresh scratch folder, remove it, and return the findings.

    Args:
        config: the syncd configuration (its [dam] section).
        key: the API key.
        signals: stop on SIGINT/SIGTERM (still cleaning up), as the command line does.
        wait_s: the longest a listing is polled for the probe's own writes.

    Raises:
        AuthError: the DAM rejects the key (nothing was written).
        ConfigError: the DAM does not know the project token, or its TLS certificate
            cannot be verified (nothing was written).
        DamError: the DAM could not be reached for the key check (nothing was written).
    """
    dam = make_dam(config, key, make_pacer(config))
    probe = Probe(dam, f"{config.dam.base_url}/{config.dam.token}", wait_s=wait_s)
    error: SyncdError | None = None
    async with dam, anyio.create_task_group() as tg:
        if signals:
            await tg.start(probe.interrupt_on_signals)
        try:
            await probe.run(config)
        except SyncdError as exc:  # raised below: the task group would wrap it in a group
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return probe.found
