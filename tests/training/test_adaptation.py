"""AdaBN: running statistics re-estimated on a new site's images, nothing else changed."""

from __future__ import annotations

import torch
from torch import nn

from medfed.training import adapt_norm_statistics


def _images(n: int = 6) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 2, 5, 5, generator=generator) * torch.tensor([2.0, 0.5]).view(2, 1, 1) + 3.0
    return [{"image": image, "label": torch.zeros(1)} for image in images]


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.BatchNorm2d(2), nn.Dropout(0.9), nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))


def test_statistics_become_those_of_the_images_and_weights_stay() -> None:
    model, cases = _model(), _images()
    before = {
        k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    assert adapt_norm_statistics(model, cases, batch_size=len(cases), device=torch.device("cpu")) == 2
    images = torch.stack([case["image"] for case in cases])
    torch.testing.assert_close(model[0].running_mean, images.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(model[0].running_var, images.var(dim=(0, 2, 3), unbiased=True))
    # The second layer sees the first one's output in train mode, with dropout off (eval).
    hidden = model[2](
        (images - images.mean(dim=(0, 2, 3), keepdim=True))
        / (images.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    )
    torch.testing.assert_close(model[3].running_mean, hidden.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert not model.training and model[0].momentum == 0.1


def test_batches_are_averaged_and_a_model_without_statistics_is_left_alone() -> None:
    model, cases = _model(), _images(6)
    adapt_norm_statistics(model, cases, batch_size=3, device=torch.device("cpu"))
    images = torch.stack([case["image"] for case in cases])
    halves = (images[:3].mean(dim=(0, 2, 3)) + images[3:].mean(dim=(0, 2, 3))) / 2
    torch.testing.assert_close(model[0].running_mean, halves)
    plain = nn.Sequential(nn.Conv2d(2, 2, 1), nn.GroupNorm(1, 2))
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    assert adapt_norm_statistics(plain, cases, device=torch.device("cpu")) == 0
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in state.items())
