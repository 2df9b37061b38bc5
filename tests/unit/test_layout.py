"""Imports run one way: the entry point and the tests build on libs/, never the reverse (issue 11)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {"handler", "tests"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


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
