"""Peer-to-peer over gRPC (service ``Peer`` of ``proto/medfed.proto``): every site serves its
current model to the others and fetches theirs, over mutual TLS with its own kit.

The answering site signs every answer with its kit's key (``PeerProof``): the signature covers
the caller's fresh nonce, both names, the answer's kind, version, finality and digest. gRPC
Python shows a client neither the server's certificate nor a hook to check it, so this proof is
how the caller checks the answering certificate against the project's revocation list.

``FetchChain`` serves, the same way, entries of the provenance chains a site keeps (its own and
its copies of its peers'), a bounded page at a time; the caller checks the entries themselves
(``medfed.provenance.chain_copies``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import TypeVar

import grpc

from medfed.text import printable
from medfed.transport.chunking import digest
from medfed.transport.errors import AuthenticationError, PayloadError, ServerBusy
from medfed.transport.limits import Admission, ServerLimits
from medfed.transport.protobuf import (
    Kind,
    Message,
    StreamHeader,
    decode_message,
    deserialize_chunk,
    encode_message,
    payload_stream,
    read_stream,
    serialize_chunk,
)
from medfed.transport.server import GRPC_OPTIONS, Authenticator
from medfed.transport.tls import TlsFiles, channel_credentials, peer_certificate
from medfed.types import SCHEMA_VERSION

logger = logging.getLogger(__name__)

_SERVICE = "medfed.v1.Peer"
NONCE_BYTES = 32
"""Length of a request's nonce; requests with another length are refused."""
MAX_CHAIN_ENTRIES = 1000
"""Most ledger entries one chain answer carries (a caller refuses more)."""
MAX_CHAIN_BYTES = 4 * 1024 * 1024
"""Most bytes of entries one chain answer carries (a caller refuses more); an entry is at most
256 KiB, so every entry fits in an answer."""
_PROOF_BYTES = 64 * 1024
"""Room in a chain answer for its proof and framing, on top of its entries."""


@dataclass(frozen=True)
class ModelRequest:
    """A peer's request for this site's model (``ModelRequest`` in the proto).

    Attributes:
        nonce: ``NONCE_BYTES`` fresh random bytes, covered by the answer's signature.
        newer_than: The version of this site's model the caller already holds.
        final: Send only the model this site ended its rounds with.
    """

    nonce: bytes
    newer_than: int = 0
    final: bool = False
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class PeerProof:
    """The answering site's certificate (PEM) and its signature over ``statement``."""

    certificate: bytes
    signature: bytes
    final: bool = False
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ChainRequest:
    """A peer's request for entries of a provenance chain (``ChainRequest`` in the proto).

    Attributes:
        nonce: ``NONCE_BYTES`` fresh random bytes, covered by the answer's signature.
        job: The job whose chains are asked for.
        owner: The peer whose chain.
        start: The position of the first entry wanted.
    """

    nonce: bytes
    job: str
    owner: str
    start: int = 0
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ChainAnswer:
    """Entries of a chain from the request's start on (lines of canonical JSON), the chain's
    length and head at the answering site, and its proof (``ChainAnswer`` in the proto)."""

    entries: tuple[bytes, ...] = ()
    length: int = 0
    head: str = ""
    proof: PeerProof = PeerProof(b"", b"")
    schema_version: int = SCHEMA_VERSION


ChainSource = Callable[[str, str, str, int], ChainAnswer | None]
"""``chains(caller, job, owner, start)``: the (unsigned) answer to ``caller``, the entries of
``owner``'s chain in ``job`` from ``start`` on, at most ``MAX_CHAIN_ENTRIES`` and
``MAX_CHAIN_BYTES``; ``None`` when the site keeps no such chain."""

Signer = Callable[[bytes], tuple[bytes, bytes]]
"""``sign(data) -> (certificate PEM, signature)`` with the site's kit key."""

Verifier = Callable[[str, bytes, bytes, bytes], None]
"""``verify(peer, certificate, data, signature)``: raises ``AuthenticationError`` unless the
certificate is ``peer``'s, the project's, unrevoked and in date, and the signature its."""


