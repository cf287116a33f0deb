"""syncd: mirror local folders into a Scaleflex DAM (Filerobot) project."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
