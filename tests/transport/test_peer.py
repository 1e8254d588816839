"""The peer-to-peer wire: what a site serves, who may fetch it, and how the fetching site checks
the answer (name, revocation list, signature, model), over real mutual TLS in this process."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import torch
from peer_kits import kit_signer, peer_channel, peer_links, serving_peer

from medfed.deployment.peer import PeerLinks
from medfed.provision import ProjectConfig, load_client_kit, provision, revoke
from medfed.transport.errors import AuthenticationError, PayloadError
from medfed.transport.payload import encode_result
from medfed.transport.peer import (
    NONCE_BYTES,
    ModelRequest,
    ModelShelf,
    PeerChannel,
    PublishedModel,
    Signer,
    parse_model_request,
)
from medfed.transport.protobuf import Kind, encode_message
from medfed.types import TrainResult

SITES = ["hospital_a", "hospital_b", "hospital_c"]
WEIGHTS = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def _payload(version: int, weights: dict[str, torch.Tensor] = WEIGHTS) -> bytes:
    return encode_result(TrainResult(site="hospital_a", round=version, weights=weights, num_samples=4))


def _request(newer_than: int = 0, final: bool = False) -> ModelRequest:
    return ModelRequest(os.urandom(NONCE_BYTES), newer_than=newer_than, final=final)


@pytest.fixture
def kits(tmp_path: Path) -> Path:
    provision(ProjectConfig(name="t", sites=SITES), tmp_path / "kits")
    return tmp_path / "kits"


@contextmanager
def _serving(
    kits: Path,
    shelf: ModelShelf,
    *,
    sign: Signer | None = None,
    peers: tuple[str, ...] = ("hospital_b", "hospital_c"),
) -> Iterator[str]:
    """hospital_a serving ``shelf`` to ``peers`` on a free loopback port; yields its address."""
    with serving_peer(kits, "hospital_a", shelf, peers=peers, sign=sign) as address:
        yield address


def _channel(kits: Path, address: str, *, peer: str = "hospital_a", site: str = "hospital_b") -> PeerChannel:
    return peer_channel(kits, address, peer=peer, site=site)


def test_a_shelf_sends_only_newer_models_and_final_ones_when_asked() -> None:
    shelf = ModelShelf()
    assert shelf.answer("hospital_b", _request()) == (None, False)
    shelf.publish(PublishedModel(2, b"model"))
    assert shelf.answer("hospital_b", _request(newer_than=1))[1]
    assert not shelf.answer("hospital_b", _request(newer_than=2))[1]
    assert not shelf.answer("hospital_b", _request(final=True))[1]
    shelf.publish(PublishedModel(2, b"model", final=True))
    assert shelf.answer("hospital_b", _request(final=True))[1]
    assert shelf.served_final_to() == {"hospital_b"}


def test_a_shelf_keeping_two_models_serves_a_lagging_peer_the_model_of_its_round() -> None:
    shelf = ModelShelf(keep=2)
    for version in (1, 2, 3):
        shelf.publish(PublishedModel(version, f"trained {version}".encode()))
    assert shelf.answer("hospital_b", _request(newer_than=1)) == (PublishedModel(2, b"trained 2"), True)
    assert shelf.answer("hospital_b", _request(newer_than=2))[0] == PublishedModel(3, b"trained 3")
    model, sent = shelf.answer("hospital_b", _request(newer_than=3))
    assert not sent and model == PublishedModel(3, b"trained 3")  # a WAIT still says where it is
    assert shelf.answer("hospital_b", _request(newer_than=0))[0] == PublishedModel(2, b"trained 2")
    shelf.publish(PublishedModel(3, b"mixed 3", final=True))
    assert shelf.answer("hospital_b", _request(newer_than=2))[0] == PublishedModel(3, b"trained 3")
    assert shelf.answer("hospital_b", _request(final=True))[0] == PublishedModel(3, b"mixed 3", final=True)
    with pytest.raises(ValueError, match="keep"):
        ModelShelf(keep=0)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe garbage",
        encode_message(ModelRequest(b"short")),
        encode_message(ModelRequest(os.urandom(NONCE_BYTES), schema_version=99)),
    ],
)
def test_a_malformed_request_is_a_payload_error(raw: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_model_request(raw)


def test_a_peer_fetches_a_signed_newer_model(kits: Path) -> None:
    shelf, payload = ModelShelf(), _payload(3)
    shelf.publish(PublishedModel(3, payload))
    with _serving(kits, shelf) as address:
        channel = _channel(kits, address)
        answer = channel.fetch(_request(newer_than=1))
        assert (answer.kind, answer.version, answer.payload) == (Kind.MODEL, 3, payload)
        assert channel.fetch(_request(newer_than=3)).kind is Kind.WAIT
        channel.close()


def test_a_revoked_caller_is_refused(kits: Path) -> None:
    revoke(kits, "hospital_b")
    shelf = ModelShelf()
    shelf.publish(PublishedModel(1, _payload(1)))
    with _serving(kits, shelf) as address:
        with pytest.raises(grpc.RpcError) as refused:
            _channel(kits, address).fetch(_request())
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in str(refused.value.details())


def test_a_site_that_is_not_a_peer_is_refused(kits: Path) -> None:
    with _serving(kits, ModelShelf(), peers=("hospital_c",)) as address:
        with pytest.raises(grpc.RpcError) as refused:
            _channel(kits, address).fetch(_request())
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_revoked_answering_peer_is_refused_by_the_caller(kits: Path) -> None:
    shelf = ModelShelf()
    shelf.publish(PublishedModel(1, _payload(1)))
    with _serving(kits, shelf) as address:
        channel = _channel(kits, address)
        channel.fetch(_request())  # trusted until revoked
        revoke(kits, "hospital_a")  # refreshes hospital_b's crl.pem: read again on its next check
        with pytest.raises(AuthenticationError, match="revoked"):
            channel.fetch(_request())
        channel.close()


def test_an_answer_signed_over_other_bytes_is_refused(kits: Path) -> None:
    honest = kit_signer(kits, "hospital_a")
    shelf = ModelShelf()
    shelf.publish(PublishedModel(1, _payload(1)))
    with _serving(
        kits, shelf, sign=lambda data: honest(data.replace(b'"version": 1', b'"version": 0'))
    ) as address:
        with pytest.raises(AuthenticationError, match="signature"):
            _channel(kits, address).fetch(_request())


def test_a_peer_answering_under_another_name_fails_the_tls_host_check(kits: Path) -> None:
    shelf = ModelShelf()
    with _serving(kits, shelf) as address:
        with pytest.raises(grpc.RpcError) as failed:
            _channel(kits, address, peer="hospital_c").fetch(_request())
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


def _links(kits: Path, address: str) -> PeerLinks:
    return peer_links(kits, "hospital_b", {"hospital_a": address})


@pytest.mark.parametrize(
    ("payload", "version", "why"),
    [
        (_payload(2, {"w": torch.zeros(3, 2)}), 2, "shape"),
        (_payload(2, {"w": torch.full((2, 3), float("nan"))}), 2, "finite"),
        (_payload(2, {**WEIGHTS, "extra": torch.zeros(1)}), 2, "extra"),
        (_payload(2), 3, "round"),
        (_payload(2**62), 2**62, "version"),
        (b"not safetensors", 2, "safetensors"),
    ],
)
def test_a_hostile_model_is_skipped_with_one_log_line(
    kits: Path, payload: bytes, version: int, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    shelf = ModelShelf()
    shelf.publish(PublishedModel(version, payload))
    with _serving(kits, shelf) as address, caplog.at_level(logging.WARNING, "medfed"):
        links = _links(kits, address)
        assert links.fetch("hospital_a", WEIGHTS, newer_than=0) is None
        assert links.fetch("hospital_a", WEIGHTS, newer_than=0) is None
        links.close()
    skipped = [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()]
    assert len(skipped) == 1 and why in skipped[0].lower(), skipped


def test_a_valid_model_is_returned_for_merging(kits: Path) -> None:
    shelf = ModelShelf()
    shelf.publish(PublishedModel(2, _payload(2)))
    with _serving(kits, shelf) as address:
        links = _links(kits, address)
        fetched = links.fetch("hospital_a", WEIGHTS, newer_than=1)
        links.close()
    assert fetched is not None and (fetched.site, fetched.round, fetched.num_samples) == ("hospital_a", 2, 4)
    torch.testing.assert_close(fetched.weights["w"], WEIGHTS["w"])


def test_a_kit_from_before_peer_to_peer_is_told_to_get_a_new_one(kits: Path) -> None:
    """A site certificate without TLS server use (as provisioned before) cannot serve peers."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from medfed.deployment.peer import check_peer_certificate
    from medfed.provision.certs import Identity, read_identity, write_identity

    tls = load_client_kit(kits / "hospital_a").tls
    ca = read_identity(kits / "ca" / "ca.crt", kits / "ca" / "ca.key")
    site = read_identity(tls.certificate, tls.private_key)
    check_peer_certificate(tls)
    old = (
        x509.CertificateBuilder()
        .subject_name(site.certificate.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(site.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(site.certificate.not_valid_before_utc)
        .not_valid_after(site.certificate.not_valid_after_utc)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    write_identity(Identity(old, site.key), tls.certificate, tls.private_key)
    with pytest.raises(AuthenticationError, match="cannot serve peers"):
        check_peer_certificate(tls)
