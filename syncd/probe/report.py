"""What `syncd probe` prints: the findings as a plain-text table (one line per finding, no
colour) or as one JSON document, each followed by advice for the config file and the key.

Names, messages and headers that came from the DAM can hold anything, a terminal escape
sequence included, so every string is escaped (`escape`) before it is printed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from syncd.probe.scratch import PERMISSIONS, Findings

__all__ = ["advice", "escape", "problems", "render", "to_json"]

# What syncd cannot do without each permission (README, "The API key").
_WITHOUT = {
    "OBJECTS_LIST": "syncd cannot list or count DAM folders, so no run can start",
    "OBJECTS_FETCH": "syncd cannot look an asset up (a replayed rename or move, a bulk delete)",
    "FILE_UPLOAD": "syncd cannot upload anything",
    "FILE_RENAME": "a changed file cannot replace its asset when same-name uploads are refused",
    "FILE_MOVE": "local moves cannot move their assets (live mode)",
    "FILE_DELETE": "files deleted locally stay in the DAM, and replacements fail",
    "DIR_CREATE": "uploads into folders that do not exist yet may fail",
    "DIR_DELETE": "folders emptied by local deletes stay in the DAM (live mode)",
}

# finding -> value -> what it means; a value missing here is shown without a meaning.
_MEANING: dict[str, dict[Any, str]] = {
    "naming": {
        "keep": "a file is stored under the name it was uploaded with",
        "suffix": "stored names get a random suffix; info.name keeps the name sent",
        "random": "stored names are random; info.name keeps the name sent",
    },
    "same_name": {
        "override": "other bytes under a taken name replace the asset (new uuid)",
        "version": "other bytes under a taken name become a new version (same uuid)",
        "refuse": "other bytes under a taken name are refused (409)",
        None: "not observed (see notes)",
    },
    "duplicates": {
        "accept": "identical bytes under another name are stored again",
        "refuse": "identical bytes under another name are refused (ERROR_SHA1_CONFLICT)",
    },
    "identical_same_name": {
        "skipped": "identical bytes under the same name are skipped",
        "stored": "identical bytes under the same name are stored again",
    },
    "listing_lag_s": {None: "not measured (see notes)"},
    "updated_after_granularity": {
        "exact": "a change in the threshold's own second is seen",
        "second": "whole seconds: a change in the threshold's own second is missed",
    },
    "q_mode": {
        "substring": "q matches any part of a name",
        "words": "q matches whole words of a name only",
        "ignored": "q is ignored: every file is returned",
    },
    "rename_rewrites_info_name": {
        True: "a rename rewrites info.name too",
        False: "info.name keeps the name sent at upload",
    },
    "noop_rename_conflict": {True: "renaming a file to its own name answers 409"},
    "max_post_bytes": {None: "not measured"},
}
_FINDINGS = (
    "naming",
    "same_name",
    "duplicates",
    "identical_same_name",
    "listing_lag_s",
    "listing_sha1",
    "sort_honoured",
    "updated_after_honoured",
    "updated_after_granularity",
    "q_mode",
    "q_matches_original_name",
    "rename_rewrites_info_name",
    "noop_rename_conflict",
    "rate_limit_headers",
    "max_post_bytes",
)


def escape(value: Any) -> Any:
    """`value` with every control or invisible formatting character in its strings
    written as a Python escape (`\\x1b`, `\\u202e`), recursively through lists and dicts."""
    if isinstance(value, str):
        return "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value
        )
    if isinstance(value, dict):
        return {escape(k): escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape(v) for v in value]
    return value


def advice(found: Findings) -> list[str]:
    """What to set in the config, and what to add to the key, given the findings."""
    if found.interrupted or found.key_rejected:
        return ["run syncd probe again, to the end: these findings are partial"]
    out = []
    if found.listing_lag_s is not None:
        lag = max(1, math.ceil(found.listing_lag_s))
        out.append(
            f"set dam.listing_lag_s = {lag} under [dam] (measured {found.listing_lag_s:g} s):"
            " how long syncd looks for an upload whose outcome is unknown before it sends it"
            " again"
        )
    missing = _denied(found)
    out += [f"grant {p} to the key: without it {_WITHOUT[p]}" for p in missing]
    if found.unexercised:
        out.append(
            f"once the above is fixed, run syncd probe again: {', '.join(found.unexercised)}"
            " could not be tried"
        )
    if found.same_name == "refuse":
        lacking = [p for p in ("FILE_RENAME", "FILE_DELETE") if p in missing]
        out.append(
            "same-name uploads are refused, so syncd replaces a changed file by uploading"
            " it aside, deleting the old asset and renaming the new one: the key needs"
            " FILE_RENAME and FILE_DELETE"
            + (f" (missing: {', '.join(lacking)})" if lacking else "")
        )
    if found.q_mode == "ignored" or (found.q_mode and not found.q_matches_original_name):
        what = "is ignored" if found.q_mode == "ignored" else "does not find files by info.name"
        out.append(f"q {what}: nothing to do, syncd does not depend on q")
    # What a reading costs syncd, when nothing can be set about it.
    if found.updated_after_honoured is False:
        out.append(
            "updated_after is ignored: each re-run's change listing returns every file, as"
            " costly as a full listing; nothing to set"
        )
    if found.listing_sha1 is False:
        out.append(
            "listings carry no hash.sha1: a listing cannot tell syncd that an asset's content"
            " changed in the DAM; nothing to set"
        )
    if found.sort_honoured is False:
        out.append(
            "sort is ignored: paging through a folder that changes meanwhile may skip or"
            " repeat files; nothing to set"
        )
    return out


def _denied(found: Findings) -> list[str]:
    """The permissions the DAM refused (not those that could not be tried)."""
    return [p for p in PERMISSIONS if not found.permissions.get(p) and p not in found.unexercised]


def problems(found: Findings) -> str:
    """One line saying why the probe did not pass, for stderr; what is left behind is
    named in full, with where."""
    parts = []
    if found.interrupted:
        parts.append(f"interrupted by {found.interrupted}, the findings are partial")
    if found.key_rejected:
        parts.append(f"the DAM rejected the key mid-run ({found.key_rejected})")
    if missing := _denied(found):
        parts.append(f"the key lacks {', '.join(missing)}")
    if found.unexercised:
        parts.append(f"{', '.join(found.unexercised)} could not be tried")
    if found.failures:
        parts.append(f"{len(found.failures)} check(s) failed")
    if found.left_behind:
        where = "; ".join(found.left_behind)
        parts.append(f"left behind in {found.dam}: {where}; delete them in the DAM")
    return escape("; ".join(parts) or "all checks passed")


def _shown(name: str, value: Any) -> str:
    if name == "rate_limit_headers":
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if value else "none seen"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    return f"{value:g} s" if isinstance(value, float) else str(value)


def _untried(permission: str, found: Findings) -> str:
    return "could not be tried (see notes)" if permission in found.unexercised else ""


def _meaning(name: str, value: Any, found: Findings) -> str:
    if name == "same_name" and value is None and found.naming in ("suffix", "random"):
        return "not observable: the naming rule gives every upload a fresh name"
    meanings = _MEANING.get(name, {})
    return meanings.get(value, "") if not isinstance(value, dict) else ""


def render(found: Findings) -> str:
    """The findings as a plain-text table, then what was left behind, failures, notes and
    advice."""
    data = escape(found.as_dict())  # before the layout: an escape widens its cell
    rows = [
        (name, _shown(name, data[name]), _meaning(name, data[name], found)) for name in _FINDINGS
    ]
    rows += [
        (f"permission {p}", "yes" if ok else "MISSING", _untried(p, found))
        for p, ok in found.permissions.items()
    ]
    cleanup = "removed" if found.cleaned_up else "LEFT BEHIND (see below)"
    rows.append(("scratch folder", data["scratch_folder"], cleanup))
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    lines = [f"syncd probe of {found.dam}", ""]
    lines += [f"{k:<{width}}  {v:<{vwidth}}  {m}".rstrip() for k, v, m in rows]
    if found.interrupted:
        lines += ["", f"interrupted by {found.interrupted}: the findings are partial"]
    if found.key_rejected:
        lines += ["", f"the DAM rejected the key mid-run: {found.key_rejected}"]
    sections = [
        ("left behind (delete these in the DAM)", found.left_behind),
        ("failed checks", found.failures),
        ("notes", found.notes),
        ("advice", advice(found)),
    ]
    for title, items in sections:
        if items:
            lines += ["", f"{title}:"] + [f"  - {item}" for item in items]
    return "\n".join(escape(line) for line in lines)


def to_json(found: Findings) -> str:
    """The findings, and the advice, as one JSON document."""
    return json.dumps(escape({**found.as_dict(), "advice": advice(found)}), indent=2)
