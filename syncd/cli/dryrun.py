"""The dry-run plan as `--dry-run` prints it: one line per change, then the totals."""

from __future__ import annotations

from typing import TextIO

from syncd.config.schema import FolderConfig
from syncd.engine.plan import FolderPlan
from syncd.engine.progress import human_bytes
from syncd.model import Op
from syncd.redact import escape

__all__ = ["print_plan"]

_VERBS = {
    Op.UPLOAD: "upload",
    Op.REPLACE: "update",
    Op.DELETE: "delete",
    Op.ADOPT: "match",
    Op.MOVE: "move",
}


def print_plan(out: TextIO, folder: FolderConfig, decided: FolderPlan) -> None:
    """Write the plan of one folder to `out`. Names and DAM text are escaped: a file name
    may hold control characters."""
    out.write(escape(f"{folder.local} → {folder.remote}") + "\n")
    nbytes = 0
    for a in decided.actions:
        verb = _VERBS.get(a.op)
        if verb is None:
            continue
        size = a.local.size if a.local is not None else 0
        if a.op in (Op.UPLOAD, Op.REPLACE):
            nbytes += size
        if a.op is Op.MOVE:
            extra = f"  (from {a.source or a.remote_path})"
        elif a.local is not None:
            extra = f"  ({human_bytes(size)})"
        else:
            extra = f"  (uuid {a.uuid})"
        out.write(escape(f"  {verb:<7} {a.path}{extra}") + "\n")
    if decided.refused:
        out.write(escape(f"  REFUSED {decided.refused}") + "\n")
    out.write(
        f"  plan: {decided.count(Op.UPLOAD)} uploads, {decided.count(Op.REPLACE)} updates,"
        f" {decided.count(Op.DELETE)} deletes, {decided.count(Op.ADOPT)} matched on the DAM"
        f" ({human_bytes(nbytes)} to send)\n"
    )
