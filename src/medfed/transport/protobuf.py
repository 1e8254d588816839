"""Every conversion between medfed's Python values and protobuf messages lives here.

Streams (``Kind``, ``StreamHeader``, chunks, the ``Federation`` service's callables) and
protocol messages: each message class of ``medfed.privacy.secagg.messages`` and
``medfed.privacy.ckks`` has a protobuf message of the same name and field names in
``proto/medfed.proto``; ``encode_message`` and ``decode_message`` follow the dataclass's type
hints (bytes, ints, nested messages and tuples of either), so a new message needs only its
``.proto`` twin. Nothing is ever unpickled.

Data chunks skip the protobuf object model: ``serialize_chunk`` writes a data-only ``Chunk``'s
wire bytes directly (tag, length, bytes) and ``deserialize_chunk`` returns a zero-copy view of
them, which saves three copies of every model on each side. The bytes are standard protobuf,
so any other implementation of ``proto/medfed.proto`` interoperates.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from medfed.transport.chunking import Reassembler, digest, split
from medfed.transport.errors import PayloadError
from medfed.transport.wire import medfed_pb2 as pb
from medfed.types import SCHEMA_VERSION


class Kind(Enum):
    """What a stream carries (see ``proto/medfed.proto``)."""

    TASK = pb.KIND_TASK
    WAIT = pb.KIND_WAIT
    DONE = pb.KIND_DONE
    RESULT = pb.KIND_RESULT
    STEP = pb.KIND_STEP
    DECLINE = pb.KIND_DECLINE
    MODEL = pb.KIND_MODEL


@dataclass(frozen=True)
class StreamHeader:
    """The first message of a stream.

    Attributes:
        kind: What follows.
        round: The round of a task, step or result (0 otherwise).
        task_id: Identifies one posting of a round; an answer echoes its id.
        job_json: The job description (tasks and steps).
        total_bytes: Length of the payload that follows.
        sha256: SHA-256 of the payload.
        step: The protocol step a ``STEP`` stream carries.
        protocol: A protocol message that goes with a task.
        schema_version: The sender's ``SCHEMA_VERSION``.
    """

    kind: Kind
    round: int = 0
    task_id: str = ""
    job_json: str = ""
    total_bytes: int = 0
    sha256: bytes = b""
    step: str = ""
    protocol: bytes = b""
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class SubmitOutcome:
    """The server's answer to a submitted result."""

    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class DataPiece:
    """A data chunk, held as a view of the wire bytes (received) or of the payload (to send)."""

    data: memoryview


Message = pb.Chunk | DataPiece
_DATA_TAG = b"\x12"  # field 2 (data), wire type 2 (length-delimited)
_SERVICE = "medfed.v1.Federation"
_Parsed = TypeVar("_Parsed", pb.Chunk, pb.TaskRequest)


def serialize_chunk(message: Message) -> bytes:
    """Wire bytes of a stream message."""
    if isinstance(message, DataPiece):
        return b"".join((_DATA_TAG, _varint(len(message.data)), message.data))
    return message.SerializeToString()


def deserialize_chunk(raw: bytes) -> Message:
    """A stream message from wire bytes; data chunks become views of ``raw`` (no copy).

    Raises:
        PayloadError: ``raw`` is not a ``Chunk``.
    """
    if raw[:1] == _DATA_TAG:
        length, offset = _read_varint(raw, 1)
        if offset + length == len(raw):
            return DataPiece(memoryview(raw)[offset:])
    return _parse(pb.Chunk, raw)


def parse_task_request(raw: bytes) -> pb.TaskRequest:
    """A site's request for work from wire bytes; ``PayloadError`` if it is not one."""
    return _parse(pb.TaskRequest, raw)


def _parse(message_type: type[_Parsed], raw: bytes) -> _Parsed:
    try:
        return message_type.FromString(raw)
    except DecodeError as error:
        raise PayloadError(f"undecodable {message_type.__name__}: {error}") from None


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while offset < len(raw) and shift < 64:
        byte = raw[offset]
        value |= (byte & 0x7F) << shift
        offset += 1
        if byte < 0x80:
            return value, offset
        shift += 7
    return -1, offset


