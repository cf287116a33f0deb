"""syncd: mirror local folders into a Scaleflex DAM (Filerobot) project."""

from __future__ import annotations

__all__ = ["__version__"]

# The one source of the version: pyproject.toml reads it here (hatch dynamic version).
__version__ = "0.2.0"
