import pytest
import torch

from medfed.errors import UpdateRejected
from medfed.orchestration.validation import validate_result
from medfed.types import TrainResult

REFERENCE = {"w": torch.zeros(2, 2), "n": torch.tensor(0)}


def _result(**changes: object) -> TrainResult:
    fields = {"site": "hospital_a", "round": 1, "weights": {"w": torch.ones(2, 2), "n": torch.tensor(3)}, "num_samples": 10}
    fields.update(changes)
    return TrainResult(**fields)  # type: ignore[arg-type]


def test_valid_update_passes() -> None:
    validate_result(_result(), REFERENCE, round=1)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"weights": {"w": torch.ones(2, 2)}}, "missing"),
        ({"weights": {"w": torch.ones(2, 2), "n": torch.tensor(1), "x": torch.ones(1)}}, "unexpected"),
        ({"weights": {"w": torch.ones(3, 2), "n": torch.tensor(1)}}, "shape"),
        ({"weights": {"w": torch.ones(2, 2, dtype=torch.float64), "n": torch.tensor(1)}}, "dtype"),
        ({"weights": {"w": torch.tensor([[1.0, float("nan")], [0, 0]]), "n": torch.tensor(1)}}, "NaN"),
        ({"weights": {"w": torch.tensor([[1.0, float("inf")], [0, 0]]), "n": torch.tensor(1)}}, "NaN or infinite"),
        ({"extra": {"delta_control": {"w": torch.full((2, 2), float("nan"))}}}, "delta_control"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
        ({"round": 2}, "round"),
        ({"schema_version": 99}, "schema version"),
    ],
)
def test_bad_update_is_rejected_with_reason(changes: dict, reason: str) -> None:
    with pytest.raises(UpdateRejected, match=reason) as caught:
        validate_result(_result(**changes), REFERENCE, round=1)
    assert "hospital_a" in str(caught.value)