class FederationCalls:
    """The client's callables of the ``Federation`` service, with the chunk (de)serializers."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.get_task = channel.unary_stream(
            f"/{_SERVICE}/GetTask",
            request_serializer=pb.TaskRequest.SerializeToString,
            response_deserializer=deserialize_chunk,
        )
        self.submit_result = channel.stream_unary(
            f"/{_SERVICE}/SubmitResult",
            request_serializer=serialize_chunk,
            response_deserializer=pb.SubmitReply.FromString,
        )


def federation_handler(
    get_task: Callable[[bytes, grpc.ServicerContext], Iterator[Message]],
    submit_result: Callable[[Iterator[bytes], grpc.ServicerContext], pb.SubmitReply],
) -> grpc.GenericRpcHandler:
    """The server's handler of the ``Federation`` service.

    Requests reach the methods as raw bytes, to be decoded with ``parse_task_request`` and
    ``deserialize_chunk`` inside the call: a decoding error raised by gRPC's own deserializer
    leaves a streaming call half-open, and then ``server.stop()`` never completes.
    """
    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "GetTask": grpc.unary_stream_rpc_method_handler(
                get_task,
                request_deserializer=None,
                response_serializer=serialize_chunk,
            ),
            "SubmitResult": grpc.stream_unary_rpc_method_handler(
                submit_result,
                request_deserializer=None,
                response_serializer=pb.SubmitReply.SerializeToString,
            ),
        },
    )


def payload_stream(
    kind: Kind,
    payload: bytes,
    *,
    round: int = 0,
    task_id: str = "",
    job_json: str = "",
    step: str = "",
    protocol: bytes = b"",
) -> Iterator[Message]:
    """A header describing ``payload``, then ``payload`` in chunks (views, not copies)."""
    header = StreamHeader(
        kind=kind,
        round=round,
        task_id=task_id,
        job_json=job_json,
        total_bytes=len(payload),
        sha256=digest(payload),
        step=step,
        protocol=protocol,
    )
    yield pb.Chunk(header=_header_message(header))
    if payload:
        for piece in split(payload):
            yield DataPiece(piece)


def signal_stream(kind: Kind) -> Iterator[Message]:
    """A payload-less stream (``WAIT`` or ``DONE``)."""
    yield pb.Chunk(header=_header_message(StreamHeader(kind=kind, sha256=digest(b""))))


def read_stream(messages: Iterable[Message], *, limit: int) -> tuple[StreamHeader, bytes]:
    """The header and payload of a stream; stops reading as soon as the payload is oversized.

    Raises:
        PayloadError: No header first, a second header, another schema version, more bytes than
            declared or than ``limit``, a truncated payload or a wrong digest.
    """
    iterator = iter(messages)
    header = read_header(iterator)
    return header, read_payload(iterator, reassembler(header, limit))


def read_header(messages: Iterator[Message]) -> StreamHeader:
    """The header that starts a stream; ``PayloadError`` if there is none or it is foreign."""
    first = next(messages, None)
    if not isinstance(first, pb.Chunk) or first.WhichOneof("body") != "header":
        raise PayloadError("the stream does not start with a header")
    header = _header_value(first.header)
    if header.schema_version != SCHEMA_VERSION:
        raise PayloadError(f"schema version {header.schema_version}, expected {SCHEMA_VERSION}")
    return header


def reassembler(header: StreamHeader, limit: int) -> Reassembler:
    """Collects the payload ``header`` announces; ``PayloadError`` if it exceeds ``limit``."""
    return Reassembler(total_bytes=header.total_bytes, sha256=header.sha256, limit=limit)


def read_payload(messages: Iterable[Message], assembler: Reassembler) -> bytes:
    """The payload that follows a stream's header, checked by ``assembler``."""
    for message in messages:
        if isinstance(message, DataPiece):
            assembler.add(message.data)
        elif message.WhichOneof("body") == "data":
            assembler.add(memoryview(message.data))
        else:
            raise PayloadError("a stream carries one header only")
    return assembler.finish()


