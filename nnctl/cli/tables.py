"""The one table every command prints with: Rich's, with cells that fold instead of being cut.

Rich's default column overflow is an ellipsis, so a narrow terminal or a pipe loses the end of a
long cell (``(1.17)/(2.1…``). Here a long cell folds onto more lines: every character is kept.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table as RichTable


class Table(RichTable):
    """``rich.table.Table`` whose columns fold long cells unless a column asks otherwise."""

    def add_column(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)
