"""The gRPC servicer that hands tasks to polling sites and receives their results."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures

import grpc

from medfed.errors import UpdateRejected
from medfed.transport.board import DONE, RoundBoard
from medfed.transport.chunking import CHUNK_BYTES
from medfed.transport.errors import AuthenticationError, PayloadError
from medfed.transport.serde import (
    Kind,
    Message,
    SubmitOutcome,
    federation_handler,
    payload_stream,
    read_stream,
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

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 2 * CHUNK_BYTES),
    ("grpc.max_send_message_length", 2 * CHUNK_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]


class FederationServicer(pb_grpc.FederationServicer):
    """Serves a ``RoundBoard`` to sites.

    Args:
        board: The board the round loop posts to.
        sites: Names of the sites allowed to take part.
        job_json: The job description sent with every task.
        authenticate: Certificate check for mutual TLS; ``None`` trusts the claimed site name
            (``--insecure`` only).
        poll_s: How long a task request waits for work before answering ``WAIT``.
    """

    def __init__(
        self,
        board: RoundBoard,
        *,
        sites: Iterable[str],
        job_json: str,
        authenticate: Authenticator | None,
        poll_s: float = 10.0,
    ) -> None:
        self.board = board
        self.sites = frozenset(sites)
        self.job_json = job_json
        self.authenticate = authenticate
        self.poll_s = poll_s

    def GetTask(self, request: pb.TaskRequest, context: grpc.ServicerContext) -> Iterator[Message]:
        """Streams the caller's task or protocol step, or a payload-less ``WAIT``/``DONE``."""
        site = self._identify(context)
        offer = self.board.offer(site, self.poll_s)
        if offer == DONE:
            yield from signal_stream(Kind.DONE)
        elif offer is None or isinstance(offer, str):
            yield from signal_stream(Kind.WAIT)
        else:
            logger.info("round %d: sending %s to %s", offer.round, offer.step or "task", site)
            yield from payload_stream(
                Kind.STEP if offer.step else Kind.TASK,
                offer.payload,
                round=offer.round,
                task_id=offer.task_id,
                job_json=self.job_json,
                step=offer.step,
                protocol=offer.protocol,
            )

    def SubmitResult(self, request_iterator: Iterator[Message], context: grpc.ServicerContext) -> pb.SubmitReply:
        """Reads one answer (a result, a step's reply or a decline), has the board decode, check
        and file it; answers whether it was accepted."""
        site = self._identify(context)
        try:
            header, payload = read_stream(request_iterator, limit=self.board.update_limit(site))
            if header.kind is Kind.DECLINE:
                self.board.decline(site, header.task_id, payload.decode("utf-8", "replace"))
                return submit_reply(SubmitOutcome(accepted=True))
            if header.kind is not Kind.RESULT:
                raise PayloadError(f"expected a result stream, got {header.kind.name}")
            self.board.receive(site, header.task_id, payload)
        except (PayloadError, UpdateRejected) as error:
            reason = error.reason if isinstance(error, UpdateRejected) else str(error)
            logger.warning("answer from site '%s' rejected: %s", site, reason)
            return submit_reply(SubmitOutcome(accepted=False, reason=reason))
        logger.info("round %d: accepted answer from %s", header.round, site)
        return submit_reply(SubmitOutcome(accepted=True))

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
    max_workers: int = 32,
) -> tuple[grpc.Server, int]:
    """Starts a gRPC server for ``servicer`` on ``address`` (``host:port``; port 0 picks one).

    Args:
        credentials: TLS credentials; ``None`` listens in plain text.
        gzip: Compress outgoing messages with gzip.
        max_workers: Threads, hence concurrent calls (each polling site holds one).

    Returns:
        The running server and the port it listens on.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
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