def statement(
    request: ModelRequest, *, caller: str, answerer: str, kind: Kind, version: int, final: bool, sha256: bytes
) -> bytes:
    """The bytes an answer's ``PeerProof`` signs."""
    fields = {
        "domain": "medfed/peer-model/v1",
        "nonce": request.nonce.hex(),
        "caller": caller,
        "answerer": answerer,
        "kind": kind.name,
        "version": version,
        "final": final,
        "sha256": sha256.hex(),
    }
    return json.dumps(fields, sort_keys=True).encode()


def chain_statement(request: ChainRequest, answer: ChainAnswer, *, caller: str, answerer: str) -> bytes:
    """The bytes a chain answer's ``PeerProof`` signs."""
    entries = hashlib.sha256()
    for entry in answer.entries:
        entries.update(len(entry).to_bytes(8, "big") + entry)
    fields = {
        "domain": "medfed/peer-chain/v1",
        "nonce": request.nonce.hex(),
        "caller": caller,
        "answerer": answerer,
        "job": request.job,
        "owner": request.owner,
        "start": request.start,
        "length": answer.length,
        "head": answer.head,
        "sha256": entries.hexdigest(),
    }
    return json.dumps(fields, sort_keys=True).encode()


@dataclass(frozen=True)
class PublishedModel:
    """What a site serves: its model (a ``TrainResult`` payload whose round is ``version``)."""

    version: int
    payload: bytes
    final: bool = False


@dataclass
class ModelShelf:
    """The models a site serves now (the last ``keep`` it published), and which peers fetched
    its final one. Thread-safe.

    A request gets the oldest model kept that is newer than the caller's copy: with ``keep=1``
    the latest; with ``keep=2`` a peer one round behind still gets the model of its round (gossip).
    """

    keep: int = 1
    models: list[PublishedModel] = field(default_factory=list)
    fetched_final: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"keep must be >= 1, got {self.keep}")

    def publish(self, model: PublishedModel) -> None:
        """Serves ``model`` from now on (with the ``keep - 1`` published before it)."""
        with self._lock:
            self.models = [*self.models, model][-self.keep :]

    def answer(self, caller: str, request: ModelRequest) -> tuple[PublishedModel | None, bool]:
        """The model to send to ``caller`` for ``request`` and ``True``: the oldest kept that is
        newer than the caller's copy (and final, if a final one is asked); else the latest (its
        version tells the caller where this site is) and ``False``. A final model sent on a
        final request counts as fetched."""
        with self._lock:
            sendable = [
                model
                for model in self.models
                if model.version > request.newer_than and (model.final or not request.final)
            ]
            if not sendable:
                return (self.models[-1] if self.models else None), False
            if request.final:
                self.fetched_final.add(caller)
            return sendable[0], True

    def served_final_to(self) -> set[str]:
        """The peers that fetched this site's final model."""
        with self._lock:
            return set(self.fetched_final)


