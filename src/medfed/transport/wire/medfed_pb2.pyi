from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    KIND_TASK: _ClassVar[Kind]
    KIND_WAIT: _ClassVar[Kind]
    KIND_DONE: _ClassVar[Kind]
    KIND_RESULT: _ClassVar[Kind]
    KIND_STEP: _ClassVar[Kind]
    KIND_DECLINE: _ClassVar[Kind]
    KIND_MODEL: _ClassVar[Kind]
KIND_UNSPECIFIED: Kind
KIND_TASK: Kind
KIND_WAIT: Kind
KIND_DONE: Kind
KIND_RESULT: Kind
KIND_STEP: Kind
KIND_DECLINE: Kind
KIND_MODEL: Kind

class Header(_message.Message):
    __slots__ = ("schema_version", "kind", "round", "task_id", "job_json", "total_bytes", "sha256", "step", "protocol")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    kind: Kind
    round: int
    task_id: str
    job_json: str
    total_bytes: int
    sha256: bytes
    step: str
    protocol: bytes
    def __init__(self, schema_version: _Optional[int] = ..., kind: _Optional[_Union[Kind, str]] = ..., round: _Optional[int] = ..., task_id: _Optional[str] = ..., job_json: _Optional[str] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[bytes] = ..., step: _Optional[str] = ..., protocol: _Optional[bytes] = ...) -> None: ...

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

class SecAggConfig(_message.Message):
    __slots__ = ("session", "client_ids", "threshold", "vector_length", "fraction_bits", "ring_bits", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VECTOR_LENGTH_FIELD_NUMBER: _ClassVar[int]
    FRACTION_BITS_FIELD_NUMBER: _ClassVar[int]
    RING_BITS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    client_ids: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    vector_length: int
    fraction_bits: int
    ring_bits: int
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., client_ids: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ..., vector_length: _Optional[int] = ..., fraction_bits: _Optional[int] = ..., ring_bits: _Optional[int] = ..., schema_version: _Optional[int] = ...) -> None: ...

class SecAggInvitation(_message.Message):
    __slots__ = ("config", "client_id", "schema_version", "participants")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    config: SecAggConfig
    client_id: int
    schema_version: int
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, config: _Optional[_Union[SecAggConfig, _Mapping]] = ..., client_id: _Optional[int] = ..., schema_version: _Optional[int] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class AdvertiseKeys(_message.Message):
    __slots__ = ("session", "sender", "c_public", "s_public", "schema_version", "signature", "certificate")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    C_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    S_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    sender: int
    c_public: bytes
    s_public: bytes
    schema_version: int
    signature: bytes
    certificate: bytes
    def __init__(self, session: _Optional[bytes] = ..., sender: _Optional[int] = ..., c_public: _Optional[bytes] = ..., s_public: _Optional[bytes] = ..., schema_version: _Optional[int] = ..., signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ...) -> None: ...

class KeyDirectory(_message.Message):
    __slots__ = ("session", "keys", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    keys: _containers.RepeatedCompositeFieldContainer[AdvertiseKeys]
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., keys: _Optional[_Iterable[_Union[AdvertiseKeys, _Mapping]]] = ..., schema_version: _Optional[int] = ...) -> None: ...

