"""Dependencies point one way (docs/architecture.md): checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "medfed"


def _imports(path: Path) -> set[str]:
    """Every ``medfed`` module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("medfed.")}


def _imports_of(package: str) -> dict[str, set[str]]:
    root = SOURCE / package
    files = [root.with_suffix(".py")] if root.with_suffix(".py").exists() else sorted(root.rglob("*.py"))
    return {str(path.relative_to(SOURCE)): _imports(path) for path in files}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        (
            "privacy",
            ("medfed.config", "medfed.deployment", "medfed.transport", "medfed.cli", "medfed.simulator"),
        ),
        (
            "orchestration/grid",
            ("medfed.privacy", "medfed.transport", "medfed.config", "medfed.orchestration.loop"),
        ),
        ("orchestration/validation", ("medfed.privacy", "medfed.transport", "medfed.config")),
        ("config", ("medfed.orchestration", "medfed.deployment", "medfed.transport")),
        (
            "topology",
            (
                "medfed.config",
                "medfed.transport",
                "medfed.privacy",
                "medfed.deployment",
                "medfed.orchestration.loop",
            ),
        ),
        (
            "provenance",
            ("medfed.orchestration", "medfed.deployment", "medfed.transport", "medfed.privacy", "medfed.cli"),
        ),
    ],
)
def test_no_package_imports_what_depends_on_it(package: str, forbidden: tuple[str, ...]) -> None:
    wrong = {
        path: sorted(name for name in names if name.startswith(forbidden))
        for path, names in _imports_of(package).items()
    }
    assert not {path: names for path, names in wrong.items() if names}


def test_config_reaches_privacy_only_through_the_plan_and_the_strategy_wrappers() -> None:
    privacy = {
        name
        for names in _imports_of("config").values()
        for name in names
        if name.startswith("medfed.privacy")
    }
    assert privacy <= {"medfed.privacy.plan", "medfed.privacy.secagg", "medfed.privacy.ckks_rounds"}
