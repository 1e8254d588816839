import math

import torch
from torch import nn
from torch.utils.data import Dataset

from medfed.training.evaluation import _case_means, evaluate_cases


class _Cases(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def test_segmentation_keeps_each_cases_dice_with_nan_for_an_empty_mask() -> None:
    torch.manual_seed(0)
    labels = (torch.rand(5, 1, 8, 8) > 0.5).long()
    labels[2] = 0  # no lesion: MONAI ignores it
    metrics, cases = evaluate_cases(
        nn.Conv2d(1, 2, 1),
        _Cases(torch.randn(5, 1, 8, 8), labels),
        task="segmentation",
        batch_size=2,
        surface_distance=False,
        device=torch.device("cpu"),
    )
    assert len(cases["dice"]) == 5 and math.isnan(cases["dice"][2])
    finite = [d for d in cases["dice"] if math.isfinite(d)]
    assert math.isclose(metrics["dice"], sum(finite) / 4, rel_tol=1e-6)


def test_classification_keeps_each_cases_class_and_probabilities() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    images, labels = torch.randn(7, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2, 2])
    metrics, cases = evaluate_cases(
        model, _Cases(images, labels), task="classification", batch_size=3, device=torch.device("cpu")
    )
    assert cases["label"] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 2.0]
    expected = torch.softmax(model(images), dim=1)
    for k in range(3):
        assert torch.allclose(torch.tensor(cases[f"prob{k}"]), expected[:, k])
    assert 0 <= metrics["auc"] <= 1


def test_a_multi_class_case_gets_one_dice_the_mean_of_its_classes() -> None:
    buffer = torch.tensor([[1.0, 0.5], [float("nan"), 0.25], [float("nan"), float("nan")]])
    means = _case_means(buffer)
    assert means[:2] == [0.75, 0.25] and math.isnan(means[2])


def test_three_class_scores_are_the_fraction_correct_and_macro_averages_of_classes_1_and_2() -> None:
    class Predicts(nn.Module):  # the class stored in each image's first pixel
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.eye(3)[images[:, 0, 0, 0].long()] * 5

    predicted, labels = torch.tensor([1, 1, 2, 0]), torch.tensor([0, 1, 2, 2])
    images = predicted.float().reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    metrics, _ = evaluate_cases(
        Predicts(), _Cases(images, labels), task="classification", device=torch.device("cpu")
    )
    # by hand: 2 of 4 correct (MONAI's pooled one-vs-rest gave 0.75); class 1 recall 1/1,
    # class 2 recall 1/2; class 1 specificity 2/3 (case 0 taken for 1), class 2 specificity 2/2
    assert metrics["accuracy"] == 0.5
    assert math.isclose(metrics["sensitivity"], (1 / 1 + 1 / 2) / 2)
    assert math.isclose(metrics["specificity"], (2 / 3 + 2 / 2) / 2)
