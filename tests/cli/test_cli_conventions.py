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
    ["ledger", "verify"],
    ["ledger", "show"],
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


@pytest.mark.integration
def test_simulate_into_a_file_logs_every_round_and_names_its_metric(tmp_path: Path) -> None:
    args = [*TINY, "--set", "federation.rounds=2", "--set", "training.local_epochs=1"]
    args += ["--set", "strategies=[{name: fedavg}]", "--set", "baselines={centralized: false, local: false}"]
    result = _medfed("simulate", *args, "--threads", "1", "-o", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if "round_log" in line]
    assert [line.split(": ", 1)[1].split(":")[0] for line in lines] == [
        "experiment 1/1",
        "fedavg round 1/2",
        "fedavg round 2/2",
        "experiment 1/1",
    ]
    assert "Dice at the last round" in result.stdout and "Dice, unseen site" in result.stdout


def test_simulate_refuses_zero_threads() -> None:
    result = CliRunner().invoke(app, ["simulate", "--threads", "0"])
    assert result.exit_code == 2 and "Invalid value for '--threads'" in result.output


def test_server_dry_run_prints_the_job_with_its_overrides_and_starts_nothing(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: j\nfederation: {rounds: 2}\n")
    state = tmp_path / "state"
    args = [
        "server",
        "--job",
        str(job),
        "--state-dir",
        str(state),
        "--set",
        "federation.rounds=7",
        "--dry-run",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output)
    assert resolved["name"] == "j" and resolved["federation"]["rounds"] == 7
    assert not state.exists()


@pytest.mark.parametrize("command", [["simulate"], ["attack", "gradient-inversion"]])
def test_the_old_output_dir_spelling_works_but_is_hidden(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "-h"])
    assert "--output" in result.output and "--output-dir" not in result.output
