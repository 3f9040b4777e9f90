"""What a synchronous replica acknowledgement would cost per applied batch on the HA group.

Usage: .venv/bin/python scripts/measure_redis_wait.py [--rounds N]  (needs `stack up --ha`)

Times, on the primary the Sentinels name, N rounds of a small pipelined write the size of one
batch's applied mark (HSET), alone and followed by ``WAIT 1 1000`` (one replica must have it),
and prints the median and 99th percentile of each in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from processors.bootstrap import sync_redis
from streams.settings import Settings


def _time(rounds: int, step: Callable[[], None]) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        step()
        out.append((time.perf_counter() - t) * 1e6)
    return sorted(out)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    settings = Settings(redis_ha=True)
    r = sync_redis(settings)
    key = "lb:measure:wait"
    mapping = {str(p): "123456" for p in range(6)}
    r.hset(key, mapping=mapping)

    def write() -> None:
        r.hset(key, mapping=mapping)

    def write_wait() -> None:
        r.hset(key, mapping=mapping)
        acked = r.wait(1, 1000)
        assert acked >= 1, "no replica acknowledged within 1 s"

    steps: list[tuple[str, Callable[[], None]]] = [("write", write), ("write+WAIT", write_wait)]
    for name, step in steps:
        times = _time(args.rounds, step)
        p50 = statistics.median(times)
        p99 = times[int(len(times) * 0.99) - 1]
        print(f"{name:<11} p50 {p50:7.0f} us   p99 {p99:7.0f} us   ({args.rounds} rounds)")
    r.delete(key)


if __name__ == "__main__":
    main()
