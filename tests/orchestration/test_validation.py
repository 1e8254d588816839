import pytest
import torch

from medfed.errors import UpdateRejected
from medfed.orchestration.validation import validate_result
from medfed.types import TrainResult

REFERENCE = {"w": torch.zeros(2, 2), "n": torch.tensor(0)}


def _result(**changes: object) -> TrainResult:
    fields = {
        "site": "hospital_a",
        "round": 1,
        "weights": {"w": torch.ones(2, 2), "n": torch.tensor(3)},
        "num_samples": 10,
    }
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
        (
            {"weights": {"w": torch.tensor([[1.0, float("inf")], [0, 0]]), "n": torch.tensor(1)}},
            "NaN or infinite",
        ),
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


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"num_samples": 10**400},
            "num_samples must be a finite number in \\[1, 1e\\+09\\], got an integer of about 401 digits",
        ),
        ({"num_samples": 10**9 + 1}, "num_samples"),
        ({"num_samples": True}, "num_samples must be an integer"),
        ({"metrics": {"loss": 10**400}}, "metric 'loss' .* got an integer of about 401 digits"),
        ({"metrics": {"loss": float("nan")}}, "metric 'loss' must be a finite number"),
        ({"metrics": {"loss": float("inf")}}, "metric 'loss' must be a finite number"),
        ({"metrics": {"loss": -1e13}}, "metric 'loss'"),
        ({"metrics": {"steps": -1.0}}, "metric 'steps'"),
        ({"metrics": {"steps": 2e9}}, "metric 'steps'"),
        ({"metrics": {"loss": "0.3"}}, "metric 'loss' must be a number"),
        ({"metrics": {"loss\nround 99 done": 1.0}}, "metric name 'loss\\\\nround 99 done'"),
        ({"metrics": {f"m{i}": 1.0 for i in range(65)}}, "65 metrics, at most 64"),
        (
            {"weights": {"w": torch.full((2, 2), 1e38), "n": torch.tensor(1)}},
            "'w' has values of magnitude above",
        ),
        (
            {"extra": {"delta_control": {"w": torch.full((2, 2), -1e38)}}},
            "extra 'delta_control' 'w' has values of magnitude above",
        ),
    ],
)
def test_numbers_beyond_their_bounds_are_rejected(changes: dict, reason: str) -> None:
    with pytest.raises(UpdateRejected, match=reason) as caught:
        validate_result(_result(**changes), REFERENCE, round=1)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 700


def test_bounds_are_inclusive() -> None:
    metrics = {"loss": 1e12, "steps": 10**9, "secagg.num_sites": 3.0, "dp/epsilon:site-a": 2}
    weights = {"w": torch.full((2, 2), -1e12), "n": torch.tensor(2**62)}
    validate_result(_result(num_samples=10**9, metrics=metrics, weights=weights), REFERENCE, round=1)


DECLARED = {"delta_control": {"w": REFERENCE["w"]}}


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({}, "extras differ: missing \\['delta_control'\\]"),
        ({"delta_control": {"w": torch.ones(3)}}, "extra 'delta_control' 'w' has shape \\(3,\\)"),
        ({"delta_control": {"w": torch.ones(2, 2, dtype=torch.float64)}}, "dtype"),
        ({"delta_control": {"w": torch.ones(2, 2), "n": torch.ones(1)}}, "unexpected \\['n'\\]"),
        (
            {"delta_control": {"w": torch.ones(2, 2)}, "smuggled": {"x": torch.ones(1)}},
            "unexpected \\['smuggled'\\]",
        ),
    ],
)
def test_declared_extras_are_checked_exactly(extra: dict, reason: str) -> None:
    with pytest.raises(UpdateRejected, match=reason):
        validate_result(_result(extra=extra), REFERENCE, round=1, extras=DECLARED)
    validate_result(
        _result(extra={"delta_control": {"w": torch.ones(2, 2)}}), REFERENCE, round=1, extras=DECLARED
    )


def test_a_strategy_without_extras_refuses_any() -> None:
    with pytest.raises(UpdateRejected, match="unexpected \\['delta_control'\\]"):
        validate_result(
            _result(extra={"delta_control": {"w": torch.ones(2, 2)}}), REFERENCE, round=1, extras={}
        )


def test_scaffold_declares_delta_control_for_its_controlled_entries() -> None:
    from medfed.strategies.scaffold import Scaffold

    reference = {
        "conv.weight": torch.zeros(2, 3),
        "bn.running_mean": torch.zeros(2),
        "bn.num_batches_tracked": torch.tensor(0),
    }
    declared = Scaffold().result_extras(reference)
    assert list(declared) == ["delta_control"] and list(declared["delta_control"]) == ["conv.weight"]
    assert declared["delta_control"]["conv.weight"].shape == (2, 3)


def test_site_name_and_reason_are_escaped_and_bounded() -> None:
    result = _result(
        site="evil\nround 99 done", weights={"w" + "x" * 10**6: torch.ones(1), "n": torch.tensor(1)}
    )
    with pytest.raises(UpdateRejected) as caught:
        validate_result(result, REFERENCE, round=1)
    message = str(caught.value)
    assert "\n" not in message and "evil\\nround 99 done" in message and len(message) < 700
