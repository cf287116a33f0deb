"""`python -m syncd` entry point."""

from __future__ import annotations

from syncd.cli import main

raise SystemExit(main())
