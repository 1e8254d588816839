from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    KIND_TASK: _ClassVar[Kind]
    KIND_WAIT: _ClassVar[Kind]
    KIND_DONE: _ClassVar[Kind]
    KIND_RESULT: _ClassVar[Kind]
KIND_UNSPECIFIED: Kind
KIND_TASK: Kind
KIND_WAIT: Kind
KIND_DONE: Kind
KIND_RESULT: Kind

class Header(_message.Message):
    __slots__ = ("schema_version", "kind", "round", "task_id", "job_json", "total_bytes", "sha256")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    kind: Kind
    round: int
    task_id: str
    job_json: str
    total_bytes: int
    sha256: bytes
    def __init__(self, schema_version: _Optional[int] = ..., kind: _Optional[_Union[Kind, str]] = ..., round: _Optional[int] = ..., task_id: _Optional[str] = ..., job_json: _Optional[str] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: Header
    data: bytes
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("schema_version",)
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    def __init__(self, schema_version: _Optional[int] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("accepted", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...
