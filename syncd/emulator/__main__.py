"""`python -m syncd.emulator` entry point."""

from __future__ import annotations

from syncd.emulator.cli import run

raise SystemExit(run())
