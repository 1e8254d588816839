"""Bytes each site sends and receives, measured as the safetensors payloads a deployment puts on
the wire (``medfed.transport.payload``), recorded as metric rows of split ``Split.TRAFFIC``.

Client-server rounds are metered where the grid delivers tasks and gathers results
(``MeteredGrid``: a site receives its task and sends its result); peer-to-peer rounds list their
transfers (``medfed.topology.peers.Transfer``). The protocol messages of secure and encrypted
rounds, and the version announcements of BrainTorrent (a few bytes per peer), are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from medfed.orchestration.grid import Grid, RelayGrid
from medfed.orchestration.metrics_log import MetricRow, Split
from medfed.topology.peers import Transfer
from medfed.transport.payload import encode_result, encode_task
from medfed.types import TrainResult, TrainTask

SENT, RECEIVED = "bytes_sent", "bytes_received"


class MeteredGrid(RelayGrid):
    """A grid that counts the task and result payloads of the plain rounds it carries.

    Args:
        inner: The grid that reaches the sites.
    """

    def __init__(self, inner: Grid) -> None:
        super().__init__(inner)
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        for site, task in tasks.items():
            self.received[site] += len(encode_task(task))
        results = self.inner.train(tasks)
        for result in results:
            self.sent[result.site] += len(encode_result(result))
        return results

    def take_rows(self, experiment: str, round: int) -> list[MetricRow]:
        """The bytes counted since the last call, as rows of ``round``; the counts restart."""
        rows = _rows(experiment, round, self.sent, self.received)
        self.sent, self.received = Counter(), Counter()
        return rows


def transfer_rows(experiment: str, round: int, transfers: Iterable[Transfer]) -> list[MetricRow]:
    """The bytes each site sent and received in ``transfers`` (a peer-to-peer round), as rows."""
    sent: Counter[str] = Counter()
    received: Counter[str] = Counter()
    for transfer in transfers:
        size = len(encode_result(transfer.model))
        sent[transfer.sender] += size
        received[transfer.receiver] += size
    return _rows(experiment, round, sent, received)


def _rows(experiment: str, round: int, sent: Counter[str], received: Counter[str]) -> list[MetricRow]:
    return [
        MetricRow(experiment, round, site, Split.TRAFFIC, metric, float(counts[site]))
        for metric, counts in ((SENT, sent), (RECEIVED, received))
        for site in sorted(set(sent) | set(received))
    ]
