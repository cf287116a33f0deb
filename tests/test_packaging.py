"""The package's metadata agrees with itself: one version (syncd/__init__.py, which the
installed metadata and `syncd --version` report), a LICENSE that is the licence
pyproject.toml names, every third-party module syncd imports declared, and a CHANGELOG
entry for the current version."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

import syncd

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_one_version():
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert importlib.metadata.version("syncd") == syncd.__version__
    assert f"## {syncd.__version__} " in (REPO / "CHANGELOG.md").read_text()


def test_the_license_file_is_the_license_pyproject_names():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def test_every_third_party_import_is_declared():
    declared = {
        re.split(r"[<>=!~ ;\[]", dep, maxsplit=1)[0].lower().replace("-", "_")
        for dep in PYPROJECT["project"]["dependencies"]
    }
    imported = set()
    for path in (REPO / "syncd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "syncd"}
    assert third_party <= declared, third_party - declared
