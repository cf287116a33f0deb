"""`python -m syncd` entry point."""

from __future__ import annotations

from syncd.cli.main import main

raise SystemExit(main())
