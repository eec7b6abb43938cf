"""The house rules a newcomer relies on: no room too big to read in one sitting.

Every module of the shipped code stays at or under `MAX_MODULE_LINES` lines and every function
or method at or under `MAX_FUNCTION_LINES`; tests are exempt. A module that outgrows the limit
is split along its seams (see docs/architecture.md, "Where to change what").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.architecture._code import MODULES, PACKAGES, ROOT

MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 150
CODE = (*PACKAGES, "bench", *MODULES)


def shipped_modules() -> list[Path]:
    found: list[Path] = []
    for name in CODE:
        path = ROOT / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.py")) if "migrations" not in p.parts)
    return found


def oversized(path: Path) -> list[str]:
    """What in `path` breaks a house rule, as `path:line what (n lines)`."""
    source = path.read_text()
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    problems = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{where}: module has {lines} lines (> {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                problems.append(
                    f"{where}:{node.lineno} {node.name} has {length} lines (> {MAX_FUNCTION_LINES})"
                )
    return problems


def test_the_code_is_where_the_rules_look() -> None:
    modules = shipped_modules()
    assert len(modules) > 50
    assert {p.relative_to(ROOT).parts[0] for p in modules} >= {"connectors", "workflows"}


def test_no_module_or_function_is_too_long_to_read() -> None:
    problems = [problem for path in shipped_modules() for problem in oversized(path)]
    assert not problems, "\n".join(problems)


def test_the_rule_catches_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module = tmp_path / "long_example.py"
    module.write_text(f"def long():\n{body}\n")
    assert [p for p in oversized(module) if "long has 151 lines" in p]
    module.write_text(f"def short():\n{body[: body.rindex(chr(10))]}\n")
    assert oversized(module) == []


@pytest.mark.parametrize("name", ["connectors", "sandbox"])
def test_one_package_per_system(name: str) -> None:
    for system in ("crm", "psa", "erp", "hcm"):
        package = ROOT / name / system
        assert (package / "__init__.py").is_file(), f"{name}/{system}/ is a package"
        assert not (ROOT / name / f"{system}.py").exists()
