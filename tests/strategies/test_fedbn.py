"""FedBN: every normalisation layer stays local; the server's norm entries are the sites' mean."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import Dataset

from medfed.models import build_model
from medfed.models.norms import norm_layer_keys
from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.strategies import FedAvg, FedBN, LocalHooks
from medfed.training import LocalTrainer, TrainSettings
from medfed.types import SiteState, TrainResult, TrainTask, Weights


def _model(norm: type[nn.Module] = nn.BatchNorm1d, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layer = nn.GroupNorm(2, 4) if norm is nn.GroupNorm else norm(4)  # type: ignore[call-arg]
    return nn.Sequential(nn.Linear(3, 4), layer, nn.Linear(4, 2))


def _weights(seed: int, norm: type[nn.Module] = nn.BatchNorm1d) -> Weights:
    weights = _model(norm, seed).state_dict()
    generator = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=generator) if v.is_floating_point() else v + seed
        for k, v in weights.items()
    }


class _Cases(Dataset):
    def __init__(self, shift: float) -> None:
        generator = torch.Generator().manual_seed(int(shift))
        self.x = torch.randn(8, 3, generator=generator) * (1 + shift) + shift
        self.y = torch.randint(0, 2, (8,), generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[index], "label": self.y[index]}


@pytest.mark.parametrize("norm", [nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm])
def test_a_site_trains_and_evaluates_with_its_own_norm_layers_of_every_kind(norm: type[nn.Module]) -> None:
    model, strategy = _model(norm), FedBN()
    global_weights, trained = _weights(1, norm), _weights(2, norm)
    task = TrainTask(round=1, weights=global_weights)
    extra, site = strategy.finish(task, SiteState(), trained, strategy.local_hooks(task, SiteState(), model))
    assert extra == {}
    local = strategy.site_model(_weights(3, norm), site)
    for key, tensor in local.items():
        own = key.startswith("1.")
        assert torch.equal(tensor, trained[key] if own else _weights(3, norm)[key]), key


def test_site_model_before_the_first_round_is_the_global_model() -> None:
    global_weights = _weights(0)
    local = FedBN().site_model(global_weights, SiteState())
    assert all(torch.equal(local[k], v) for k, v in global_weights.items())


def test_site_norm_entries_that_do_not_fit_the_model_are_rejected() -> None:
    bad = SiteState(extra={"norm": {"1.weight": torch.zeros(5)}})
    with pytest.raises(ValueError, match="shape"):
        FedBN().site_model(_weights(0), bad)
    with pytest.raises(ValueError, match="not in the global model"):
        FedBN().site_model(_weights(0), SiteState(extra={"norm": {"9.weight": torch.zeros(4)}}))


def test_finish_needs_its_own_hooks() -> None:
    task = TrainTask(round=1, weights=_weights(0))
    with pytest.raises(ValueError, match="hooks of local_hooks"):
        FedBN().finish(task, SiteState(), _weights(1), LocalHooks())


def test_a_model_without_norm_entries_warns_that_fedbn_is_fedavg() -> None:
    unet = build_model("unet", {"channels": [4, 8], "strides": [2], "num_res_units": 0}, seed=0)
    with pytest.warns(UserWarning, match="FedBN is FedAvg"):
        FedBN().local_hooks(TrainTask(round=1, weights=cpu_weights(unet)), SiteState(), unet)


def test_after_a_round_the_global_norm_layers_are_the_sample_weighted_mean_of_the_sites() -> None:
    """What an unseen site is scored with: not the never-trained initial statistics."""
    model, strategy = _model(), FedBN()
    trainer = LocalTrainer(
        task="classification", settings=TrainSettings(batch_size=4), device=torch.device("cpu")
    )
    sites = [
        LocalSite(name, _Cases(shift), model=model, trainer=trainer, strategy=strategy, seed=0)
        for name, shift in (("a", 0.0), ("b", 3.0))
    ]
    sites[1].dataset.x = sites[1].dataset.x.repeat(3, 1)  # 24 cases against 8
    sites[1].dataset.y = sites[1].dataset.y.repeat(3)
    state = strategy.init(cpu_weights(model))
    task = strategy.configure(state, 1, {})
    results = [site.train(task) for site in sites]
    new = strategy.aggregate(state, results, num_sites=2)
    own = [site.state.extra["norm"] for site in sites]
    for key in ("1.weight", "1.bias", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(new.weights[key], (8 * own[0][key] + 24 * own[1][key]) / 32)
        assert not torch.equal(new.weights[key], state.weights[key])
    for site in sites:
        local = strategy.site_model(new.weights, site.state)
        assert all(torch.equal(local[key], site.state.extra["norm"][key]) for key in norm_layer_keys(model))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seeds=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=4),
    samples=st.lists(st.integers(min_value=1, max_value=1000), min_size=4, max_size=4),
)
def test_the_server_half_is_fedavg(seeds: list[int], samples: list[int]) -> None:
    state = FedBN().init(_weights(0))
    results = [
        TrainResult(site=f"s{i}", round=1, weights=_weights(seed), num_samples=samples[i])
        for i, seed in enumerate(seeds)
    ]
    new, fedavg = (s.aggregate(state, results, num_sites=len(results)) for s in (FedBN(), FedAvg()))
    assert all(torch.equal(new.weights[k], fedavg.weights[k]) for k in fedavg.weights)
