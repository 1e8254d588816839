"""A site's end of the wire: ask for work, receive a task or protocol step, send the answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from medfed.transport.errors import PayloadError
from medfed.transport.payload import decode_task, encode_result
from medfed.transport.protobuf import (
    FederationCalls,
    Kind,
    Message,
    SubmitOutcome,
    payload_stream,
    read_stream,
    submit_outcome,
    task_request,
)
from medfed.transport.server import GRPC_OPTIONS, SITE_METADATA_KEY
from medfed.transport.tls import TlsFiles, channel_credentials
from medfed.types import TrainResult, TrainTask

MAX_TASK_BYTES = 1 << 40
"""Largest task a site accepts (1 TiB): the server is trusted, the check guards memory only."""


@dataclass(frozen=True)
class FetchedTask:
    """A ``TrainTask`` a site fetched from the server, with the job it belongs to.

    Attributes:
        task_id: The posting's id, echoed by the answer.
        job_json: The job description.
        task: The task.
        protocol: A protocol message that goes with the task (e.g. a secure-aggregation
            invitation); empty in plain rounds.
    """

    task_id: str
    job_json: str
    task: TrainTask
    protocol: bytes = b""


@dataclass(frozen=True)
class FetchedStep:
    """A protocol step of the running round (e.g. ``"secagg/unmask"``) a site fetched from the
    server, with its message and the job it belongs to; answered like a task, by ``task_id``."""

    task_id: str
    round: int
    step: str
    message: bytes
    job_json: str = ""


class SiteChannel:
    """A connection from one site to the server.

    Args:
        target: ``host:port`` of the server.
        site: This site's name (sent as metadata; an mTLS server reads the certificate instead).
        tls: This site's certificate, key and the CA; ``None`` connects in plain text.
        server_name: Name expected in the server's certificate (default: the target's host).
        gzip: Compress outgoing messages.
        timeout_s: Deadline of one call, transfer included.
    """

    def __init__(
        self,
        target: str,
        *,
        site: str,
        tls: TlsFiles | None,
        server_name: str | None = None,
        gzip: bool = False,
        timeout_s: float = 3600.0,
    ) -> None:
        options = list(GRPC_OPTIONS)
        if server_name is not None:
            options.append(("grpc.ssl_target_name_override", server_name))
        compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=options, compression=compression)
        else:
            credentials = channel_credentials(tls)
            self._channel = grpc.secure_channel(target, credentials, options=options, compression=compression)
        self._calls = FederationCalls(self._channel)
        self._metadata = ((SITE_METADATA_KEY, site),)
        self.target, self.tls, self.server_name = target, tls, server_name
        self.timeout_s = timeout_s

    def fetch(self) -> FetchedTask | FetchedStep | Kind:
        """This site's task or protocol step for the running round, or ``Kind.WAIT`` or ``Kind.DONE``.

        Raises:
            grpc.RpcError: The call failed (server unreachable, certificate refused...).
            PayloadError: The server sent a malformed stream.
        """
        stream = self._calls.get_task(task_request(), metadata=self._metadata, timeout=self.timeout_s)
        header, payload = read_stream(stream, limit=MAX_TASK_BYTES)
        if header.kind is Kind.STEP:
            return FetchedStep(header.task_id, header.round, header.step, payload, header.job_json)
        if header.kind is not Kind.TASK:
            return header.kind
        task = decode_task(payload)
        if task.round != header.round:
            raise PayloadError(f"header round {header.round} differs from task round {task.round}")
        return FetchedTask(header.task_id, header.job_json, task, header.protocol)

    def submit(self, task_id: str, result: TrainResult) -> SubmitOutcome:
        """Sends ``result`` as the answer to the task ``task_id``; the server's verdict."""
        return self.answer(task_id, result.round, encode_result(result))

    def answer(self, task_id: str, round: int, payload: bytes) -> SubmitOutcome:
        """Sends ``payload`` (a result or a step's reply) as the answer to posting ``task_id``."""
        return self._send(payload_stream(Kind.RESULT, payload, round=round, task_id=task_id))

    def decline(self, task_id: str, round: int, reason: str) -> SubmitOutcome:
        """Tells the server this site will not answer posting ``task_id``, and why."""
        return self._send(payload_stream(Kind.DECLINE, reason.encode(), round=round, task_id=task_id))

    def _send(self, chunks: Iterator[Message]) -> SubmitOutcome:
        reply = self._calls.submit_result(chunks, metadata=self._metadata, timeout=self.timeout_s)
        return submit_outcome(reply)

    def close(self) -> None:
        """Closes the connection."""
        self._channel.close()

    def __enter__(self) -> SiteChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
