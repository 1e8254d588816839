"""``GrpcConnector``: the round loop's ``SiteConnector`` for sites reached over gRPC."""

from __future__ import annotations

from collections.abc import Mapping

from medfed.transport.board import RoundBoard
from medfed.types import TrainResult, TrainTask


class GrpcConnector:
    """Posts each round's tasks on a ``RoundBoard`` that a gRPC server serves to polling sites.

    Args:
        board: The board shared with the running ``FederationServicer``.
        round_timeout_s: Deadline of a round in seconds; late sites are left out of it.
    """

    def __init__(self, board: RoundBoard, *, round_timeout_s: float) -> None:
        if round_timeout_s <= 0:
            raise ValueError(f"round_timeout_s must be positive, got {round_timeout_s}")
        self.board = board
        self.round_timeout_s = round_timeout_s

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Offers ``tasks`` to their sites and returns the valid results that arrived in time."""
        if not tasks:
            return []
        round = next(iter(tasks.values())).round
        self.board.post(round, tasks)
        return list(self.board.collect(self.round_timeout_s).values())
