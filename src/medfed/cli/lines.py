"""Lines the command line prints as plain text: never rich markup, so that a ``[`` in a path
or a site's message is shown as it is."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def print_error(console: Console, message: str) -> None:
    """Prints ``error: message`` on one line (long lines are not wrapped)."""
    console.print(Text.assemble(("error:", "red"), f" {message}"), soft_wrap=True, highlight=False)
