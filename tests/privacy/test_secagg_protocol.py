"""The four rounds of Bonawitz et al. 2017: correctness under drop-outs, failure below the
threshold, masking hides the input, tampering is detected."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from medfed.privacy.secagg import (
    FixedPoint,
    SecAggClient,
    SecAggServer,
    SecureAggregationError,
    new_config,
    secure_sum,
)
from medfed.privacy.secagg.messages import ShareDelivery

NAMES = ["a", "b", "c", "d", "e"]
DIM = 64
CODE = FixedPoint()
TOL = len(NAMES) * 2.0 ** -(CODE.fraction_bits + 1)


def _inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(scale=10.0, size=DIM) for name in NAMES}


def test_sum_without_dropouts_equals_plain_sum() -> None:
    inputs = _inputs(0)
    total = secure_sum(inputs, threshold=3).total
    np.testing.assert_allclose(total, sum(inputs.values()), rtol=0, atol=TOL)


@pytest.mark.parametrize("seed", range(6))
def test_sum_survives_random_dropouts_up_to_n_minus_t(seed: int) -> None:
    rng = np.random.default_rng(seed)
    after_sharing = int(rng.integers(0, 3))  # n - t = 2 may drop in total
    after_masking = int(rng.integers(0, 3 - after_sharing))
    inputs = _inputs(seed)
    result = secure_sum(
        inputs,
        threshold=3,
        drop_after_sharing=after_sharing,
        drop_after_masking=after_masking,
        seed=seed,
    )
    assert len(result.contributors) == 5 - after_sharing
    expected = sum(inputs[name] for name in result.contributors)
    np.testing.assert_allclose(result.total, expected, rtol=0, atol=TOL)


def test_clients_dropping_before_sharing_are_left_out() -> None:
    inputs = _inputs(1)
    total = secure_sum(inputs, threshold=3, drop_after_advertising=["a"], drop_after_sharing=["b"]).total
    expected = inputs["c"] + inputs["d"] + inputs["e"]
    np.testing.assert_allclose(total, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize(
    "drops",
    [
        {"drop_after_sharing": 3},
        {"drop_after_masking": 3},
        {"drop_after_sharing": 1, "drop_after_masking": 2},
        {"drop_after_advertising": 3},
    ],
)
def test_fewer_than_t_survivors_raise_instead_of_a_wrong_sum(drops: dict) -> None:
    with pytest.raises(SecureAggregationError, match="threshold is 3"):
        secure_sum(_inputs(2), threshold=3, seed=0, **drops)


@pytest.mark.parametrize("threshold", [2, 6])
def test_threshold_must_be_an_honest_majority_and_at_most_n(threshold: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        secure_sum(_inputs(3), threshold=threshold)


def _play_until_masked(values: np.ndarray, code: FixedPoint = CODE) -> tuple[np.ndarray, int]:
    """Runs rounds 0-2 for 3 clients; returns client 1's masked vector as ring elements."""
    config = new_config(client_ids=[1, 2, 3], threshold=2, vector_length=len(values), code=code)
    server = SecAggServer(config)
    clients = [SecAggClient(i, config) for i in (1, 2, 3)]
    directory = server.collect_keys([c.advertise_keys() for c in clients])
    deliveries = server.route_shares([c.share_keys(directory) for c in clients])
    message = clients[0].masked_input(deliveries[1], values)
    return np.frombuffer(message.masked, dtype=code.dtype), len(message.masked)


def test_masked_zero_input_is_uniform_over_bytes() -> None:
    ring, size = _play_until_masked(np.zeros(4096))
    counts = np.bincount(ring.view(np.uint8), minlength=256)
    assert size == 4096 * 8
    assert stats.chisquare(counts).pvalue > 1e-3
    top_bits = (ring >> np.uint64(60)).astype(np.int64)  # ring elements, not only bytes
    assert stats.chisquare(np.bincount(top_bits, minlength=16)).pvalue > 1e-3


def test_masked_vector_is_uncorrelated_with_the_input() -> None:
    values = np.linspace(-100.0, 100.0, 4096)
    ring, _ = _play_until_masked(values)
    masked = ring.view(np.int64).astype(np.float64)
    assert abs(stats.pearsonr(values, masked).statistic) < 0.1


def test_tampered_share_ciphertext_is_detected() -> None:
    config = new_config(client_ids=[1, 2, 3], threshold=2, vector_length=4, code=CODE)
    server = SecAggServer(config)
    clients = [SecAggClient(i, config) for i in (1, 2, 3)]
    directory = server.collect_keys([c.advertise_keys() for c in clients])
    delivery = server.route_shares([c.share_keys(directory) for c in clients])[1]
    share = delivery.shares[0]
    flipped = bytes([share.ciphertext[0] ^ 1]) + share.ciphertext[1:]
    tampered = ShareDelivery(
        delivery.session,
        delivery.recipient,
        (dataclasses.replace(share, ciphertext=flipped), *delivery.shares[1:]),
    )
    with pytest.raises(SecureAggregationError, match="authentication"):
        clients[0].masked_input(tampered, np.zeros(4))


def test_share_redirected_to_another_recipient_is_detected() -> None:
    config = new_config(client_ids=[1, 2, 3], threshold=2, vector_length=4, code=CODE)
    server = SecAggServer(config)
    clients = [SecAggClient(i, config) for i in (1, 2, 3)]
    directory = server.collect_keys([c.advertise_keys() for c in clients])
    deliveries = server.route_shares([c.share_keys(directory) for c in clients])
    stolen = dataclasses.replace(deliveries[2].shares[0], recipient=1)  # 1 -> 2 share, relabelled
    forged = ShareDelivery(config.session, 1, (stolen,))
    with pytest.raises(SecureAggregationError):
        clients[0].masked_input(forged, np.zeros(4))


def test_rounds_cannot_be_replayed_or_skipped() -> None:
    config = new_config(client_ids=[1, 2, 3], threshold=2, vector_length=4, code=CODE)
    client = SecAggClient(1, config)
    client.advertise_keys()
    with pytest.raises(SecureAggregationError, match="in order"):
        client.advertise_keys()
    with pytest.raises(SecureAggregationError, match="in order"):
        client.unmask(None)  # type: ignore[arg-type]


def test_messages_of_another_session_are_rejected() -> None:
    code = CODE
    config = new_config(client_ids=[1, 2, 3], threshold=2, vector_length=4, code=code)
    other = new_config(client_ids=[1, 2, 3], threshold=2, vector_length=4, code=code)
    server = SecAggServer(config)
    with pytest.raises(SecureAggregationError, match="another session"):
        server.collect_keys([SecAggClient(1, other).advertise_keys()])


def test_overflowing_input_raises_rather_than_wrapping() -> None:
    inputs = {name: np.full(4, 1e12) for name in NAMES}
    with pytest.raises(SecureAggregationError, match="overflow bound"):
        secure_sum(inputs, threshold=3)