def task_request() -> pb.TaskRequest:
    """A site's request for work."""
    return pb.TaskRequest(schema_version=SCHEMA_VERSION)


def submit_reply(outcome: SubmitOutcome) -> pb.SubmitReply:
    """The protobuf answer to a submission."""
    return pb.SubmitReply(accepted=outcome.accepted, reason=outcome.reason)


def submit_outcome(reply: pb.SubmitReply) -> SubmitOutcome:
    """The server's answer to a submission."""
    return SubmitOutcome(accepted=bool(reply.accepted), reason=str(reply.reason))


def _header_message(header: StreamHeader) -> pb.Header:
    return pb.Header(
        schema_version=header.schema_version,
        kind=header.kind.value,
        round=header.round,
        task_id=header.task_id,
        job_json=header.job_json,
        total_bytes=header.total_bytes,
        sha256=header.sha256,
        step=header.step,
        protocol=header.protocol,
    )


def _header_value(message: pb.Header) -> StreamHeader:
    try:
        kind = Kind(message.kind)
    except ValueError:
        raise PayloadError(f"unknown stream kind {message.kind}") from None
    return StreamHeader(
        kind=kind,
        round=int(message.round),
        task_id=str(message.task_id),
        job_json=str(message.job_json),
        total_bytes=int(message.total_bytes),
        sha256=bytes(message.sha256),
        step=str(message.step),
        protocol=bytes(message.protocol),
        schema_version=int(message.schema_version),
    )


# ----- protocol messages (frozen dataclasses <-> their protobuf twins) ---------------------
T = TypeVar("T")


def encode_message(message: object) -> bytes:
    """``message`` (a protocol dataclass) as the wire bytes of its protobuf twin."""
    return _to_proto(message).SerializeToString()


def decode_message(kind: type[T], data: bytes) -> T:
    """The ``kind`` message that ``data`` encodes.

    Raises:
        PayloadError: ``data`` is not a ``kind`` message, or it carries another schema version.
    """
    proto = _proto_class(kind)()
    try:
        proto.ParseFromString(bytes(data))
    except DecodeError as error:
        raise PayloadError(f"not a valid {kind.__name__} message: {error}") from None
    message = _from_proto(kind, proto)
    version = getattr(message, "schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise PayloadError(f"{kind.__name__} has schema version {version}, expected {SCHEMA_VERSION}")
    return message


def _proto_class(kind: type) -> type[ProtoMessage]:
    proto = getattr(pb, kind.__name__, None)
    if proto is None or not dataclasses.is_dataclass(kind):
        raise TypeError(f"{kind.__name__} has no protobuf twin in proto/medfed.proto")
    return proto


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _to_proto(message: object) -> ProtoMessage:
    proto = _proto_class(type(message))()
    for field in dataclasses.fields(message):  # type: ignore[arg-type]
        value = getattr(message, field.name)
        if dataclasses.is_dataclass(value):
            getattr(proto, field.name).CopyFrom(_to_proto(value))
        elif isinstance(value, tuple):
            items = [_to_proto(v) if dataclasses.is_dataclass(v) else v for v in value]
            getattr(proto, field.name).extend(items)
        else:
            setattr(proto, field.name, value)
    return proto


def _from_proto(kind: type[T], proto: ProtoMessage) -> T:
    values: dict[str, Any] = {}
    for name, hint in _hints(typing.cast(type, kind)).items():
        raw = getattr(proto, name)
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            values[name] = tuple(_value(item, element) for element in raw)
        else:
            values[name] = _value(hint, raw)
    return kind(**values)


def _value(hint: Any, raw: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return _from_proto(hint, raw)  # type: ignore[arg-type]
    return hint(raw)
