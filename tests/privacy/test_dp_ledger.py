"""The privacy ledger: append-only JSON lines per site dataset, version-1 files refused, and the
site's total spend in ``medfed status``."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.data.cases import Case, SiteData
from medfed.errors import CheckpointError
from medfed.privacy.dp.accounting import Accountant, Budget, Mechanism, epsilon_spent
from medfed.privacy.dp.ledger import (
    append_entry,
    clip_entry,
    ledger_file,
    load_ledger,
    release_entry,
)
from medfed.privacy.dp.patients import PrivacyUnit

BUDGET = Budget(8.0, 1e-5)


def _site(name: str, ids: list[str], folder: Path) -> SiteData:
    image = np.zeros((1, 2, 2), dtype=np.float32)
    return SiteData(name, tuple(Case(i, image, None, 0, folder / f"{i}.png") for i in ids))


def _release(job: str, mechanism: Mechanism, seed: int = 0) -> dict[str, object]:
    return release_entry(
        job=job,
        seed=seed,
        mechanism=mechanism,
        clip=1.0,
        budget=BUDGET,
        accountant=Accountant.RDP,
        unit=PrivacyUnit.PATIENT,
    )


def test_every_release_is_appended_with_its_own_id_and_nothing_is_rewritten(tmp_path: Path) -> None:
    path, contents = tmp_path / "a.jsonl", []
    for entry in (
        _release("j1", Mechanism(1.0, 0.5, 2)),
        _release("j2", Mechanism(1.0, 0.5, 2)),
        clip_entry(job="j1", clip=0.7),
        _release("j1", Mechanism(1.0, 0.5, 2)),
    ):
        append_entry(path, entry)
        contents.append(path.read_bytes())
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(contents))
    ledger = load_ledger(path)
    assert len({release.id for release in ledger.releases}) == 3  # same seed, same mechanism: 3 releases
    assert ledger.history() == [Mechanism(1.0, 0.5, 2)] * 3
    assert ledger.epsilon() == epsilon_spent([Mechanism(1.0, 0.5, 6)], delta=1e-5, accountant="rdp")
    assert ledger.clip("j1") == 0.7 and ledger.clip("j2") is None and ledger.noise_multiplier("j2") == 1.0


def test_a_torn_or_foreign_line_is_refused_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    append_entry(path, _release("j", Mechanism(1.0, 0.5, 2)))
    path.write_bytes(path.read_bytes() + b'{"version": 2, "kind": "rel')
    with pytest.raises(CheckpointError, match="incomplete"):
        load_ledger(path)
    path.write_text('{"version": 1, "releases": {"0": [1.0, 0.5, 2]}}\n')
    with pytest.raises(CheckpointError, match="line 1"):
        load_ledger(path)


def test_one_ledger_per_dataset_whatever_the_split_and_version_1_is_refused(tmp_path: Path) -> None:
    data = _site("a", ["c1", "c2", "c3"], tmp_path / "data")
    same = _site("a", ["c3", "c1", "c2"], tmp_path / "data" / ".." / "data")
    other = _site("a", ["c1", "c2"], tmp_path / "data")
    assert ledger_file(tmp_path, data) == ledger_file(tmp_path, same) != ledger_file(tmp_path, other)
    assert (
        ledger_file(tmp_path, data).name.startswith("a-") and ledger_file(tmp_path, data).suffix == ".jsonl"
    )
    (tmp_path / "a.json").write_text('{"version": 1}')
    with pytest.raises(CheckpointError, match="version-1"):
        ledger_file(tmp_path, data)


def test_status_of_a_site_shows_the_total_spend_of_its_data_over_every_job(tmp_path: Path) -> None:
    path = ledger_file(tmp_path / "privacy", _site("a", ["c1"], tmp_path))
    history = [Mechanism(1.0, 1 / 3, 3), Mechanism(1.0, 1 / 2, 2)]
    for job, mechanism in zip(("job-1", "job-2"), history, strict=False):
        append_entry(path, _release(job, mechanism))
    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if path.stem in line)
    cells = [cell.strip() for cell in row.split("│")[2:5]]
    assert cells == ["2", "2", f"{epsilon_spent(history, delta=1e-5, accountant='rdp'):.4g}"]
