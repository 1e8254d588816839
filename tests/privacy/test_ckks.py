"""CKKS encrypted aggregation: the sum is right, the server cannot decrypt."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medfed.privacy.ckks import (
    CkksParameters,
    EncryptedVector,
    EncryptionError,
    add_encrypted,
    create_context,
    decrypt_vector,
    decrypt_weighted_mean,
    deserialize_context,
    encrypt_vector,
    encrypt_weighted_update,
    load_server_context,
    load_site_context,
    serialize_context,
)
from medfed.privacy.secagg.vectors import layout_of

PARAMS = CkksParameters()


@pytest.fixture(scope="module")
def contexts() -> tuple:
    site = create_context(PARAMS)
    server = deserialize_context(serialize_context(site, include_secret_key=False))
    other_site = deserialize_context(serialize_context(site, include_secret_key=True))
    return site, server, other_site


def test_server_context_has_no_secret_key(contexts: tuple) -> None:
    site, server, other_site = contexts
    assert site.is_private() and other_site.is_private()
    assert not server.is_private()
    encrypted = encrypt_vector(site, np.ones(3), PARAMS)
    with pytest.raises(EncryptionError, match="secret-key"):
        decrypt_vector(server, encrypted)
    with pytest.raises(EncryptionError, match="secret key"):
        add_encrypted(site, [encrypted])  # the server refuses a private context


def test_encrypted_sum_equals_plain_sum(contexts: tuple) -> None:
    site, server, other_site = contexts
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=PARAMS.slots + 100) for _ in range(5)]  # two chunks each
    uploads = [encrypt_vector(site, x, PARAMS) for x in inputs]
    assert all(len(u.chunks) == 2 for u in uploads)
    total = decrypt_vector(other_site, add_encrypted(server, uploads))
    expected = np.sum(inputs, axis=0)
    assert np.abs(total - expected).max() <= 1e-3 * np.abs(expected).max()
    np.testing.assert_allclose(total, expected, rtol=1e-3, atol=1e-6)


def test_encrypted_weighted_mean_matches_fedavg(contexts: tuple) -> None:
    site, server, _ = contexts
    models = [{"w": torch.full((3, 2), float(i)), "n": torch.tensor(i)} for i in (1, 2, 3)]
    layout = layout_of(models[0])
    uploads = [
        encrypt_weighted_update(site, m, 10.0 * i, layout, site=f"s{i}") for i, m in enumerate(models, 1)
    ]
    mean, weight = decrypt_weighted_mean(site, add_encrypted(server, uploads), layout)
    # (10*1 + 20*2 + 30*3) / 60 = 7/3
    assert weight == pytest.approx(60.0, rel=1e-6)
    torch.testing.assert_close(mean["w"], torch.full((3, 2), 7.0 / 3.0), rtol=1e-5, atol=0)
    assert mean["n"].item() == 2 and mean["n"].dtype == torch.int64


def test_uploads_of_different_lengths_are_rejected(contexts: tuple) -> None:
    site, server, _ = contexts
    a, b = encrypt_vector(site, np.ones(3), PARAMS), encrypt_vector(site, np.ones(4), PARAMS)
    with pytest.raises(EncryptionError, match="length"):
        add_encrypted(server, [a, b])


def test_garbage_context_bytes_raise_a_typed_error() -> None:
    with pytest.raises(EncryptionError, match="context"):
        deserialize_context(b"not a context")


def test_context_loaders_check_the_key_and_name_the_file(contexts: tuple, tmp_path: Path) -> None:
    site, _, _ = contexts
    site_file, server_file = tmp_path / "ckks.ctx", tmp_path / "ckks_public.ctx"
    site_file.write_bytes(serialize_context(site, include_secret_key=True))
    server_file.write_bytes(serialize_context(site, include_secret_key=False))
    assert load_site_context(site_file).is_private() and not load_server_context(server_file).is_private()
    with pytest.raises(EncryptionError, match=re.escape(f"'{server_file}' lacks the secret key")):
        load_site_context(server_file)
    with pytest.raises(EncryptionError, match=re.escape(f"'{site_file}' holds the secret key")):
        load_server_context(site_file)
    with pytest.raises(EncryptionError, match=re.escape(f"cannot read CKKS context '{tmp_path / 'nope'}'")):
        load_site_context(tmp_path / "nope")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(
        EncryptionError, match=re.escape(f"'{tmp_path / 'empty'}' is not a serialized TenSEAL")
    ):
        load_server_context(tmp_path / "empty")


# ----- the precise range ---------------------------------------------------------------------
FEW = CkksParameters(max_summands=4)  # per-site bound 2^57 / 4 = 2^55 ~ 3.6e16


def test_default_range_is_two_to_the_47() -> None:
    assert PARAMS.sum_bits == 57  # (59 + 39) - 1 - 40
    assert PARAMS.max_abs == 2.0**47


def test_a_full_sum_at_the_range_boundary_is_accurate(contexts: tuple) -> None:
    site, server, _ = contexts
    # A constant vector puts its whole magnitude in one coefficient: the worst case.
    inputs = [
        np.full(8, FEW.max_abs),
        np.full(8, -FEW.max_abs),
        np.full(8, FEW.max_abs),
        np.full(8, FEW.max_abs),
    ]
    inputs[0][1] = 3.0
    uploads = [encrypt_vector(site, x, FEW) for x in inputs]
    total = decrypt_vector(site, add_encrypted(server, uploads, FEW))
    expected = np.sum(inputs, axis=0)
    assert np.max(np.abs(total - expected)) <= 1e-7 * np.max(np.abs(expected))


@pytest.mark.parametrize("value", [np.nextafter(FEW.max_abs, np.inf), 1e17, 1e20, np.inf, np.nan])
def test_values_outside_the_range_are_refused(contexts: tuple, value: float) -> None:
    site, _, _ = contexts
    with pytest.raises(EncryptionError, match="CKKS range|NaN"):
        encrypt_vector(site, np.array([1.0, -value]), FEW)


def test_a_sum_of_more_uploads_than_the_range_allows_is_refused(contexts: tuple) -> None:
    site, server, _ = contexts
    uploads = [encrypt_vector(site, np.ones(2), FEW)] * 5
    with pytest.raises(EncryptionError, match="1 to 4 encrypted vectors"):
        add_encrypted(server, uploads, FEW)


def test_tenseal_errors_on_a_bad_ciphertext_become_encryption_errors(contexts: tuple) -> None:
    site, server, _ = contexts
    good = encrypt_vector(site, np.ones(2), PARAMS)
    bad = EncryptedVector(length=2, chunks=(b"not a ciphertext",))
    with pytest.raises(EncryptionError, match="CKKS add failed"):
        add_encrypted(server, [bad, good])
    with pytest.raises(EncryptionError, match="CKKS decrypt failed"):
        decrypt_vector(site, bad)


def test_a_weighted_update_outside_the_range_names_the_site(contexts: tuple) -> None:
    site, _, _ = contexts
    weights = {"w": torch.full((3,), 1e12, dtype=torch.float64)}
    with pytest.raises(EncryptionError, match="site 'hospital_b': value 1e\\+15 exceeds the CKKS range"):
        encrypt_weighted_update(site, weights, 1000.0, layout_of(weights), site="hospital_b")
