"""The map of packages in docs/architecture.md, checked: imports run one way, and no modules import each other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import facmon

ROOT = Path(facmon.__file__).parent

# Who may import whom (besides itself), as drawn in docs/architecture.md#import-direction.
MAY_IMPORT: dict[str, set[str]] = {
    "facility": set(),
    "config": {"facility"},
    "cluster": {"facility", "config"},
    "ingest": {"facility", "config", "cluster"},
    "rules": {"facility", "config", "cluster", "ingest"},
    "alerts": {"facility", "config", "cluster", "ingest", "rules"},
    "api": {"facility", "config", "cluster", "ingest", "rules", "alerts", ""},
    "simulators": {"facility", "config"},
    "cmd": {"facility", "config", "cluster", "ingest", "rules", "alerts", "api", "simulators", ""},
    "": {"cmd"},  # facmon/__init__.py and __main__.py
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py")) if "migrations" not in path.parts}


def imported(path: Path, known: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """Every facmon module `path` imports, anywhere in it (type-checking and function-level imports too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "facmon":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "facmon":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield node.lineno, sub if sub in known else node.module


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] not in ("__main__",) else ""


def test_every_package_is_on_the_map() -> None:
    packages = {package_of(name) for name in modules()}
    assert packages == set(MAY_IMPORT)


def test_imports_run_the_intended_way() -> None:
    known = modules()
    against = [
        f"{path.relative_to(ROOT.parent)}:{line}: {package_of(name) or 'facmon'} imports {target}"
        for name, path in known.items()
        for line, target in imported(path, known)
        if package_of(target) != package_of(name) and package_of(target) not in MAY_IMPORT[package_of(name)]
    ]
    assert against == []


def test_no_modules_import_each_other() -> None:
    known = modules()
    graph = {name: {target for _, target in imported(path, known) if target in known} for name, path in known.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if nxt == node or nxt == node.rpartition(".")[0]:
                continue  # a module and its own package's __init__
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []


def test_tests_meet_real_servers_not_a_mock_library() -> None:
    tests = Path(__file__).parent
    mocking = [
        f"{path.relative_to(tests.parent)}:{node.lineno}"
        for path in sorted(tests.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any(
            name.split(".")[0] in ("mock", "pytest_mock") or name.startswith("unittest.mock")
            for name in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
        )
    ]
    assert mocking == []


# A module longer than this says why in its docstring, in a line starting "Long because".
MAX_LINES = 600


def test_modules_stay_short_or_say_why() -> None:
    long = [
        f"{path.relative_to(ROOT.parent)}: {lines} lines"
        for path in modules().values()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and "Long because" not in (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "")
    ]
    assert long == []
