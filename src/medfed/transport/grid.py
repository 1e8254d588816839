"""``GrpcGrid``: the round loop's ``Grid`` for sites reached over gRPC, through a ``RoundBoard``.

Tasks and protocol steps are posted on the board, which the gRPC servicer serves to polling
sites; their answers are decoded and checked as they arrive (``Reply``) and gathered until every
asked site answered or the deadline passed. A site that misses the deadline has dropped out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medfed.orchestration.grid import Reply
from medfed.transport.board import Accept, RoundBoard
from medfed.transport.payload import decode_result, encode_result
from medfed.transport.protobuf import decode_message, encode_message
from medfed.types import TrainResult, TrainTask


class GrpcGrid:
    """Posts tasks and protocol steps on ``board`` and gathers the sites' answers.

    Args:
        board: The board shared with the running ``FederationServicer``.
        round_timeout_s: Deadline of a training task, in seconds; late sites are left out.
        step_timeout_s: Deadline of each protocol step, in seconds.
    """

    def __init__(self, board: RoundBoard, *, round_timeout_s: float, step_timeout_s: float) -> None:
        if round_timeout_s <= 0 or step_timeout_s <= 0:
            raise ValueError(f"timeouts must be positive, got {round_timeout_s} and {step_timeout_s}")
        self.board = board
        self.round_timeout_s, self.step_timeout_s = round_timeout_s, step_timeout_s

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Posts ``tasks`` for their sites and returns the valid results that arrived in time."""
        if not tasks:
            return []
        self.board.post(_round_of(tasks), tasks)
        return list(self.board.collect(self.round_timeout_s).values())

    def train_protected(
        self, tasks: Mapping[str, TrainTask], invitations: Mapping[str, object], reply: Reply
    ) -> dict[str, object]:
        """Posts ``tasks`` with each site's encoded invitation; returns the accepted uploads."""
        if not tasks:
            return {}
        protocol = {site: encode_payload(invitation) for site, invitation in invitations.items()}
        self.board.post(
            _round_of(tasks), tasks, protocol=protocol, accept=_accept(reply), reply_limit=reply.limit
        )
        return self.board.collect(self.round_timeout_s)

    def step(self, round: int, step: str, messages: Mapping[str, object], reply: Reply) -> dict[str, object]:
        """Posts one encoded message per site; returns the accepted replies by site."""
        if not messages:
            return {}
        encoded = {site: encode_payload(message) for site, message in messages.items()}
        self.board.post_step(
            round, step, encoded, accept=_accept(reply), reply_limit=reply.limit, in_round=True
        )
        return self.board.collect(self.step_timeout_s)


def encode_payload(message: object) -> bytes:
    """A protocol message (or a ``TrainResult``) as wire bytes."""
    return encode_result(message) if isinstance(message, TrainResult) else encode_message(message)


def decode_payload(kind: type, data: bytes, *, site: str) -> Any:
    """The ``kind`` message (or ``TrainResult`` of ``site``) that ``data`` encodes.

    Raises:
        PayloadError: ``data`` is not a valid ``kind``.
    """
    return decode_result(data, site=site) if kind is TrainResult else decode_message(kind, data)


def _accept(reply: Reply) -> Accept:
    def accept(site: str, payload: bytes) -> Any:
        value = decode_payload(reply.kind, payload, site=site)
        if reply.check is not None:
            reply.check(site, value)
        return value

    return accept


def _round_of(tasks: Mapping[str, TrainTask]) -> int:
    return next(iter(tasks.values())).round
