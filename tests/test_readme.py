"""The README stays a one-page front door: two set-up commands, under 200 lines, live links."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_one_page() -> None:
    assert len(README.read_text().splitlines()) < 200


def test_first_code_block_is_the_two_setup_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:]]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_relative_links_point_to_existing_files() -> None:
    targets = [t for t in LINK.findall(README.read_text()) if "://" not in t]
    assert targets, "the README links to the docs"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []
