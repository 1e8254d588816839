import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import app


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["simulate", "--help"],
        ["generate", "--help"],
        ["server", "--help"],
        ["client", "--help"],
        ["check-data", "--help"],
        ["provision", "--help"],
        ["peer", "--help"],
        ["status", "--help"],
        ["report", "--help"],
        ["attack", "gradient-inversion", "--help"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _medfed(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from medfed.cli.app import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _insecure_client(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``medfed client`` for site ``a`` with ``data``, pointed at a closed port, plus ``args``."""
    return _medfed(
        "client", "--insecure", "--site", "a", "--server", "127.0.0.1:1", "--data", str(data), *args
    )


def test_bad_config_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("federation: {rounds: 0}\n")
    result = _medfed("simulate", "--config", str(config))
    assert result.returncode == 2
    assert "federation.rounds" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_report_of_a_folder_that_is_no_server_state_dir_is_one_clear_line(tmp_path: Path) -> None:
    result = _medfed("report", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "not the state dir of a medfed server" in " ".join(result.stdout.split())
    assert "Traceback" not in result.stdout + result.stderr


def test_generate_writes_msd_sites(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", str(tmp_path), "--image-size", "16"])
    assert result.exit_code == 0, result.output
    for site in ("hospital_a", "hospital_b", "hospital_c", "hospital_d"):
        assert (tmp_path / site / "dataset.json").is_file()


def test_a_ckks_job_without_a_server_kit_is_one_clear_line(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("privacy: {encryption: {scheme: ckks}}\n")
    result = _medfed(
        "server", "--insecure", "--sites", "a,b", "--job", str(job), "--state-dir", str(tmp_path / "state")
    )
    assert result.returncode == 2
    assert "provisioned with 'encryption: ckks'" in " ".join((result.stdout + result.stderr).split())
    assert "Traceback" not in result.stdout + result.stderr


def test_client_delta_without_epsilon_is_refused(tmp_path: Path) -> None:
    result = _insecure_client(tmp_path, "--delta", "1e-6")
    assert result.returncode == 2
    assert "--delta goes with --epsilon" in " ".join((result.stdout + result.stderr).split())


def test_client_with_a_bad_site_policy_is_one_line_naming_file_and_setting(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("epsilon: 1\nrequire_dp_sgd: false\n")
    result = _insecure_client(tmp_path, "--policy", str(policy))
    assert result.returncode == 2
    output = " ".join((result.stdout + result.stderr).split())
    assert str(policy) in output.replace(" ", "")  # rich may wrap the path
    assert "require_dp_sgd" in output and "Traceback" not in output


def test_status_shows_each_sites_decline_and_rejection_reason_verbatim(tmp_path: Path) -> None:
    from medfed.deployment.status import ServerStatus, write_status

    reason = "round 2: site policy: job has no DP-SGD [red]but[/red] this site requires it"
    rejected = "round 3: shape [b]mismatch[/b]"
    status = ServerStatus(
        job="j", port=1, completed_rounds=2, total_rounds=3, declined={"c": reason}, rejected={"d": rejected}
    )
    write_status(tmp_path, status)
    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"declined by c: {reason}" in output  # no markup from a site
    assert f"update of d rejected: {rejected}" in output


def test_error_with_brackets_in_a_path_is_printed_verbatim(tmp_path: Path) -> None:
    site = tmp_path / "[red]site [bold]x"
    site.mkdir()
    result = _medfed(
        "client",
        "--insecure",
        "--site",
        "a",
        "--server",
        "127.0.0.1:1",
        "--data",
        str(site),
        "--format",
        "dicom",
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(site) in result.stdout
    assert result.stdout.startswith("error: ") and len(result.stdout.strip().splitlines()) == 1
