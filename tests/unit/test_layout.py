"""Imports run one way: the entry point and the tests build on libs/, never the reverse; the service never
imports its tools (contract §1: the Lambda package holds the service only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {"handler", "tests"}


#: What the service is made of: everything under libs/ but the tools, which the package rule leaves out.
TOOLS = ("libs/tools/", "libs/cli.py")


def _imported(path: Path) -> set[str]:
    """Every module name ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported(path)}


def _service_modules() -> list[Path]:
    modules = [REPO / "handler.py", *sorted((REPO / "libs").rglob("*.py"))]
    return [path for path in modules if not str(path.relative_to(REPO)).startswith(TOOLS)]


@pytest.mark.parametrize("folder", ["libs", "bench"])
def test_nothing_in_libs_or_bench_imports_the_entry_point_or_the_tests(folder):
    # given every module of the folder
    modules = sorted((REPO / folder).rglob("*.py"))
    assert modules

    # then none imports handler or tests, at the top or inside a function
    offenders = {str(path.relative_to(REPO)): sorted(_imported_roots(path) & FORBIDDEN) for path in modules}
    assert {path: roots for path, roots in offenders.items() if roots} == {}


def test_the_checker_sees_imports_inside_functions(tmp_path):
    # given a module that imports the entry point lazily, the way libs/ once did
    module = tmp_path / "lazy.py"
    module.write_text("def run():\n    import handler as function\n    from tests.fakes import sqs\n")

    # then both imports are found
    assert _imported_roots(module) == {"handler", "tests"}


def test_the_service_never_imports_a_tool():
    # given the service's modules: handler.py and libs/ without its tools
    modules = _service_modules()
    assert REPO / "libs" / "processor.py" in modules and REPO / "libs" / "cli.py" not in modules

    # then none imports the CLI or anything under libs/tools (the zip does not hold them)
    offenders = {
        str(path.relative_to(REPO)): sorted(
            name for name in _imported(path) if name == "libs.cli" or name.startswith("libs.tools")
        )
        for path in modules
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_report_does_not_import_the_local_pipeline():
    # given the report's modules
    modules = sorted((REPO / "libs" / "tools" / "report").rglob("*.py"))
    assert modules

    # then none imports the local pipeline (queues, poller, demo)
    offenders = {
        str(path.relative_to(REPO)): sorted(n for n in _imported(path) if n.startswith("libs.tools.local"))
        for path in modules
    }
    assert {path: names for path, names in offenders.items() if names} == {}
