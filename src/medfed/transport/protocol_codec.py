"""Protocol messages (frozen dataclasses) as protobuf bytes, and back.

Each message class of ``medfed.privacy.secagg.messages`` and ``medfed.privacy.ckks`` has a
protobuf message of the same name and field names in ``proto/medfed.proto``; the conversion
follows the dataclass's type hints (bytes, ints, nested messages and tuples of either), so a
new message needs only its ``.proto`` twin. Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from medfed.transport.errors import PayloadError
from medfed.transport.wire import medfed_pb2 as pb
from medfed.types import SCHEMA_VERSION

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
    return proto  # type: ignore[no-any-return]


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
