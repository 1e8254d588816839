"""Text that another party sent, made safe to put in a log line or a stored field."""

from __future__ import annotations

DEFAULT_LIMIT = 200
"""Characters of a site's text that reach a log line by default."""


def printable(text: str, limit: int = DEFAULT_LIMIT) -> str:
    r"""``text`` on one line of printable ASCII, at most about ``limit`` characters long.

    Newlines, control characters, backslashes and every non-ASCII character are escaped as in a
    Python literal (``\\n``, ``\\x1b``, ``\\u202e``), so a site cannot forge a log line or hide
    text; longer text is cut and says how long it was.

    Args:
        text: The untrusted text.
        limit: Characters kept (> 0).
    """
    if limit <= 0:
        raise ValueError(f"limit must be > 0, got {limit}")
    escaped = text[:limit].encode("unicode_escape").decode("ascii")
    if len(text) <= limit and len(escaped) <= limit:
        return escaped
    return f"{escaped[:limit]}... ({len(text)} characters)"
