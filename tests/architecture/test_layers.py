"""The layers of README's table, enforced: `lint-imports` with the contracts in pyproject.toml.

The second test proves the contracts bite: a copy of the code with one deliberate violation
(a workflow importing a connector, as `workflows/change_order.py` once did) must fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.architecture._code import MODULES, PACKAGES, ROOT


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` from this environment, with `cwd` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    script = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", script, "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_code_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_a_workflow_importing_a_connector_breaks_the_contracts(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.db", "histories")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=ignore)
    for name in (*MODULES, "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "workflows" / "sneaky.py").write_text(
        "from connectors.erp import NetSuiteErp  # a workflow must not do I/O\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "workflows import no connectors" in result.stdout
    assert "workflows.sneaky -> connectors.erp" in result.stdout
