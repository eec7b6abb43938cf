"""Workflow modules import pssync's other packages through the sandbox's pass-through.

Temporal's sandbox runs a workflow module again for every new workflow run, and with it every
module that module imports that is not passed through. `contracts` builds dozens of pydantic
models when it is imported: imported directly (once, through `plumbing.temporal`), it was run
again for each deal the saga provisioned, a fifth of a busy worker's time. So in `workflows/`
a project package (`contracts`, `plumbing`, `activities`, `connectors`, `store`, ...) is only
imported inside `with workflow.unsafe.imports_passed_through():`; the workflows' own helper
modules (`workflows._*`), the standard library and `temporalio` may be imported directly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.architecture._code import ROOT

WORKFLOWS = ROOT / "workflows"
DIRECT_OK = {"workflows", "temporalio", "__future__"}


def _is_pass_through(node: ast.With) -> bool:
    return any(
        isinstance(item.context_expr, ast.Call)
        and ast.unparse(item.context_expr.func).endswith("imports_passed_through")
        for item in node.items
    )


def direct_project_imports(source: str) -> list[str]:
    """`module (line n)` for every module-level import of a project package outside a
    pass-through block."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.With) and _is_pass_through(node):
            continue
        for inner in ast.walk(node):
            names: list[str] = []
            if isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                names = [inner.module]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            for name in names:
                top = name.split(".")[0]
                if top not in DIRECT_OK and (ROOT / top).is_dir():
                    found.append(f"{name} (line {inner.lineno})")
    return found


@pytest.mark.parametrize(
    "path", sorted(WORKFLOWS.glob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_workflow_modules_pass_project_packages_through(path: Path) -> None:
    assert direct_project_imports(path.read_text()) == []


def test_the_check_sees_a_direct_import() -> None:
    source = (
        "from temporalio import workflow\n"
        "from workflows._common import RETRY\n"
        "from contracts.naming import TASK_QUEUE\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from contracts.money import Money\n"
        "if True:\n"
        "    import plumbing.temporal\n"
    )

    assert direct_project_imports(source) == [
        "contracts.naming (line 3)",
        "plumbing.temporal (line 7)",
    ]
