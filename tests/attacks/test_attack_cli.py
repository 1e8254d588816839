"""``medfed attack gradient-inversion`` run end-to-end on tiny settings, and its bad arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from medfed.cli.app import app

TINY = ["--batch-size", "1", "--image-size", "16", "--iterations", "20", "--dp-noise", "0.1"]


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["attack", "gradient-inversion", *args])
    # Rich wraps and boxes long messages: compare on whitespace-collapsed text without borders.
    return result.exit_code, " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def test_cli_writes_reconstructions_results_and_report(tmp_path: Path) -> None:
    extra = ["--secagg-sites", "2", "--labels", "idlg", "--output-dir", str(tmp_path)]
    code, output = _invoke(*TINY, *extra)
    assert code == 0, output
    assert "PSNR (dB)" in output and "secagg-2" in output
    names = {p.name for p in (tmp_path / "reconstructions").iterdir()}
    assert names == {"ground_truth.png", "none.png", "dp-0.1.png", "secagg-2.png"}
    png_magic = b"\x89PNG\r\n\x1a\n"
    assert all((tmp_path / "reconstructions" / n).read_bytes()[:8] == png_magic for n in names)
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 4 and "<table>" in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["scenario"]["name"] for r in results["results"]] == ["none", "dp-0.1", "secagg-2"]
    assert all(isinstance(r["psnr"], float) for r in results["results"])


def test_batch_size_zero_is_a_usage_error(tmp_path: Path) -> None:
    code, output = _invoke("--batch-size", "0", "--output-dir", str(tmp_path))
    assert code == 2
    assert "batch_size must be >= 1, got 0" in output
    assert not (tmp_path / "report.html").exists()


def test_unknown_model_is_a_usage_error_listing_the_models(tmp_path: Path) -> None:
    code, output = _invoke("--model", "vgg", "--output-dir", str(tmp_path))
    assert code == 2
    valid = "convnet, convnet-gn, densenet, resnet"
    assert f"unknown attack model 'vgg'; valid names: {valid}" in output


def test_idlg_with_a_batch_is_a_usage_error(tmp_path: Path) -> None:
    code, output = _invoke("--labels", "idlg", "--batch-size", "2", "--output-dir", str(tmp_path))
    assert code == 2
    assert "iDLG label inference needs batch_size 1" in output
