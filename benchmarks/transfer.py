"""Model transfer over gRPC with mutual TLS on loopback, against a raw TCP socket copy.

For a 100 MB and a 1 GB float32 model (tensors of at most 64 MiB), in one process:

* ``tcp``: the model's safetensors bytes sent once through a plain loopback socket
  (``sendall`` into ``recv_into`` of a preallocated buffer): the ceiling.
* ``download``: ``SiteChannel.fetch`` of a posted task from a real ``FederationServicer``:
  4 MiB chunks over mTLS, reassembly, SHA-256 check, safetensors decoding.
* ``upload``: ``SiteChannel.submit`` of a result: safetensors encoding, chunks over mTLS,
  reassembly, SHA-256 check, decoding and ``validate_result`` (finite values, shapes) on the
  server.

Prints seconds, MB/s and each gRPC path's throughput as a fraction of the TCP copy's.
Run: ``python benchmarks/transfer.py``.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import torch

from medfed.provision import CertificateGate, ProjectConfig, load_client_kit, load_server_kit, provision
from medfed.transport.board import RoundBoard
from medfed.transport.client import Assignment, SiteChannel
from medfed.transport.payload import encode_task
from medfed.transport.server import FederationServicer, start_server
from medfed.transport.tls import server_credentials
from medfed.types import TrainResult, TrainTask, Weights

SIZES_MB = (100, 1000)
TENSOR_ELEMENTS = 16 * 1024 * 1024  # 64 MiB of float32 per tensor at most
SITE = "bench_site"


def make_model(megabytes: int) -> Weights:
    """Random float32 tensors totalling ``megabytes`` MB (10**6 bytes)."""
    remaining = megabytes * 10**6 // 4
    weights, index = {}, 0
    generator = torch.Generator().manual_seed(0)
    while remaining > 0:
        count = min(remaining, TENSOR_ELEMENTS)
        weights[f"layer{index}.weight"] = torch.randn(count, generator=generator)
        remaining -= count
        index += 1
    return weights


def tcp_copy_seconds(payload: bytes) -> float:
    """Seconds to push ``payload`` through a loopback TCP socket into a preallocated buffer."""
    listener = socket.create_server(("127.0.0.1", 0))
    buffer = bytearray(len(payload))
    done = threading.Event()

    def receive() -> None:
        connection, _ = listener.accept()
        with connection:
            view, received = memoryview(buffer), 0
            while received < len(buffer):
                received += connection.recv_into(view[received:], min(1 << 22, len(buffer) - received))
        done.set()

    thread = threading.Thread(target=receive)
    thread.start()
    start = time.perf_counter()
    with socket.create_connection(listener.getsockname()) as sender:
        sender.sendall(payload)
    done.wait()
    elapsed = time.perf_counter() - start
    thread.join()
    listener.close()
    return elapsed


def grpc_seconds(kits: Path, weights: Weights) -> tuple[float, float]:
    """``(download, upload)`` seconds of ``weights`` through a real mTLS servicer on loopback."""
    server_kit, site_kit = load_server_kit(kits / "server"), load_client_kit(kits / SITE)
    board = RoundBoard()
    servicer = FederationServicer(
        board,
        sites=[SITE],
        job_json="{}",
        authenticate=CertificateGate(server_kit.tls.ca_certificate, server_kit.crl),
    )
    server, port = start_server(
        servicer, address="127.0.0.1:0", credentials=server_credentials(server_kit.tls)
    )
    try:
        board.post(1, {SITE: TrainTask(round=1, weights=weights)})
        with SiteChannel(
            f"127.0.0.1:{port}", site=SITE, tls=site_kit.tls, server_name="localhost"
        ) as channel:
            start = time.perf_counter()
            assignment = channel.fetch()
            download = time.perf_counter() - start
            assert isinstance(assignment, Assignment)
            result = TrainResult(site=SITE, round=1, weights=assignment.task.weights, num_samples=1)
            task_id = assignment.task_id
            del assignment
            start = time.perf_counter()
            outcome = channel.submit(task_id, result)
            upload = time.perf_counter() - start
            assert outcome.accepted, outcome.reason
    finally:
        server.stop(grace=None)
    return download, upload


def main() -> None:
    """Runs both sizes and prints timings and ratios."""
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as directory:
        kits = Path(directory) / "kits"
        provision(ProjectConfig(name="bench", sites=[SITE]), kits)
        print(f"{'model':>8} {'path':>9} {'seconds':>8} {'MB/s':>8} {'vs tcp':>7}")
        for megabytes in SIZES_MB:
            weights = make_model(megabytes)
            payload = encode_task(TrainTask(round=1, weights=weights))
            tcp = tcp_copy_seconds(payload)
            del payload
            download, upload = grpc_seconds(kits, weights)
            for name, seconds in (("tcp", tcp), ("download", download), ("upload", upload)):
                rate = megabytes / seconds
                print(f"{megabytes:>6}MB {name:>9} {seconds:8.2f} {rate:8.0f} {tcp / seconds:7.2f}")
            del weights


if __name__ == "__main__":
    main()
