"""The DP recipe knobs: standardised convolutions' per-sample gradients, augmentation
multiplicity (sensitivity stays C) and the parameters' moving average (post-processing)."""

from __future__ import annotations

import pytest
import torch
from opacus import GradSampleModule
from torch import nn
from torch.utils.data import Dataset

from medfed.models import build_model
from medfed.orchestration.site import cpu_weights
from medfed.privacy.dp import Budget, DPTrainer, SitePrivacy
from medfed.privacy.dp.accounting import Accountant
from medfed.privacy.dp.averaging import ParameterEMA, ema_step
from medfed.privacy.dp.grad_samplers import conv_transpose_grad_sample, prelu_grad_sample
from medfed.privacy.dp.noise import NoiseMode
from medfed.privacy.dp.views import MultiViewDataset, average_views, flatten_views
from medfed.strategies.base import LocalHooks
from medfed.training import LocalTrainer, TrainSettings
from medfed.training.losses import loss_for

CLIP = 0.5


class _Counting(Dataset):
    """One or more cases whose every access is a new "augmentation": the image scaled by the
    access count, so K views of a case differ and are known."""

    def __init__(self, cases: int = 1) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = 5 * torch.randn(cases, 1, 8, 8, generator=generator)
        self.labels = (torch.rand(cases, 1, 8, 8, generator=generator) > 0.7).long()
        self.accesses = [0] * cases

    def __len__(self) -> int:
        return len(self.images)

    def view(self, index: int, access: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index] * (1 + access) - access, "label": self.labels[index]}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.accesses[index] += 1
        return self.view(index, self.accesses[index] - 1)


def _pixel_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(1, 2, kernel_size=1)


def _trainer(*, batch: int = 1, **policy: object) -> DPTrainer:
    settings = TrainSettings(batch_size=batch, local_epochs=1, lr=1.0, optimizer="sgd")
    inner = LocalTrainer(task="segmentation", settings=settings, device=torch.device("cpu"))
    policy.setdefault("budget", Budget(1e300, 1e-5))
    policy.setdefault("noise_multiplier", 1e-4)  # negligible noise: the clipped sum is visible
    policy.setdefault("max_grad_norm", CLIP)
    privacy = SitePrivacy(noise=NoiseMode.REPRODUCIBLE, accountant=Accountant.RDP, **policy)  # type: ignore[arg-type]
    return DPTrainer(inner, site="a", policy=privacy)


def _flat(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([tensor.flatten() for tensor in weights.values()])


# ----- weight standardisation ---------------------------------------------------------------
def test_standardised_conv_per_sample_gradients_equal_autograd_one_sample_at_a_time() -> None:
    model = build_model(
        "unet",
        {
            "channels": (4, 8),
            "strides": (2,),
            "norm": ["group", {"num_groups": 2}],
            "weight_standardization": True,
        },
        seed=0,
    )
    images = torch.randn(3, 1, 8, 8)
    labels = (torch.rand(3, 1, 8, 8) > 0.7).long()
    loss = loss_for("segmentation")
    expected = []
    for image, label in zip(images, labels, strict=True):
        model.zero_grad()
        loss(model(image[None]), label[None]).backward()
        expected.append({n: p.grad.clone() for n, p in model.named_parameters()})  # type: ignore[union-attr]
    wrapped = GradSampleModule(model)
    loss(wrapped(images), labels).backward()
    for name, parameter in model.named_parameters():
        for index in range(3):  # mean reduction: Opacus scales back to each sample's gradient
            assert torch.allclose(parameter.grad_sample[index], expected[index][name], atol=1e-5), name


@pytest.mark.parametrize(("slopes", "dims"), [(1, 2), (3, 2), (3, 3)])
def test_prelu_per_sample_gradients_equal_autograd_one_sample_at_a_time(slopes: int, dims: int) -> None:
    """medfed's PReLU sampler (Opacus would fall back to functorch) for one shared slope and one
    per channel, in 2D and 3D."""
    assert GradSampleModule.GRAD_SAMPLERS[nn.PReLU] is prelu_grad_sample
    torch.manual_seed(0)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    model = nn.Sequential(conv(1, 3, 3, padding=1), nn.PReLU(slopes, init=0.1), conv(3, 1, 1))
    images = torch.randn(4, 1, *(6,) * dims)
    expected = []
    for image in images:
        model.zero_grad()
        model(image[None]).square().mean().backward()
        expected.append(model[1].weight.grad.clone())  # type: ignore[union-attr]
    wrapped = GradSampleModule(model)
    wrapped(images).square().mean().backward()
    samples = model[1].weight.grad_sample
    assert samples.shape == (4, slopes)
    for index in range(4):  # mean reduction: Opacus scales back to each sample's gradient
        torch.testing.assert_close(samples[index], expected[index], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("dims", "settings"),
    [
        (2, {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),  # MONAI's up-sampling
        (2, {"kernel_size": 2, "stride": 2, "bias": False}),
        (2, {"kernel_size": 3, "stride": 3, "padding": 2, "dilation": 2, "output_padding": 1, "groups": 2}),
        (3, {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),
    ],
)
def test_transposed_conv_per_sample_gradients_equal_autograd_one_sample_at_a_time(
    dims: int, settings: dict[str, object]
) -> None:
    assert GradSampleModule.GRAD_SAMPLERS[nn.ConvTranspose2d] is conv_transpose_grad_sample
    torch.manual_seed(0)
    layer = (nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d)(4, 6, **settings)  # type: ignore[arg-type]
    images = torch.randn(3, 4, *(5,) * dims)
    expected = []
    for image in images:
        layer.zero_grad()
        layer(image[None]).sin().sum().backward()
        expected.append({name: p.grad.clone() for name, p in layer.named_parameters()})  # type: ignore[union-attr]
    wrapped = GradSampleModule(layer, loss_reduction="sum")
    wrapped(images).sin().sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad_sample.shape == (3, *parameter.shape)
        for index in range(3):
            torch.testing.assert_close(
                parameter.grad_sample[index], expected[index][name], atol=1e-5, rtol=1e-5
            )


# ----- augmentation multiplicity --------------------------------------------------------------
def test_average_views_averages_each_cases_consecutive_views() -> None:
    per_view = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [20.0, 2.0]])
    assert torch.equal(average_views(per_view, 2), torch.tensor([[2.0, 3.0], [15.0, 1.0]]))
    with pytest.raises(ValueError, match="multiple"):
        average_views(per_view, 3)


def test_multi_view_items_stack_independent_accesses_and_flatten_case_by_case() -> None:
    data = _Counting(cases=2)
    views = MultiViewDataset(data, 3)
    item = views[1]
    assert item["image"].shape == (3, 1, 8, 8)
    assert torch.equal(item["image"][2], data.view(1, 2)["image"])
    batch = flatten_views({"image": torch.stack([views[0]["image"], item["image"]])})
    assert torch.equal(batch["image"][3], item["image"][0])


def test_k_views_give_one_clipped_gradient_per_case_the_mean_of_the_views() -> None:
    """One case, K = 4 views, sample rate 1, SGD lr 1, no noise to speak of: the step is minus
    the case's one clipped gradient, clip(mean over views) of norm C; clipping each view (K
    gradients of norm C) would move up to K C."""
    data, model = _Counting(), _pixel_model()
    start = cpu_weights(model)
    _trainer(augmentation_multiplicity=4).fit(model, data, seed=0)
    step = _flat(start) - _flat(cpu_weights(model))
    loss, reference = loss_for("segmentation"), _pixel_model()
    grads = []
    for access in range(4):
        reference.zero_grad()
        view = data.view(0, access)
        loss(reference(view["image"][None]), view["label"][None]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in reference.parameters()]))  # type: ignore[union-attr]
    mean = torch.stack(grads).mean(dim=0)
    assert mean.norm() > 2 * CLIP  # the test clips
    assert step.norm() == pytest.approx(CLIP, rel=1e-3)
    assert torch.allclose(step, mean * CLIP / mean.norm(), atol=1e-3)


