import pytest

from medfed.text import printable


def test_plain_text_is_unchanged() -> None:
    assert printable("privacy budget spent (epsilon 3.2)") == "privacy budget spent (epsilon 3.2)"


def test_newlines_controls_and_non_ascii_are_escaped() -> None:
    assert printable("ok\nINFO round 99 done\r\x1b[2J\u202e") == "ok\\nINFO round 99 done\\r\\x1b[2J\\u202e"


def test_long_text_is_cut_and_says_how_long_it_was() -> None:
    text = printable("x" * (1 << 20), limit=50)
    assert text == "x" * 50 + f"... ({1 << 20} characters)"


def test_escapes_count_towards_the_limit() -> None:
    text = printable("\n" * 40, limit=50)
    assert text.startswith("\\n" * 25) and text.endswith("... (40 characters)") and len(text) < 80


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit"):
        printable("x", limit=0)
