"""Secure and encrypted aggregation against plain aggregation, on the CPU; prints ratios.

For ``--sites`` sites (10) and ``--params`` float32 parameters (1M), measured in one run:
  * time of the whole secure-aggregation round (Bonawitz et al. 2017: every site's four
    rounds played one after another, plus the server), of the server's part alone, and of one
    site's part, each / the time of plain ``weighted_mean`` of the same updates;
  * the same for CKKS (TenSEAL): all sites encrypting, the server adding, one site decrypting;
  * bytes each site uploads / plain float32 bytes (payload bytes of the messages, before any
    transport framing);
  * the precision of each against the plain float64 mean.
With ``--ckks-params`` smaller than ``--params``, CKKS runs on that size and its times and
bytes are extrapolated linearly (it scales per 4096-value ciphertext); the output says so.

Run: ``python benchmarks/secure_aggregation.py [--sites 10] [--params 1000000]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TypeVar

import numpy as np
import torch

from medfed.aggregation import weighted_mean
from medfed.privacy import ckks
from medfed.privacy.secagg import FixedPoint, SecAggClient, SecAggServer, new_config, threshold_for
from medfed.privacy.secagg.vectors import flatten, layout_of
from medfed.types import Weights

T = TypeVar("T")
PLAIN_REPEATS = 20  # plain aggregation takes milliseconds: keep the best of many


def make_updates(sites: int, params: int) -> list[tuple[Weights, float]]:
    """``sites`` synthetic float32 models of ``params`` values with sample counts 10, 20, ..."""
    generator = torch.Generator().manual_seed(0)
    return [({"w": torch.randn(params, generator=generator) * 0.1}, 10.0 * (i + 1)) for i in range(sites)]


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """``run()``'s result and its wall-clock seconds."""
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def payload_bytes(message: object) -> int:
    """Bytes in the ``bytes`` fields of a message (recursing into tuples of messages)."""
    total = 0
    for field in fields(message):  # type: ignore[arg-type]
        value = getattr(message, field.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, bytes):
                total += len(item)
            elif hasattr(item, "__dataclass_fields__"):
                total += payload_bytes(item)
    return total


@dataclass(frozen=True)
class Measurement:
    """One protected aggregation: seconds per role, upload bytes per site, and the mean."""

    total_s: float
    server_s: float
    site_s: float
    upload_bytes: float
    mean: np.ndarray


def secure_round(updates: list[tuple[Weights, float]], code: FixedPoint) -> Measurement:
    """One secure weighted mean with per-role timers; returns times, bytes and the mean."""
    layout = layout_of(updates[0][0])
    inputs = [np.append(flatten(w, layout) * n, n) for w, n in updates]
    config = new_config(
        client_ids=range(1, len(inputs) + 1),
        threshold=threshold_for(len(inputs), 0.5),
        vector_length=len(inputs[0]),
        code=code,
    )
    server = SecAggServer(config)
    clients = [SecAggClient(i + 1, config) for i in range(len(inputs))]
    client_s, server_s, sent = 0.0, 0.0, 0

    def on_clients(step: Callable[[int, SecAggClient], T]) -> list[T]:
        nonlocal client_s, sent
        out, seconds = timed(lambda: [step(i, c) for i, c in enumerate(clients)])
        client_s += seconds
        sent += payload_bytes(out[0])
        return out

    def on_server(step: Callable[[], T]) -> T:
        nonlocal server_s
        out, seconds = timed(step)
        server_s += seconds
        return out

    adverts = on_clients(lambda i, c: c.advertise_keys())
    directory = on_server(lambda: server.collect_keys(adverts))
    shares = on_clients(lambda i, c: c.share_keys(directory))
    deliveries = on_server(lambda: server.route_shares(shares))
    masked = on_clients(lambda i, c: c.masked_input(deliveries[i + 1], inputs[i]))
    request = on_server(lambda: server.collect_masked(masked))
    responses = on_clients(lambda i, c: c.unmask(request))
    total = on_server(lambda: server.unmask(responses))
    return Measurement(
        total_s=client_s + server_s,
        server_s=server_s,
        site_s=client_s / len(inputs),
        upload_bytes=float(sent),
        mean=total[:-1] / total[-1],
    )


def ckks_round(updates: list[tuple[Weights, float]]) -> Measurement:
    """One CKKS weighted mean with per-role timers; returns times, bytes and the mean."""
    layout = layout_of(updates[0][0])
    site_context = ckks.create_context()
    server_context = ckks.deserialize_context(ckks.serialize_context(site_context, include_secret_key=False))
    uploads, encrypt_s = timed(
        lambda: [
            ckks.encrypt_weighted_update(site_context, w, n, layout, site=f"site{i}")
            for i, (w, n) in enumerate(updates)
        ]
    )
    total, server_s = timed(lambda: ckks.add_encrypted(server_context, uploads))
    (mean, _), decrypt_s = timed(lambda: ckks.decrypt_weighted_mean(site_context, total, layout))
    return Measurement(
        total_s=encrypt_s + server_s + decrypt_s,
        server_s=server_s,
        site_s=encrypt_s / len(updates) + decrypt_s,
        upload_bytes=float(uploads[0].nbytes),
        mean=mean["w"].numpy(),
    )


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """``max |got - want| / max |want|``."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark and prints the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--ckks-params", type=int, default=None)
    args = parser.parse_args(argv)
    ckks_params = args.ckks_params or args.params
    torch.set_num_threads(1)  # the protocols run single-threaded too; compare like with like

    updates = make_updates(args.sites, args.params)
    plain, plain_s = timed(lambda: weighted_mean(updates))
    plain_s = min(plain_s, *(timed(lambda: weighted_mean(updates))[1] for _ in range(PLAIN_REPEATS)))
    reference = plain["w"].double().numpy()
    plain_bytes = 4 * args.params
    print(
        f"{args.sites} sites x {args.params:,} float32 parameters; plain weighted_mean "
        f"{plain_s * 1e3:.1f} ms, {plain_bytes:,} B uploaded per site"
    )

    secure = secure_round(updates, FixedPoint())
    _report("secure aggregation", secure, plain_s, plain_bytes, reference, scale=1.0)

    small = updates if ckks_params == args.params else make_updates(args.sites, ckks_params)
    small_reference = weighted_mean(small)["w"].double().numpy()
    encrypted = ckks_round(small)
    scale = args.params / ckks_params
    if scale != 1.0:
        print(
            f"CKKS measured on {ckks_params:,} parameters, times and bytes extrapolated "
            f"linearly x{scale:.1f} to {args.params:,}"
        )
    _report("CKKS (TenSEAL)", encrypted, plain_s, plain_bytes, small_reference, scale=scale)


def _report(
    name: str,
    run: Measurement,
    plain_s: float,
    plain_bytes: int,
    reference: np.ndarray,
    *,
    scale: float,
) -> None:
    print(
        f"{name}: time/plain {run.total_s * scale / plain_s:.0f}x "
        f"(all sites + server {run.total_s * scale:.2f} s; server alone "
        f"{run.server_s * scale / plain_s:.1f}x; one site {run.site_s * scale:.2f} s), "
        f"upload bytes/plain {run.upload_bytes * scale / plain_bytes:.2f}x "
        f"({run.upload_bytes * scale:,.0f} B), max relative error "
        f"{relative_error(run.mean, reference):.1e}"
    )


if __name__ == "__main__":
    main()
