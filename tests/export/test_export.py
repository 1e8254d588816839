"""`medfed export` round-trips into MONAI: the exported state dict, TorchScript module and MONAI
bundle each give the trained network's outputs exactly."""

import json
from pathlib import Path

import pytest
import torch
from builders import tiny_simulation
from monai.bundle import ConfigParser
from safetensors.torch import load_file
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.config.loading import parse_config
from medfed.errors import CheckpointError, ConfigError
from medfed.export import ExportFormat
from medfed.export.model import export_model, load_trained_model
from medfed.models import build_model
from medfed.models.norms import norm_layer_keys
from medfed.orchestration.checkpoint import latest_checkpoint, load_checkpoint
from medfed.simulator import run_simulation

TINY = tiny_simulation(
    model={"params": {"norm": "batch"}},
    federation={"rounds": 2, "keep_last": 1},
    strategies=[{"name": "fedavg"}, {"name": "fedbn"}],
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "run"
    run_simulation(parse_config({**TINY, "output_dir": str(folder)}))
    return folder


def _image() -> torch.Tensor:
    return torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _trained_output(run_dir: Path, experiment: str = "fedavg") -> torch.Tensor:
    """The output of the checkpoint's global model in a network built by medfed itself."""
    checkpoint = load_checkpoint(latest_checkpoint(run_dir / "checkpoints" / experiment))
    params = {"spatial_dims": 2, "in_channels": 1, **TINY["model"]["params"]}
    network = build_model("unet", params, seed=1)
    network.load_state_dict(checkpoint.server.weights)
    return network.eval()(_image())


def test_state_dict_loads_strictly_into_the_registry_network(run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    export_model(load_trained_model(run_dir), ExportFormat.STATE_DICT, output)
    params = {"spatial_dims": 2, "in_channels": 1, **TINY["model"]["params"]}
    network = build_model("unet", params, seed=99)
    network.load_state_dict(load_file(output), strict=True)
    assert torch.equal(network.eval()(_image()), _trained_output(run_dir))


def test_torchscript_loads_without_medfed_and_gives_the_same_outputs(run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.ts"
    export_model(load_trained_model(run_dir), ExportFormat.TORCHSCRIPT, output)
    assert torch.equal(torch.jit.load(str(output))(_image()), _trained_output(run_dir))


def test_monai_bundle_round_trips_through_config_parser(run_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    export_model(load_trained_model(run_dir), ExportFormat.MONAI_BUNDLE, bundle)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True), strict=True)
    assert torch.equal(network.eval()(_image()), _trained_output(run_dir))
    for part in ("preprocessing", "inferer", "postprocessing"):
        assert parser.get_parsed_content(part) is not None
    inferred = parser.get_parsed_content("inferer")(_image(), network)
    assert torch.allclose(inferred, _trained_output(run_dir), atol=1e-5)
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    image = metadata["network_data_format"]["inputs"]["image"]
    assert (image["num_channels"], image["spatial_shape"]) == (1, ["2*n", "2*n"])
    assert metadata["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    assert {"version", "monai_version", "pytorch_version", "numpy_version", "task"} <= metadata.keys()
    assert (bundle / "docs" / "README.md").is_file()


def test_a_fedbn_site_exports_its_own_norm_layers(run_dir: Path, tmp_path: Path) -> None:
    global_model = load_trained_model(run_dir, experiment="fedbn")
    site_model = load_trained_model(run_dir, experiment="fedbn", site="hospital_a")
    differing = {
        k for k in global_model.weights if not torch.equal(global_model.weights[k], site_model.weights[k])
    }
    assert differing and differing <= norm_layer_keys(global_model.network)
    output = tmp_path / "site.safetensors"
    export_model(site_model, ExportFormat.STATE_DICT, output)
    assert all(torch.equal(load_file(output)[k], site_model.weights[k]) for k in differing)


def test_fedavg_has_no_personalised_model_to_export(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="keeps no personalised model for site 'hospital_a'"):
        load_trained_model(run_dir, experiment="fedavg", site="hospital_a")


def test_unknown_experiment_and_pruned_round_are_named(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"experiments: \['fedavg', 'fedbn'\]"):
        load_trained_model(run_dir, experiment="fedprox")
    with pytest.raises(ConfigError, match=r"kept rounds: \[2\]"):
        load_trained_model(run_dir, round=1)


def test_export_refuses_to_overwrite(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        export_model(load_trained_model(run_dir), ExportFormat.STATE_DICT, tmp_path / "taken")


def test_a_folder_that_is_no_run_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a medfed run directory"):
        load_trained_model(tmp_path)


def test_a_run_of_several_seeds_names_a_seeds_run_directory(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("seeds: [4, 2]\n")
    with pytest.raises(ConfigError, match="ran seeds \\[4, 2\\].*seed_2"):
        load_trained_model(tmp_path)


def test_export_command(run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "cli.safetensors"
    result = CliRunner().invoke(app, ["export", str(run_dir), "-f", "state_dict", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "'fedavg' after round 2" in " ".join(result.output.split())
    key = "model.0.conv.unit0.conv.weight"
    assert torch.equal(load_file(output)[key], load_trained_model(run_dir).weights[key])


def test_checkpoints_keep_the_last_round_and_only_private_site_state(run_dir: Path) -> None:
    """keep_last: 1 leaves one file per experiment; FedAvg's holds no site, FedBN's only the
    sites' own norm entries, no model (the run outputs the checkpoints export reads)."""
    for experiment in ("fedavg", "fedbn"):
        assert [p.name for p in (run_dir / "checkpoints" / experiment).iterdir()] == [
            "round_0002.safetensors"
        ]
    assert load_checkpoint(run_dir / "checkpoints" / "fedavg" / "round_0002.safetensors").sites == {}
    fedbn = load_checkpoint(run_dir / "checkpoints" / "fedbn" / "round_0002.safetensors")
    assert sorted(fedbn.sites) == ["hospital_a", "hospital_b", "hospital_c"]
    for state in fedbn.sites.values():
        assert state.weights == {} and state.extra["norm"].keys() == norm_layer_keys(
            load_trained_model(run_dir).network
        )


def test_run_outputs_share_one_mode(run_dir: Path) -> None:
    """Under the test process's umask every file of a run has the same permissions (report.html
    was 0600 while metrics.sqlite was 0644), except the provenance signing keys: owner only."""
    keys = run_dir / "provenance" / "keys"
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    modes = {str(path): path.stat().st_mode & 0o777 for path in files if path.parent != keys}
    assert len(set(modes.values())) == 1, modes
    assert {path.stat().st_mode & 0o777 for path in files if path.parent == keys} == {0o600}


def test_a_deployed_servers_state_dir_exports_its_job(tmp_path: Path) -> None:
    from medfed.deployment.job import JobConfig
    from medfed.deployment.report import keep_job
    from medfed.orchestration.checkpoint import Checkpoint, model_metadata, save_round
    from medfed.orchestration.site import cpu_weights
    from medfed.types import ServerState

    params = {"channels": [4, 8], "strides": [2]}
    job = JobConfig.model_validate({"name": "lesions", "model": {"name": "unet", "params": params}})
    keep_job(tmp_path, job)
    weights = cpu_weights(build_model("unet", params, seed=7))
    checkpoint = Checkpoint(ServerState(round=4, weights=weights), metadata=model_metadata("unet", params))
    save_round(tmp_path / "checkpoints", checkpoint, keep_last=None)

    model = load_trained_model(tmp_path)
    assert "'lesions' after round 4" in model.description
    export_model(model, ExportFormat.STATE_DICT, tmp_path / "out.safetensors")
    assert all(torch.equal(load_file(tmp_path / "out.safetensors")[k], t) for k, t in weights.items())
    with pytest.raises(ConfigError, match="holds the one job 'lesions', not 'other'"):
        load_trained_model(tmp_path, experiment="other")