class PeerServicer:
    """Serves a site's ``ModelShelf`` to its authenticated peers.

    Args:
        shelf: What the site serves.
        name: This site's name (signed into every answer).
        peers: The sites allowed to call.
        authenticate: Maps a caller's certificate to its name; refuses revoked, expired or
            foreign ones (``CertificateGate``).
        sign: Signs answers with this site's kit key.
        limits: Calls each peer may hold open.
        chains: The provenance chains the site serves (``None``: none).
    """

    def __init__(
        self,
        shelf: ModelShelf,
        *,
        name: str,
        peers: Iterable[str],
        authenticate: Authenticator,
        sign: Signer,
        limits: ServerLimits | None = None,
        chains: ChainSource | None = None,
    ) -> None:
        self.shelf, self.name, self.peers = shelf, name, frozenset(peers)
        self.authenticate, self.sign, self.chains = authenticate, sign, chains
        self.limits = limits or ServerLimits()
        self.admission = Admission(self.limits)

    def FetchModel(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[Message]:
        """Streams this site's model to the caller if newer than its copy, else a ``WAIT``."""
        caller = self._identify(context)
        try:
            with self.admission.call(caller):
                request = parse_model_request(raw)
                model, send = self.shelf.answer(caller, request)
                yield from self._answer(caller, request, model, send)
        except ServerBusy as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except PayloadError as error:
            logger.warning("refused a request of peer '%s': %s", caller, error)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    def FetchChain(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """The entries of the chain the caller asks for, signed; ``NOT_FOUND`` when this site
        keeps no such chain."""
        caller = self._identify(context)
        try:
            with self.admission.call(caller):
                request = parse_chain_request(raw)
                answer = (
                    None
                    if self.chains is None
                    else self.chains(caller, request.job, request.owner, request.start)
                )
                if answer is not None:
                    signed = chain_statement(request, answer, caller=caller, answerer=self.name)
                    return encode_message(replace(answer, proof=PeerProof(*self.sign(signed))))
                code, details = (
                    grpc.StatusCode.NOT_FOUND,
                    f"no chain of '{request.owner}' in job '{request.job}' here",
                )
        except ServerBusy as error:
            code, details = grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
        except PayloadError as error:
            logger.warning("refused a chain request of peer '%s': %s", caller, error)
            code, details = grpc.StatusCode.INVALID_ARGUMENT, str(error)
        context.set_code(code)
        context.set_details(printable(details))
        return b""

    def _answer(
        self, caller: str, request: ModelRequest, model: PublishedModel | None, send: bool
    ) -> Iterator[Message]:
        kind = Kind.MODEL if send else Kind.WAIT
        payload = model.payload if model is not None and send else b""
        version = 0 if model is None else model.version
        final = model is not None and model.final
        signed = statement(
            request,
            caller=caller,
            answerer=self.name,
            kind=kind,
            version=version,
            final=final,
            sha256=digest(payload),
        )
        certificate, signature = self.sign(signed)
        proof = encode_message(PeerProof(certificate, signature, final))
        if send:
            logger.info("sending model version %d%s to %s", version, " (final)" if final else "", caller)
        return payload_stream(kind, payload, round=version, protocol=proof)

    def _identify(self, context: grpc.ServicerContext) -> str:
        certificate = peer_certificate(context)
        try:
            if certificate is None:
                raise AuthenticationError("no client certificate")
            caller = self.authenticate(certificate)
        except AuthenticationError as error:
            logger.warning("refused a peer from %s: %s", context.peer(), error)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
        if caller not in self.peers:
            logger.warning("refused '%s' from %s: not a peer of this federation", caller, context.peer())
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"'{caller}' is not a peer of this federation")
        return str(caller)


_Request = TypeVar("_Request", ModelRequest, ChainRequest)


def parse_model_request(raw: bytes) -> ModelRequest:
    """A peer's request from wire bytes; ``PayloadError`` if it is malformed."""
    return _with_nonce(decode_message(ModelRequest, raw))


def parse_chain_request(raw: bytes) -> ChainRequest:
    """A peer's chain request from wire bytes; ``PayloadError`` if it is malformed."""
    return _with_nonce(decode_message(ChainRequest, raw))


def _with_nonce(request: _Request) -> _Request:
    if len(request.nonce) != NONCE_BYTES:
        raise PayloadError(f"the nonce must have {NONCE_BYTES} bytes, got {len(request.nonce)}")
    return request


def start_peer_server(
    servicer: PeerServicer, *, address: str, credentials: grpc.ServerCredentials
) -> tuple[grpc.Server, int]:
    """Starts the site's peer server on ``address`` (``host:port``); returns it and its port.

    Raises:
        RuntimeError: gRPC could not bind ``address``.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=servicer.limits.workers(len(servicer.peers))),
        options=GRPC_OPTIONS,
    )
    handler = grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "FetchModel": grpc.unary_stream_rpc_method_handler(
                servicer.FetchModel, request_deserializer=None, response_serializer=serialize_chunk
            ),
            "FetchChain": grpc.unary_unary_rpc_method_handler(
                servicer.FetchChain, request_deserializer=None, response_serializer=None
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port(address, credentials)
    server.start()
    return server, port


@dataclass(frozen=True)
class PeerAnswer:
    """A peer's checked answer: its model's payload (empty for ``WAIT``), version, finality."""

    kind: Kind
    version: int
    final: bool
    payload: bytes


class PeerChannel:
    """A connection from this site to one peer, checked as that peer's under its own name.

    Args:
        target: The peer's ``host:port``.
        name: This site's name.
        peer: The peer's name: its certificate must carry it (TLS host name and the proof).
        tls: This site's certificate, key and the project CA.
        verify: Checks the answer's proof (certificate, revocation, signature).
        timeout_s: Deadline of one call, transfer included.
        limit: Largest model accepted, in bytes.
    """

    def __init__(
        self,
        target: str,
        *,
        name: str,
        peer: str,
        tls: TlsFiles,
        verify: Verifier,
        timeout_s: float,
        limit: int,
    ) -> None:
        options = [*GRPC_OPTIONS, ("grpc.ssl_target_name_override", peer)]
        self._channel = grpc.secure_channel(target, channel_credentials(tls), options=options)
        self._fetch = self._channel.unary_stream(
            f"/{_SERVICE}/FetchModel",
            request_serializer=encode_message,
            response_deserializer=deserialize_chunk,
        )
        self._fetch_chain = self._channel.unary_unary(
            f"/{_SERVICE}/FetchChain", request_serializer=encode_message, response_deserializer=None
        )
        self.name, self.peer, self.verify = name, peer, verify
        self.timeout_s, self.limit = timeout_s, limit

    def fetch(self, request: ModelRequest) -> PeerAnswer:
        """The peer's checked answer to ``request``.

        Raises:
            grpc.RpcError: The call failed (peer offline, refused, too slow).
            PayloadError: The answer is malformed.
            AuthenticationError: Its proof does not check: a revoked or foreign certificate,
                another peer's, or a wrong signature.
        """
        stream = self._fetch(request, timeout=self.timeout_s)
        header, payload = read_stream(stream, limit=self.limit)
        return self._checked(request, header, payload)

    def _checked(self, request: ModelRequest, header: StreamHeader, payload: bytes) -> PeerAnswer:
        if header.kind not in (Kind.MODEL, Kind.WAIT):
            raise PayloadError(f"expected a model or WAIT, got {header.kind.name}")
        proof = decode_message(PeerProof, header.protocol)
        signed = statement(
            request,
            caller=self.name,
            answerer=self.peer,
            kind=header.kind,
            version=header.round,
            final=proof.final,
            sha256=header.sha256,
        )
        self.verify(self.peer, proof.certificate, signed, proof.signature)
        return PeerAnswer(header.kind, header.round, proof.final, payload)

    def fetch_chain(
        self, request: ChainRequest, *, max_entries: int = MAX_CHAIN_ENTRIES, max_bytes: int = MAX_CHAIN_BYTES
    ) -> ChainAnswer:
        """The peer's checked answer to ``request``: at most ``max_entries`` entries of at most
        ``max_bytes`` together, its proof checked (the entries are checked by the copy that
        takes them in).

        Raises:
            grpc.RpcError: The call failed (peer offline, refused, too slow, no such chain).
            PayloadError: The answer is malformed or oversized.
            AuthenticationError: Its proof does not check (as ``fetch``).
        """
        raw = self._fetch_chain(request, timeout=self.timeout_s)
        if len(raw) > max_bytes + _PROOF_BYTES:
            raise PayloadError(f"a chain answer of {len(raw)} bytes, more than {max_bytes} and its proof")
        answer = decode_message(ChainAnswer, raw)
        size = sum(map(len, answer.entries))
        if len(answer.entries) > max_entries or size > max_bytes:
            raise PayloadError(
                f"a chain answer of {len(answer.entries)} entries and {size} bytes, more than "
                f"{max_entries} entries or {max_bytes} bytes"
            )
        signed = chain_statement(request, answer, caller=self.name, answerer=self.peer)
        self.verify(self.peer, answer.proof.certificate, signed, answer.proof.signature)
        return answer

    def close(self) -> None:
        """Closes the connection."""
        self._channel.close()


def call_failure(error: grpc.RpcError) -> str:
    """A failed call to a peer, for the log."""
    code = error.code()
    if code is grpc.StatusCode.UNAVAILABLE:
        return f"offline or unreachable, or its certificate refused in the TLS handshake ({error.details()})"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer within call_timeout_s"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"it refuses this site: {error.details()}"
    return f"{code.name}: {error.details()}"
