from collections.abc import Mapping

import pytest
import torch

from medfed.errors import ConfigError, DataError, UnknownNameError
from medfed.models import build_model
from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.strategies import FedAvg
from medfed.training import LocalTrainer, TrainSettings, evaluate_cases
from medfed.training.trainer import LossFn


def _data(n: int = 8) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, 16, 16, generator=generator)
    masks = (images > 1.0).long()
    return [{"image": images[i], "label": masks[i]} for i in range(n)]


def _trainer(**settings: object) -> LocalTrainer:
    return LocalTrainer(
        task="segmentation",
        settings=TrainSettings(batch_size=4, lr=1e-2, **settings),
        device=torch.device("cpu"),
    )


def _model() -> torch.nn.Module:
    return build_model("unet", {"channels": [4, 8], "strides": [2], "num_res_units": 0}, seed=0)


def test_training_is_deterministic_given_a_seed() -> None:
    first, second = _model(), _model()
    _trainer().fit(first, _data(), seed=3)
    _trainer().fit(second, _data(), seed=3)
    for key, tensor in cpu_weights(first).items():
        assert torch.equal(tensor, cpu_weights(second)[key])


def test_training_reduces_the_loss_and_counts_steps() -> None:
    model = _model()
    first = _trainer().fit(model, _data(), seed=0)
    for _ in range(15):
        last = _trainer().fit(model, _data(), seed=0)
    assert first.steps == 2 and last.loss < first.loss


def test_task_config_overrides_settings() -> None:
    report = _trainer().fit(_model(), _data(), seed=0, config={"local_epochs": 3, "lr": 0.5, "unrelated": 1})
    assert report.steps == 6 and report.lr == 0.5


def test_segmentation_metrics_of_a_perfect_prediction() -> None:
    class Oracle(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            foreground = (images > 1.0).float()
            return torch.cat([1 - foreground, foreground], dim=1) * 10

    metrics, _ = evaluate_cases(Oracle(), _data(), task="segmentation", device=torch.device("cpu"))
    assert metrics["dice"] == pytest.approx(1.0)
    assert metrics["hd95"] == pytest.approx(0.0)


def test_classification_metrics() -> None:
    class Fixed(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            score = images.mean(dim=(1, 2, 3))
            return torch.stack([-score, score], dim=1)

    data = [
        {"image": torch.full((1, 4, 4), float(v)), "label": torch.tensor(int(v > 0))} for v in (-2, -1, 1, 2)
    ]
    metrics, _ = evaluate_cases(Fixed(), data, task="classification", device=torch.device("cpu"))
    assert metrics == {"accuracy": 1.0, "auc": 1.0, "sensitivity": 1.0, "specificity": 1.0}


@pytest.mark.parametrize("name", ["unet", "densenet", "resnet"])
def test_registry_models_build_deterministically(name: str) -> None:
    a = build_model(name, {}, seed=1)
    b = build_model(name, {}, seed=1)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=False)
    )


def test_unknown_model_and_bad_params_are_clear() -> None:
    with pytest.raises(UnknownNameError, match="unet"):
        build_model("vit", {}, seed=0)
    with pytest.raises(ConfigError, match="unet"):
        build_model("unet", {"chanels": [4]}, seed=0)


@pytest.mark.parametrize(
    "config",
    [
        {"local_epochs": 10**9},
        {"local_epochs": 0},
        {"batch_size": "16"},
        {"batch_size": True},
        {"lr": float("nan")},
        {"lr": 1e9},
        {"optimizer": "rmsprop"},
    ],
)
def test_a_task_cannot_set_out_of_range_training_settings(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="training setting"):
        TrainSettings().overridden(config)  # type: ignore[arg-type]


def test_a_task_overrides_settings_within_range() -> None:
    assert TrainSettings().overridden({"lr": 0.5, "local_epochs": 3, "other": 1}) == TrainSettings(
        lr=0.5, local_epochs=3
    )


def test_a_given_loss_is_the_one_trained_on() -> None:
    seen: list[tuple[torch.Size, torch.Size]] = []

    def zero_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append((outputs.shape, labels.shape))
        return 0.0 * outputs.sum() + 5.0

    model = _model()
    before = {key: tensor.clone() for key, tensor in cpu_weights(model).items()}
    trainer = LocalTrainer(
        task="segmentation", settings=TrainSettings(batch_size=4), device=torch.device("cpu"), loss=zero_loss
    )
    report = trainer.fit(model, _data(), seed=0)
    assert report.loss == 5.0 and seen == [((4, 2, 16, 16), (4, 1, 16, 16))] * 2
    # a zero gradient moves nothing: the default loss would have changed every weight
    assert all(torch.equal(tensor, before[key]) for key, tensor in cpu_weights(model).items())


def test_a_given_step_computes_the_batch_loss_with_the_trainers_loss() -> None:
    calls: list[str] = []

    def flipped_step(model: torch.nn.Module, batch: Mapping[str, torch.Tensor], loss: LossFn) -> torch.Tensor:
        calls.append(batch["image"].device.type)
        return loss(model(batch["image"].flip(-1)), batch["label"].flip(-1))

    default, custom = _model(), _model()
    _trainer().fit(default, _data(), seed=0)
    trainer = LocalTrainer(
        task="segmentation",
        settings=TrainSettings(batch_size=4, lr=1e-2),
        device=torch.device("cpu"),
        step=flipped_step,
    )
    trainer.fit(custom, _data(), seed=0)
    assert calls == ["cpu", "cpu"]
    assert any(
        not torch.equal(a, b)
        for a, b in zip(cpu_weights(default).values(), cpu_weights(custom).values(), strict=True)
    )


def _classification_cases(n: int) -> list[dict[str, torch.Tensor]]:
    images = torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    return [{"image": images[i], "label": torch.tensor(i % 2)} for i in range(n)]


def _classifier(name: str) -> torch.nn.Module:
    params = {"block_inplanes": [4, 4, 4, 4]} if name == "resnet" else {}
    return build_model(name, params, seed=0)


def _classification_trainer() -> LocalTrainer:
    settings = TrainSettings(batch_size=4, lr=1e-2)
    return LocalTrainer(task="classification", settings=settings, device=torch.device("cpu"))


def test_a_last_batch_of_one_is_dropped_for_a_batchnorm_model() -> None:
    # 16 px images reach the resnet's last BatchNorm as 1x1 maps: a batch of one would raise
    report = _classification_trainer().fit(
        _classifier("resnet"), _classification_cases(5), seed=0, config={"local_epochs": 2}
    )
    assert report.steps == 2


def test_a_model_without_batchnorm_keeps_a_last_batch_of_one() -> None:
    report = _trainer().fit(_model(), _data(5), seed=0)
    assert report.steps == 2


def test_one_training_case_with_a_batchnorm_model_is_one_error_naming_the_site() -> None:
    model = _classifier("resnet")
    strategy = FedAvg()
    site = LocalSite(
        "north",
        _classification_cases(1),
        model=model,
        trainer=_classification_trainer(),
        strategy=strategy,
        seed=0,
    )
    task = strategy.configure(strategy.init(cpu_weights(model)), 1, {})
    with pytest.raises(DataError, match="site 'north': one training case"):
        site.train(task)
