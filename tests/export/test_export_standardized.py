"""A network trained with weight standardisation exports as the plain MONAI network whose
weights are the standardised ones: same outputs, in every format."""

from pathlib import Path
from typing import Any

import torch
from builders import tiny_simulation
from safetensors.torch import load_file

from medfed.config.loading import parse_config
from medfed.export import ExportFormat
from medfed.export.model import export_model, load_trained_model
from medfed.models import build_model
from medfed.orchestration.checkpoint import latest_checkpoint, load_checkpoint
from medfed.simulator import run_simulation

PARAMS: dict[str, Any] = {"channels": [4, 8], "strides": [2], "norm": ["group", {"num_groups": 2}]}
TINY = tiny_simulation(
    data={"synthetic": {"cases_scale": 0.1}},
    model={"params": {**PARAMS, "weight_standardization": True}},
    federation={"keep_last": 1},
)


def test_a_standardised_network_exports_as_the_plain_one_with_the_same_outputs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_simulation(parse_config({**TINY, "output_dir": str(run_dir)}))
    image = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    checkpoint = load_checkpoint(latest_checkpoint(run_dir / "checkpoints" / "fedavg"))
    trained = build_model("unet", {"spatial_dims": 2, "in_channels": 1, **TINY["model"]["params"]}, seed=1)
    trained.load_state_dict(checkpoint.server.weights)
    expected = trained.eval()(image)

    state_dict = tmp_path / "model.safetensors"
    export_model(load_trained_model(run_dir), ExportFormat.STATE_DICT, state_dict)
    plain = build_model("unet", {"spatial_dims": 2, "in_channels": 1, **PARAMS}, seed=2)
    plain.load_state_dict(load_file(state_dict), strict=True)
    assert torch.allclose(plain.eval()(image), expected, atol=1e-5)

    script = tmp_path / "model.ts"
    export_model(load_trained_model(run_dir), ExportFormat.TORCHSCRIPT, script)
    assert torch.allclose(torch.jit.load(str(script))(image), expected, atol=1e-5)
