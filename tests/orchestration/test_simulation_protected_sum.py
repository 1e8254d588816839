"""``privacy.secure_aggregation`` and ``privacy.encryption`` in ``medfed simulate``: the same
model as in the clear, and the CKKS server's adder never holds the secret key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import tenseal as ts
import torch
from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.orchestration.checkpoint import latest_checkpoint, load_checkpoint
from medfed.privacy import ckks_rounds
from medfed.privacy.ckks import CkksParameters, EncryptedVector
from medfed.simulator import run_simulation
from medfed.types import Weights

TINY = tiny_simulation(
    data={"synthetic": {"image_size": 32, "cases_scale": 0.3}},
    # SGD: Adam divides by sqrt(v), which turns the 2^-24 fixed-point rounding of round 1 into
    # ~1e-3 differences in round 2 for biases whose gradient is ~0 (before a norm layer).
    training={"local_epochs": 2, "batch_size": 8, "optimizer": "sgd", "lr": 0.01},
    federation={"rounds": 2, "min_sites": 2},
)


def _final_weights(output_dir: Path, **privacy: Any) -> Weights:
    config = parse_config({**TINY, "output_dir": str(output_dir), "privacy": privacy})
    run_dir = run_simulation(config).run_dir
    latest = latest_checkpoint(run_dir / "checkpoints" / "fedavg")
    assert latest is not None
    state = load_checkpoint(latest).server
    assert state.round == 2
    return state.weights


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Weights:
    return _final_weights(tmp_path_factory.mktemp("plain"))


def _assert_same_model(protected: Weights, plain: Weights, *, atol: float, rtol: float) -> None:
    assert plain.keys() == protected.keys()
    for name, tensor in plain.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(protected[name], tensor, atol=atol, rtol=rtol, msg=name)
        else:  # integer buffers: the rounded weighted mean instead of FedAvg's
            assert abs(int(protected[name].max()) - int(tensor.max())) <= 1, name


def test_secure_aggregation_gives_the_weights_of_plain_fedavg(tmp_path: Path, plain: Weights) -> None:
    secure = _final_weights(tmp_path / "secure", secure_aggregation={"threshold_fraction": 0.6})
    _assert_same_model(secure, plain, atol=1e-4, rtol=0)


def test_ckks_gives_the_weights_of_plain_fedavg_and_the_server_has_no_key(
    tmp_path: Path, plain: Weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_contexts: list[ts.Context] = []
    real_sum = ckks_rounds.server_sum

    def spy(
        context: ts.Context, uploads: Sequence[EncryptedVector], params: CkksParameters
    ) -> EncryptedVector:
        server_contexts.append(context)
        return real_sum(context, uploads, params)

    monkeypatch.setattr(ckks_rounds, "server_sum", spy)
    encrypted = _final_weights(tmp_path / "ckks", encryption={"scheme": "ckks"})
    assert len(server_contexts) == 2  # one encrypted sum per round
    assert not any(context.is_private() for context in server_contexts)
    _assert_same_model(encrypted, plain, atol=1e-3, rtol=1e-3)
