"""The layout's dependency rule (README, "Layout"), read from the code's own imports, lazy ones included.

- `core/`, `data/`, `agents/`, `training/`, `scoring/` and `cards/` are pure: no Dagster (the Pipes child
  protocol, `dagster_pipes`, is not Dagster), and none of `defs/`, `cli/`, `resources/`, `schedules/`,
  `dbt_style_checks/` or `definitions.py`.
- `resources/` imports only the pure packages.
- `schedules/` and `dbt_style_checks/` import only `defs/partitions.py`, the pure packages and `resources/`.
- Nothing imports `cli/` but `cli/` itself (the `coursegpt` entry point).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "coursegpt_assets"
PURE = tuple(f"{PKG}.{name}" for name in ("core", "data", "agents", "training", "scoring", "cards"))
TOP_LEVEL = ("resources", "schedules", "dbt_style_checks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def _sources() -> dict[str, set[str]]:
    files = [*(ROOT / PKG).rglob("*.py"), *(p for top in TOP_LEVEL for p in (ROOT / top).rglob("*.py"))]
    return {_module_name(p): _imports(p) for p in files}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _project(name: str) -> bool:
    return _within(name, (PKG, *TOP_LEVEL))


def _is_dagster(name: str) -> bool:
    top = name.split(".")[0]
    return top == "dagster" or (top.startswith("dagster_") and top != "dagster_pipes")


SOURCES = _sources()


def _violations(modules, allowed) -> list[str]:
    return sorted(f"{module} imports {name}" for module in modules for name in SOURCES[module]
                  if not allowed(module, name))


def test_the_rule_sees_the_whole_house():
    assert {f"{PKG}.defs.data.assets", f"{PKG}.core.plan", f"{PKG}.cli.main", "resources.storage",
            "schedules.sensors", "dbt_style_checks.catalog"} <= set(SOURCES)
    assert "dagster" in SOURCES[f"{PKG}.defs.data.assets"] and f"{PKG}.core.plan" in SOURCES[f"{PKG}.cli.main"]


def test_pure_packages_import_no_dagster_and_nothing_above_them():
    pure = [m for m in SOURCES if _within(m, PURE)]
    assert _violations(pure, lambda m, name: not _is_dagster(name)
                       and (not _project(name) or _within(name, PURE) or name == PKG)) == []


def test_resources_import_only_the_pure_packages():
    modules = [m for m in SOURCES if _within(m, ("resources",))]
    assert _violations(modules, lambda m, name: not _project(name) or _within(name, (*PURE, "resources"))) == []


@pytest.mark.parametrize("top", ["schedules", "dbt_style_checks"])
def test_schedules_and_data_tests_import_partitions_the_pure_packages_and_resources(top):
    allowed = (*PURE, f"{PKG}.defs.partitions", "resources", top)
    modules = [m for m in SOURCES if _within(m, (top,))]
    assert _violations(modules, lambda m, name: not _project(name) or _within(name, allowed)) == []


def test_nothing_imports_the_cli_but_the_cli():
    cli = (f"{PKG}.cli",)
    assert _violations(SOURCES, lambda m, name: _within(m, cli) or not _within(name, cli)) == []
