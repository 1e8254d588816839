"""Aggregation benchmarks on the CPU; prints ratios against their targets.

b1: throughput of ``weighted_mean`` over 20 updates of a ~25M-parameter float32 model, as a
    fraction of plain ``dst.copy_(src)`` memory copies of the same bytes, the same number of times.
b2: peak memory while averaging 20 updates produced lazily by a generator, in units of one
    model. Measured in a fresh subprocess from the kernel's peak resident set size (``VmHWM``,
    reset through ``/proc/self/clear_refs``) with glibc's mmap threshold pinned so that freed
    tensors go back to the system at once.

Run: ``python benchmarks/aggregation.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import torch

from medfed.aggregation import weighted_mean
from medfed.types import Weights

NUM_UPDATES = 20
LAYER_SHAPES = [(1024, 1024)] * 24 + [(1024, 448)]  # 25,624,576 float32 parameters (~98 MiB)
REPEATS = 3
_CHILD_FLAG = "--peak-memory-child"


def make_model(seed: int) -> Weights:
    """A synthetic model of ``LAYER_SHAPES`` float32 tensors plus an integer buffer."""
    generator = torch.Generator().manual_seed(seed)
    weights = {
        f"layer{i}.weight": torch.randn(shape, generator=generator) for i, shape in enumerate(LAYER_SHAPES)
    }
    weights["bn.num_batches_tracked"] = torch.tensor(seed)
    return weights


def model_bytes(weights: Weights) -> int:
    """Bytes held by the tensors of ``weights``."""
    return sum(t.numel() * t.element_size() for t in weights.values())


def best_time(run: Callable[[], object]) -> float:
    """The fastest of ``REPEATS`` wall-clock timings of ``run()``, in seconds."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput_ratio() -> float:
    """(b1) memcpy time / ``weighted_mean`` time for ``NUM_UPDATES`` updates of the same bytes."""
    models = [make_model(0), make_model(1)]  # two distinct updates, cycled
    updates = [(models[i % 2], float(i + 1)) for i in range(NUM_UPDATES)]
    destination = {k: torch.empty_like(t) for k, t in models[0].items()}

    def copies() -> None:
        for i in range(NUM_UPDATES):
            for key, tensor in models[i % 2].items():
                destination[key].copy_(tensor)

    aggregate_s = best_time(lambda: weighted_mean(updates))
    return best_time(copies) / aggregate_s


def _lazy_updates(count: int) -> Iterator[tuple[Weights, float]]:
    for i in range(count):
        yield make_model(i), 1.0


def _peak_memory_child() -> None:
    """Prints the peak RSS growth while averaging lazily generated updates, in bytes."""
    one = model_bytes(make_model(0))  # warms up the allocator and torch's kernels
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
    mean = weighted_mean(_lazy_updates(NUM_UPDATES))
    peak = _status_kib("VmHWM")
    del mean
    print((peak - baseline) * 1024 / one)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_models() -> float:
    """(b2) Peak memory of averaging ``NUM_UPDATES`` lazy updates, in models, in a subprocess."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    child = subprocess.run(
        [sys.executable, __file__, _CHILD_FLAG], env=env, check=True, capture_output=True, text=True
    )
    return float(child.stdout.strip().splitlines()[-1])


def main() -> None:
    """Runs both benchmarks and prints each ratio next to its target."""
    params = sum(torch.Size(s).numel() for s in LAYER_SHAPES)
    threads = torch.get_num_threads()
    print(f"model: {params / 1e6:.1f}M float32 params, {NUM_UPDATES} updates, {threads} threads")
    print(f"aggregation throughput / memcpy: {throughput_ratio():.2f} (target >= 0.5)")
    print(f"peak memory: {peak_memory_models():.1f} models (target: ~2, not {NUM_UPDATES})")


if __name__ == "__main__":
    if sys.argv[1:] == [_CHILD_FLAG]:
        _peak_memory_child()
    else:
        main()
