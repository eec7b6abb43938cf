"""Where the shipped code lives, for the architecture tests: the repository root, the
packages of README's layers table and the top-level modules."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "contracts",
    "connectors",
    "store",
    "activities",
    "workflows",
    "gateway",
    "plumbing",
    "sandbox",
    "stack",
    "demo",
)
MODULES = ("worker.py", "starter.py")
