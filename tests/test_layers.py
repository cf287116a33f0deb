"""The architecture as a test: the layers of `syncd/` and what each may import, no import
cycle (counting every import: module level, inside functions and under TYPE_CHECKING),
aiohttp only in the DAM client package, and a docstring atop every module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SYNCD = Path(__file__).resolve().parents[1] / "syncd"

# Lowest first. A module may import its own package and any package of an earlier tier;
# `syncd.errors`, `syncd.model` and `syncd.redact` are the foundation everyone shares.
TIERS: list[set[str]] = [
    {"errors", "model", "redact", "__init__"},
    {"config"},
    {"state", "local", "fleet"},
    {"dam"},
    {"engine", "probe"},
    {"service"},
    {"daemon"},
    {"cli", "__main__"},
]
# The emulator is a separate program that stands in for the DAM: syncd proper never
# imports it, except `syncd demo`, which runs one.
EMULATOR_USERS = {"syncd.cli.demo"}
HEAVY_ALLOWED = {"aiohttp": "dam", "yarl": "dam", "multidict": "dam"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SYNCD.rglob("*.py"):
        parts = list(path.relative_to(SYNCD.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every module `name` imports, wherever the statement stands."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target in _imports(m, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != m and not m.startswith(target + "."):
                graph[m].add(target)
    return graph


def _tier(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, tier in enumerate(TIERS):
        if top in tier:
            return i
    raise AssertionError(f"{module}: its package is in no tier; add it to TIERS")


def test_no_import_cycles() -> None:
    graph = {m: deps for m, deps in _graph().items() if not m.startswith("syncd.emulator")}
    on_path: list[str] = []
    done: set[str] = set()

    def visit(m: str) -> None:
        if m in on_path:
            cycle = [*on_path[on_path.index(m) :], m]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if m in done:
            return
        on_path.append(m)
        for dep in sorted(graph.get(m, ())):
            visit(dep)
        on_path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = []
    for m, deps in _graph().items():
        if m.startswith("syncd.emulator"):
            wrong += [f"{m} -> {d}" for d in deps if not d.startswith("syncd.emulator")]
            continue
        for d in deps:
            if d.startswith("syncd.emulator"):
                if m not in EMULATOR_USERS:
                    wrong.append(f"{m} -> {d}")
            elif d.startswith("syncd") and _tier(d) > _tier(m):
                wrong.append(f"{m} -> {d}")
    assert not wrong, "imports that go up a layer:\n" + "\n".join(sorted(wrong))


def test_only_the_dam_package_speaks_http() -> None:
    wrong = []
    for m, path in _modules().items():
        if m.startswith("syncd.emulator"):
            continue
        for target in _imports(m, path):
            package = HEAVY_ALLOWED.get(target.split(".")[0])
            if package is not None and not m.startswith(f"syncd.{package}."):
                wrong.append(f"{m} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_top_of_the_tree_stays_small_and_every_module_says_what_it_owns() -> None:
    top = [p.name for p in SYNCD.glob("*.py")]
    assert len(top) <= 12, top
    undocumented = [
        str(path.relative_to(SYNCD.parent))
        for path in _modules().values()
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert not undocumented, undocumented


def test_a_unit_test_may_not_start_the_emulator_or_syncd(tmp_path):
    # This test is `unit`: the guard in tests/conftest.py fails it before anything starts.
    import sys

    import anyio

    from syncd.emulator import Emulator

    with pytest.raises(pytest.fail.Exception, match="marked unit but starts the DAM emulator"):
        Emulator()
    with pytest.raises(pytest.fail.Exception, match="marked unit but starts -m syncd"):
        anyio.run(anyio.run_process, [sys.executable, "-m", "syncd", "--version"])
