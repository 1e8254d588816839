"""A burst of concurrent uploads against the server's memory: resident size before, at the peak
and 2 s after.

3 sites each open 10 uploads of 18 MiB at once (from a child process, so only the server's
memory is measured), against an in-process ``FederationServicer`` with the default
``ServerLimits``; once with ``return_freed_memory`` (what ``medfed server`` does), once without.
Run one mode per process: ``python benchmarks/upload_burst.py [--no-trim]``.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from collections import Counter

import grpc

from medfed.transport.board import RoundBoard
from medfed.transport.limits import return_freed_memory
from medfed.transport.protobuf import FederationCalls, Kind, payload_stream
from medfed.transport.server import SITE_METADATA_KEY, FederationServicer, start_server

SITES, PER_SITE, SIZE = "abc", 10, 18 * 1024 * 1024


def resident_mib() -> float:
    """This process's resident set size in MiB (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def burst(target: str) -> Counter[str]:
    """Sends all uploads at once; counts the outcomes (``OK`` or the refusal's status)."""
    with grpc.insecure_channel(target) as channel:
        calls, payload = FederationCalls(channel), b"\x01" * SIZE
        futures = [
            calls.submit_result.future(
                payload_stream(Kind.RESULT, payload, round=1, task_id="t"),
                metadata=((SITE_METADATA_KEY, site),),
                timeout=120,
            )
            for site in SITES
            for _ in range(PER_SITE)
        ]
        return Counter(
            "OK" if future.exception() is None else future.exception().code().name for future in futures
        )


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        print(dict(burst(sys.argv[2])))
        return
    trimmed = "--no-trim" not in sys.argv and return_freed_memory()
    servicer = FederationServicer(
        RoundBoard(max_update_bytes=SIZE + 1024), sites=list(SITES), job_json="{}", authenticate=None
    )
    server, port = start_server(servicer, address="127.0.0.1:0", credentials=None)
    gc.collect()
    before = peak = resident_mib()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, resident_mib())

    threading.Thread(target=sample, daemon=True).start()
    outcome = subprocess.run(
        [sys.executable, __file__, "--client", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    gc.collect()
    time.sleep(2)
    done.set()
    print(
        f"{len(SITES) * PER_SITE} uploads of {SIZE >> 20} MiB, trim {'on' if trimmed else 'off'}: {outcome.stdout.strip()}"
    )
    print(
        f"server RSS {before:.0f} MiB; peak +{peak - before:.0f} MiB; 2 s after +{resident_mib() - before:.0f} MiB"
    )
    server.stop(grace=0).wait(5)


if __name__ == "__main__":
    main()
