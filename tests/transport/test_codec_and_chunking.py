"""Safetensors payloads and chunk streams: round trips and every way bytes can be wrong."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from medfed.privacy.ckks import EncryptedVector
from medfed.privacy.secagg.messages import (
    RevealedShare,
    SecAggConfig,
    SecAggInvitation,
    UnmaskResponse,
)
from medfed.transport.chunking import Reassembler, digest, split
from medfed.transport.errors import PayloadError
from medfed.transport.payload import (
    decode_result,
    decode_task,
    encode_result,
    encode_task,
)
from medfed.transport.protobuf import (
    Kind,
    decode_message,
    encode_message,
    payload_stream,
    read_stream,
    signal_stream,
)
from medfed.types import TrainResult, TrainTask


def _weights() -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.arange(12.0).reshape(3, 4), "bn.num_batches_tracked": torch.tensor(7)}


def test_task_round_trip_keeps_tensors_config_and_extra() -> None:
    task = TrainTask(
        round=4,
        weights=_weights(),
        config={"local_epochs": 2, "lr": 0.1, "tag": "x", "on": True},
        extra={"c": {"conv.weight": torch.ones(3, 4)}},
    )
    back = decode_task(encode_task(task))
    assert back.round == 4 and dict(back.config) == dict(task.config)
    assert torch.equal(back.weights["conv.weight"], task.weights["conv.weight"])
    assert back.weights["bn.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(back.extra["c"]["conv.weight"], torch.ones(3, 4))


def test_result_site_comes_from_the_caller_not_the_payload() -> None:
    result = TrainResult(site="hospital_a", round=2, weights=_weights(), num_samples=9, metrics={"loss": 0.5})
    back = decode_result(encode_result(result), site="authenticated")
    assert back.site == "authenticated" and back.num_samples == 9 and back.metrics == {"loss": 0.5}


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"\xff" * 8 + b"{}", (10).to_bytes(8, "little") + b"{not json}"]
)
def test_malformed_payloads_raise_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_result(data, site="a")


def test_payload_missing_metadata_is_rejected() -> None:
    from safetensors.torch import save

    with pytest.raises(PayloadError, match="metrics"):
        decode_result(
            save({"weights/a": torch.ones(1)}, metadata={"round": "1", "schema_version": "1"}), site="a"
        )


def test_unexpected_tensor_key_is_rejected() -> None:
    from safetensors.torch import save

    data = save({"other/a": torch.ones(1)}, metadata={"round": "1", "schema_version": "1", "config": "{}"})
    with pytest.raises(PayloadError, match="unexpected tensor key"):
        decode_task(data)


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=300))
def test_split_then_reassemble_is_identity(data: bytes, size: int) -> None:
    assembler = Reassembler(total_bytes=len(data), sha256=digest(data), limit=len(data))
    for piece in split(data, size):
        assert len(piece) <= size
        assembler.add(piece)
    assert assembler.finish() == data


def test_reassembler_refuses_oversized_truncated_overflowing_and_altered() -> None:
    data = b"x" * 100
    with pytest.raises(PayloadError, match="exceeds the limit"):
        Reassembler(total_bytes=100, sha256=digest(data), limit=99)
    truncated = Reassembler(total_bytes=100, sha256=digest(data), limit=100)
    truncated.add(data[:50])
    with pytest.raises(PayloadError, match="truncated"):
        truncated.finish()
    overflowing = Reassembler(total_bytes=100, sha256=digest(data), limit=1000)
    with pytest.raises(PayloadError, match="more than"):
        overflowing.add(data + b"y")
    altered = Reassembler(total_bytes=100, sha256=digest(data), limit=100)
    altered.add(b"y" * 100)
    with pytest.raises(PayloadError, match="digest"):
        altered.finish()


def test_stream_round_trip_and_signals() -> None:
    payload = bytes(range(256)) * 50
    header, data = read_stream(
        payload_stream(Kind.TASK, payload, round=3, task_id="t", job_json="{}"), limit=10**6
    )
    assert (header.kind, header.round, header.task_id, data) == (Kind.TASK, 3, "t", payload)
    header, data = read_stream(signal_stream(Kind.DONE), limit=0)
    assert header.kind is Kind.DONE and data == b""


def test_stream_without_header_or_with_two_headers_is_rejected() -> None:
    messages = list(payload_stream(Kind.RESULT, b"abc"))
    with pytest.raises(PayloadError, match="header"):
        read_stream(messages[1:], limit=100)
    with pytest.raises(PayloadError, match="one header"):
        read_stream([messages[0], messages[0]], limit=100)


def test_protocol_messages_round_trip_through_protobuf_and_garbage_is_a_payload_error() -> None:
    invitation = SecAggInvitation(SecAggConfig(b"s" * 16, (1, 2, 3), 2, 10, 24, 64), client_id=2)
    response = UnmaskResponse(b"s" * 16, 3, (RevealedShare(1, b"\x00" * 66),), (RevealedShare(2, b"\x01"),))
    vector = EncryptedVector(5, (b"one", b"two"))
    for message in (invitation, response, vector):
        assert decode_message(type(message), encode_message(message)) == message
    with pytest.raises(PayloadError, match="not a valid UnmaskResponse"):
        decode_message(UnmaskResponse, b"\xff\xff\xff")
    with pytest.raises(PayloadError, match="schema version 7"):
        decode_message(EncryptedVector, encode_message(EncryptedVector(5, (), schema_version=7)))
