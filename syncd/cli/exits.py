"""The exit codes of every command, and the one way a command reports the error it
ends on: one line on stderr, with no secret and no control character."""

from __future__ import annotations

import os
import sys

from syncd.redact import escape, scrub

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOPERM",
    "EXIT_OK",
    "EXIT_USAGE",
    "fail",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOPERM = os.EX_NOPERM  # 77
EXIT_CONFIG = os.EX_CONFIG  # 78
EXIT_INTERRUPTED = 130


def fail(message: str, code: int) -> int:
    """Write `message` to stderr and return `code`."""
    # Messages quote file names and DAM text: no key, no control characters.
    sys.stderr.write(escape(scrub(message)).rstrip() + "\n")
    return code
