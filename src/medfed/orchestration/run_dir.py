"""The run directory: its layout, and starting or resuming a run in it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from medfed.config.loading import parse_config
from medfed.config.schema import SimulationConfig
from medfed.errors import CheckpointError
from medfed.files import atomic_write

CONFIG_FILE = "config.yaml"

RUN_ENTRIES = (
    CONFIG_FILE,
    "checkpoints",
    "privacy",
    "metrics.sqlite",
    "metrics.csv",
    "results.json",
    "report.html",
    "tensorboard",
    "mlflow",
)
"""What a simulation writes into its run directory, besides the built-in data (``data/``, which
is written afresh by every run)."""


_SEED_DIR = re.compile(r"^seed_[0-9]+$")


def seed_dir(run_dir: Path, seed: int) -> Path:
    """Where a run of several seeds (``seeds:``) keeps seed ``seed``'s run, a run directory of
    its own (``seed_<seed>``, as nnU-Net's ``fold_<k>``)."""
    return run_dir / f"seed_{seed}"


def check_new_run(run_dir: Path) -> None:
    """Raises ``CheckpointError`` when ``run_dir`` already holds a run."""
    if (run_dir / CONFIG_FILE).exists():
        raise CheckpointError(
            f"run directory '{run_dir}' already holds a run: continue it with "
            f"'medfed simulate --resume {run_dir}' or choose another output_dir"
        )


def clear_run(run_dir: Path) -> None:
    """Deletes the run in ``run_dir`` (the entries of ``RUN_ENTRIES``, and each seed's run
    directory, ``seed_dir``), so that a new one can start there; anything else in the folder is
    left alone, and so is a folder holding no run."""
    if not (run_dir / CONFIG_FILE).is_file():
        return
    for path in run_dir.iterdir():
        if _SEED_DIR.match(path.name) and path.is_dir() and not path.is_symlink():
            if (path / CONFIG_FILE).is_file():
                shutil.rmtree(path)
    for name in RUN_ENTRIES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def start_run(config: SimulationConfig) -> Path:
    """Creates ``config.output_dir`` with the resolved config; refuses to overwrite a run."""
    run_dir = config.output_dir
    check_new_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG_FILE, config_yaml(config).encode())
    return run_dir


def resume_run(run_dir: Path) -> SimulationConfig:
    """The resolved config of the run in ``run_dir``, to continue it."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"'{run_dir}' is not a medfed run directory: '{path}' is missing")
    raw = yaml.safe_load(path.read_text())
    return parse_config({**raw, "output_dir": str(run_dir)}, source=str(path))


def config_yaml(config: SimulationConfig) -> str:
    """``config`` with every default filled in, as YAML."""
    return str(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