def test_k_views_keep_every_cases_contribution_within_c() -> None:
    """Three cases in one step: the step is the sum of three vectors of norm at most C."""
    model = _pixel_model()
    start = cpu_weights(model)
    _trainer(batch=3, augmentation_multiplicity=3).fit(model, _Counting(cases=3), seed=0)
    step = (_flat(start) - _flat(cpu_weights(model))) * 3  # the optimiser divides by q N = 3
    assert step.norm() <= 3 * CLIP * (1 + 1e-3)


# ----- EMA ----------------------------------------------------------------------------------
def test_the_debiased_moving_average_matches_a_hand_computation() -> None:
    layer = nn.Linear(1, 1, bias=False)
    average = ParameterEMA(layer, decay=0.5)
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update()
    # (0.5^2 * 0.5 * 1 + 0.5 * 0.5 * 2 + 0.5 * 4) / (1 - 0.5^3) = 2.625 / 0.875 = 3
    assert average.debiased()["weight"].item() == pytest.approx(3.0)
    average.load_into_model()
    assert layer.weight.item() == pytest.approx(3.0)
    assert ema_step({"w": torch.tensor(2.0)}, {"w": torch.tensor(4.0)}, 0.75)["w"].item() == 2.5


class _Recording(LocalHooks):
    def __init__(self) -> None:
        self.before_steps: list[torch.Tensor] = []

    def after_backward(self, model: nn.Module) -> None:
        self.before_steps.append(_flat(cpu_weights(model)))


def test_the_site_returns_the_moving_average_of_its_dp_iterates() -> None:
    """The same round (reproducible noise, same seed) with and without EMA: the EMA run returns
    the debiased average of the other run's iterates after each step."""
    data, decay = _Counting(cases=6), 0.8
    plain, hooks = _pixel_model(), _Recording()
    _trainer(batch=2, noise_multiplier=0.5).fit(plain, data, seed=3, hooks=hooks)
    iterates = [*hooks.before_steps[1:], _flat(cpu_weights(plain))]
    assert len(iterates) == 3
    averaged = _pixel_model()
    _trainer(batch=2, noise_multiplier=0.5, ema_decay=decay).fit(averaged, _Counting(cases=6), seed=3)
    t = len(iterates)
    expected = sum((1 - decay) * decay ** (t - 1 - i) * theta for i, theta in enumerate(iterates))
    expected = expected / (1 - decay**t)
    assert torch.allclose(_flat(cpu_weights(averaged)), expected, atol=1e-5)
    assert not torch.allclose(_flat(cpu_weights(averaged)), iterates[-1], atol=1e-4)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("augmentation_multiplicity", 0),
        ("augmentation_multiplicity", 33),
        ("ema_decay", 1.0),
        ("ema_decay", 0.0),
    ],
)
def test_the_policy_bounds_the_knobs(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SitePrivacy(budget=Budget(8.0, 1e-5), planned_rounds=1, **{field: value})  # type: ignore[arg-type]
