"""What the demo checks: one `Check` per claim, and the table they are printed in."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table


@dataclass
class Check:
    name: str
    held: bool
    detail: str = ""


def checks_table(checks: list[Check]) -> Table:
    """The "demo checks" table: each check, whether it held, and its detail."""
    table = Table(title="demo checks")
    table.add_column("check")
    table.add_column("held")
    table.add_column("detail")
    for check in checks:
        table.add_row(
            check.name, "[green]yes[/green]" if check.held else "[red]NO[/red]", check.detail
        )
    return table
