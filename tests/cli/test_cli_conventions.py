"""One command line: --version, -h, examples in every help, one error line, -o/--output,
--set overrides and --dry-run."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medfed import __version__
from medfed.cli.app import app

COMMANDS = [
    ["simulate"],
    ["export"],
    ["generate"],
    ["server"],
    ["client"],
    ["provision"],
    ["revoke"],
    ["status"],
    ["report"],
    ["attack", "gradient-inversion"],
]
TINY = [
    "--set",
    "data.synthetic.image_size=16",
    "--set",
    "data.synthetic.cases_scale=0.15",
    "--set",
    "model.params={channels: [4, 8], strides: [2]}",
]


def _medfed(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from medfed.cli.app import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_short_help_with_examples(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "-h"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output and f"medfed {' '.join(command)}" in result.output


@pytest.mark.integration
def test_version() -> None:
    result = _medfed("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"medfed {__version__}")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["simulat"], "No such command 'simulat'. Did you mean 'simulate'?"),
        (["simulate", "--bogus"], "No such option: --bogus"),
        (["export", "run", "-f", "zip", "-o", "x"], "'zip' is not one of"),
    ],
)
def test_a_command_line_mistake_is_one_error_line(args: list[str], expected: str) -> None:
    result = _medfed(*args)
    output = " ".join(result.stdout.split())
    assert result.returncode == 2
    assert output.startswith("error: ") and expected in output and "--help" in output
    assert "Traceback" not in result.stdout + result.stderr and "╭" not in result.stdout + result.stderr


@pytest.mark.parametrize("spelling", ["-o", "--output", "--output-dir"])
def test_dry_run_prints_the_resolved_config_and_creates_nothing(tmp_path: Path, spelling: str) -> None:
    run_dir = tmp_path / "run"
    args = ["simulate", "--dry-run", *TINY, "--set", "federation.rounds=3", spelling, str(run_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output)
    assert resolved["federation"]["rounds"] == 3 and resolved["output_dir"] == str(run_dir)
    assert resolved["model"]["params"] == {"channels": [4, 8], "strides": [2]}
    assert "# hospital_a:" in result.output and "training cases" in result.output
    assert not run_dir.exists()


@pytest.mark.integration
def test_dry_run_reports_a_failed_precondition(tmp_path: Path) -> None:
    result = _medfed(
        "simulate", "--dry-run", "--set", "preprocessing.divisible_by=4", "-o", str(tmp_path / "run")
    )
    output = " ".join(result.stdout.split())
    assert result.returncode == 2
    assert "preprocessing.divisible_by 4 must be a multiple of 8" in output
    assert not (tmp_path / "run").exists()