class EncryptedShare(_message.Message):
    __slots__ = ("sender", "recipient", "nonce", "ciphertext")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    sender: int
    recipient: int
    nonce: bytes
    ciphertext: bytes
    def __init__(self, sender: _Optional[int] = ..., recipient: _Optional[int] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class ShareKeys(_message.Message):
    __slots__ = ("session", "sender", "shares", "seed_commitment", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    SEED_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    sender: int
    shares: _containers.RepeatedCompositeFieldContainer[EncryptedShare]
    seed_commitment: bytes
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., sender: _Optional[int] = ..., shares: _Optional[_Iterable[_Union[EncryptedShare, _Mapping]]] = ..., seed_commitment: _Optional[bytes] = ..., schema_version: _Optional[int] = ...) -> None: ...

class ShareDelivery(_message.Message):
    __slots__ = ("session", "recipient", "shares", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    recipient: int
    shares: _containers.RepeatedCompositeFieldContainer[EncryptedShare]
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., recipient: _Optional[int] = ..., shares: _Optional[_Iterable[_Union[EncryptedShare, _Mapping]]] = ..., schema_version: _Optional[int] = ...) -> None: ...

class MaskedInput(_message.Message):
    __slots__ = ("session", "sender", "masked", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    sender: int
    masked: bytes
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., sender: _Optional[int] = ..., masked: _Optional[bytes] = ..., schema_version: _Optional[int] = ...) -> None: ...

class UnmaskRequest(_message.Message):
    __slots__ = ("session", "survivors", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    survivors: _containers.RepeatedScalarFieldContainer[int]
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., survivors: _Optional[_Iterable[int]] = ..., schema_version: _Optional[int] = ...) -> None: ...

class ConsistencyCheck(_message.Message):
    __slots__ = ("session", "survivors", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    survivors: _containers.RepeatedScalarFieldContainer[int]
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., survivors: _Optional[_Iterable[int]] = ..., schema_version: _Optional[int] = ...) -> None: ...

class ConsistencySignature(_message.Message):
    __slots__ = ("session", "sender", "signature", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    sender: int
    signature: bytes
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., sender: _Optional[int] = ..., signature: _Optional[bytes] = ..., schema_version: _Optional[int] = ...) -> None: ...

class SurvivorSignature(_message.Message):
    __slots__ = ("sender", "signature")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    sender: int
    signature: bytes
    def __init__(self, sender: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SignedSurvivors(_message.Message):
    __slots__ = ("session", "survivors", "signatures", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    survivors: _containers.RepeatedScalarFieldContainer[int]
    signatures: _containers.RepeatedCompositeFieldContainer[SurvivorSignature]
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., survivors: _Optional[_Iterable[int]] = ..., signatures: _Optional[_Iterable[_Union[SurvivorSignature, _Mapping]]] = ..., schema_version: _Optional[int] = ...) -> None: ...

class RevealedShare(_message.Message):
    __slots__ = ("owner", "value")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    owner: int
    value: bytes
    def __init__(self, owner: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class UnmaskResponse(_message.Message):
    __slots__ = ("session", "sender", "seed_shares", "key_shares", "schema_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SEED_SHARES_FIELD_NUMBER: _ClassVar[int]
    KEY_SHARES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    sender: int
    seed_shares: _containers.RepeatedCompositeFieldContainer[RevealedShare]
    key_shares: _containers.RepeatedCompositeFieldContainer[RevealedShare]
    schema_version: int
    def __init__(self, session: _Optional[bytes] = ..., sender: _Optional[int] = ..., seed_shares: _Optional[_Iterable[_Union[RevealedShare, _Mapping]]] = ..., key_shares: _Optional[_Iterable[_Union[RevealedShare, _Mapping]]] = ..., schema_version: _Optional[int] = ...) -> None: ...

class EncryptedVector(_message.Message):
    __slots__ = ("length", "chunks", "schema_version")
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    length: int
    chunks: _containers.RepeatedScalarFieldContainer[bytes]
    schema_version: int
    def __init__(self, length: _Optional[int] = ..., chunks: _Optional[_Iterable[bytes]] = ..., schema_version: _Optional[int] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("schema_version", "nonce", "newer_than", "final")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    NEWER_THAN_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    nonce: bytes
    newer_than: int
    final: bool
    def __init__(self, schema_version: _Optional[int] = ..., nonce: _Optional[bytes] = ..., newer_than: _Optional[int] = ..., final: _Optional[bool] = ...) -> None: ...

class PeerProof(_message.Message):
    __slots__ = ("certificate", "signature", "final", "schema_version")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    signature: bytes
    final: bool
    schema_version: int
    def __init__(self, certificate: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., final: _Optional[bool] = ..., schema_version: _Optional[int] = ...) -> None: ...

class ChainRequest(_message.Message):
    __slots__ = ("schema_version", "nonce", "job", "owner", "start")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    nonce: bytes
    job: str
    owner: str
    start: int
    def __init__(self, schema_version: _Optional[int] = ..., nonce: _Optional[bytes] = ..., job: _Optional[str] = ..., owner: _Optional[str] = ..., start: _Optional[int] = ...) -> None: ...

class ChainAnswer(_message.Message):
    __slots__ = ("entries", "length", "head", "proof", "schema_version")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    length: int
    head: str
    proof: PeerProof
    schema_version: int
    def __init__(self, entries: _Optional[_Iterable[bytes]] = ..., length: _Optional[int] = ..., head: _Optional[str] = ..., proof: _Optional[_Union[PeerProof, _Mapping]] = ..., schema_version: _Optional[int] = ...) -> None: ...
