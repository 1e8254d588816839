"""The gRPC servicer that hands tasks to polling sites and receives their results."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from medfed.errors import UpdateRejected
from medfed.transport.board import DONE, PostedTask, RoundBoard
from medfed.transport.chunking import CHUNK_BYTES
from medfed.transport.errors import AuthenticationError, PayloadError, ServerBusy
from medfed.transport.limits import Admission, ServerLimits, Watchdog
from medfed.transport.protobuf import (
    Kind,
    Message,
    StreamHeader,
    SubmitOutcome,
    deserialize_chunk,
    federation_handler,
    parse_task_request,
    payload_stream,
    read_header,
    read_payload,
    reassembler,
    signal_stream,
    submit_reply,
)
from medfed.transport.tls import peer_certificate
from medfed.transport.wire import medfed_pb2 as pb
from medfed.transport.wire import medfed_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

SITE_METADATA_KEY = "medfed-site"
"""Call metadata naming the site; trusted only by servers started with ``--insecure``."""

Authenticator = Callable[[bytes], str]
"""Maps a peer's PEM certificate to its site name; raises ``AuthenticationError`` to refuse it."""

GRPC_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", 2 * CHUNK_BYTES),
    ("grpc.max_send_message_length", 2 * CHUNK_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]


class FederationServicer(pb_grpc.FederationServicer):
    """Serves a ``RoundBoard`` to sites, within ``ServerLimits`` per site.

    Args:
        board: The board the round loop posts to.
        sites: Names of the sites allowed to take part.
        job_json: The job description sent with every task.
        authenticate: Certificate check for mutual TLS; ``None`` trusts the claimed site name
            (``--insecure`` only).
        poll_s: How long a task request waits for work before answering ``WAIT``.
        limits: Calls, uploads, upload memory and silence allowed per site (default:
            ``ServerLimits()``).
    """

    def __init__(
        self,
        board: RoundBoard,
        *,
        sites: Iterable[str],
        job_json: str,
        authenticate: Authenticator | None,
        poll_s: float = 10.0,
        limits: ServerLimits | None = None,
    ) -> None:
        self.board = board
        self.sites = frozenset(sites)
        self.job_json = job_json
        self.authenticate = authenticate
        self.poll_s = poll_s
        self.limits = limits or ServerLimits()
        self.admission = Admission(self.limits)
        self.watchdog = Watchdog(self.limits.read_timeout_s)

    def GetTask(self, request: bytes, context: grpc.ServicerContext) -> Iterator[Message]:
        """Streams the caller's task or protocol step, or a payload-less ``WAIT``/``DONE``."""
        site = self._identify(context)
        with self._guard(site, context):
            try:
                parse_task_request(request)
            except PayloadError as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            stream = self._task_stream(site, self.board.task_for(site, self.poll_s))
            with self.watchdog.watch(functools.partial(self._cancel, site, context)) as renew:
                for message in stream:
                    yield message
                    renew()  # gRPC asks for the next message once the site took this one

    def SubmitResult(
        self, request_iterator: Iterator[bytes], context: grpc.ServicerContext
    ) -> pb.SubmitReply:
        """Reads one answer (a result, a step's reply or a decline), has the board decode, check
        and file it; answers whether it was accepted."""
        site = self._identify(context)
        with (
            self._guard(site, context),
            self.watchdog.watch(functools.partial(self._cancel, site, context)) as renew,
        ):
            messages = (_heard(renew, raw) for raw in request_iterator)
            try:
                header = read_header(messages)
                assembler = reassembler(header, self.board.update_limit(site))
                with self.admission.upload(site, header.total_bytes):
                    renew()
                    return self._file(site, header, read_payload(messages, assembler))
            except (PayloadError, UpdateRejected) as error:
                reason = error.reason if isinstance(error, UpdateRejected) else str(error)
                logger.warning("answer from site '%s' rejected: %s", site, reason)
                return submit_reply(SubmitOutcome(accepted=False, reason=reason))

    def _task_stream(self, site: str, posted: PostedTask | str | None) -> Iterator[Message]:
        if posted == DONE:
            return signal_stream(Kind.DONE)
        if posted is None or isinstance(posted, str):
            return signal_stream(Kind.WAIT)
        logger.info("round %d: sending %s to %s", posted.round, posted.step or "task", site)
        return payload_stream(
            Kind.STEP if posted.step else Kind.TASK,
            posted.payload,
            round=posted.round,
            task_id=posted.task_id,
            job_json=self.job_json,
            step=posted.step,
            protocol=posted.protocol,
        )

    def _file(self, site: str, header: StreamHeader, payload: bytes) -> pb.SubmitReply:
        if header.kind is Kind.DECLINE:
            self.board.decline(site, header.task_id, payload.decode("utf-8", "replace"))
        elif header.kind is Kind.RESULT:
            self.board.receive(site, header.task_id, payload)
            logger.info("round %d: accepted answer from %s", header.round, site)
        else:
            raise PayloadError(f"expected a result stream, got {header.kind.name}")
        return submit_reply(SubmitOutcome(accepted=True))

    @contextmanager
    def _guard(self, site: str, context: grpc.ServicerContext) -> Iterator[None]:
        """Holds one of ``site``'s call slots; refuses the call when the site has too many open,
        or asks for more upload room than it may have."""
        try:
            with self.admission.call(site):
                yield
        except ServerBusy as error:
            logger.warning("refused a call of site '%s': %s", site, error)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))

    def _cancel(self, site: str, context: grpc.ServicerContext) -> None:
        logger.warning(
            "site '%s' silent for %.0f s in a call; cancelling it", site, self.limits.read_timeout_s
        )
        context.cancel()

    def _identify(self, context: grpc.ServicerContext) -> str:
        if self.authenticate is None:
            site = dict(context.invocation_metadata()).get(SITE_METADATA_KEY, "")
        else:
            certificate = peer_certificate(context)
            try:
                if certificate is None:
                    raise AuthenticationError("no client certificate")
                site = self.authenticate(certificate)
            except AuthenticationError as error:
                logger.warning("refused a caller from %s: %s", context.peer(), error)
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
        if site not in self.sites:
            logger.warning("refused unknown site '%s' from %s", site, context.peer())
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"site '{site}' is not part of this job")
        return str(site)


def start_server(
    servicer: FederationServicer,
    *,
    address: str,
    credentials: grpc.ServerCredentials | None,
    gzip: bool = False,
) -> tuple[grpc.Server, int]:
    """Starts a gRPC server for ``servicer`` on ``address`` (``host:port``; port 0 picks one),
    with threads enough for every site to hold all the calls its limits allow.

    Args:
        credentials: TLS credentials; ``None`` listens in plain text.
        gzip: Compress outgoing messages with gzip.

    Returns:
        The running server and the port it listens on.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=servicer.limits.workers(len(servicer.sites))),
        options=GRPC_OPTIONS,
        compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
    )
    server.add_generic_rpc_handlers((federation_handler(servicer.GetTask, servicer.SubmitResult),))
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    server.start()
    return server, port


def _heard(renew: Callable[[], None], raw: bytes) -> Message:
    """``raw`` decoded, after telling the watchdog the caller is alive."""
    renew()
    return deserialize_chunk(raw)
