"""Scenario 2, baselines: a naive synchronous design and the raw Redis and Kafka limits.

Figures: the naive per-entry design (ZINCRBY + ZREVRANK + INSERT), pipelined ZADD ops/s, the raw
Kafka consume rate measured by the ingest runs, and the ratios of ingest end to end to each.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
import uuid

from benchmarks.figures import Figure, Report, Target
from benchmarks.harness import Say, retry
from benchmarks.params import Params
from benchmarks.scenarios.ingest import IngestRun
from benchmarks.stats import ratio_runs
from benchmarks.workload import match_stream
from processors.bootstrap import pg_connect, sync_redis
from streams.settings import Settings


def naive_once(settings: Settings, p: Params) -> float:
    """Per entry ZINCRBY + ZREVRANK + INSERT (autocommit), one client: entries/s."""
    tag = uuid.uuid4().hex[:8]
    key = f"bench:naive:{tag}"
    table = f"bench_naive_{tag}"
    r = sync_redis(url=settings.redis_url)
    rng = random.Random(2)
    entries = [
        (f"p{e.participant_id}", e.score)
        for m in match_stream(
            rng, ["naive"], p.players, p.naive_entries // p.entries_per_record + 1, 10, 0
        )
        for e in m.entries
    ][: p.naive_entries]
    with pg_connect(settings, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, participant_id text NOT NULL,"
            " score bigint NOT NULL, new_score double precision, new_rank bigint,"
            " at timestamptz NOT NULL DEFAULT now())"
        )
        try:
            t0 = time.perf_counter()
            for pid, score in entries:
                new = r.zincrby(key, score, pid)
                rank = r.zrevrank(key, pid)
                conn.execute(
                    f"INSERT INTO {table} (participant_id, score, new_score, new_rank)"
                    " VALUES (%s, %s, %s, %s)",
                    (pid, score, new, rank),
                )
            dt = time.perf_counter() - t0
        finally:
            conn.execute(f"DROP TABLE {table}")
            r.unlink(key)
            r.close()
    return len(entries) / dt


def zadd_limit_once(settings: Settings, p: Params) -> tuple[float, str]:
    """Raw pipelined ZADD ops/s: redis-benchmark if installed, else a redis-py pipeline."""
    r = sync_redis(url=settings.redis_url)
    key = f"bench:zadd:{uuid.uuid4().hex[:8]}"
    conn = r.connection_pool.get_connection("PING")
    host, port = conn.host, conn.port
    r.connection_pool.release(conn)
    try:
        tool = shutil.which("redis-benchmark")
        if tool:
            cmd = [
                tool,
                "-h",
                str(host),
                "-p",
                str(port),
                "-c",
                "8",
                "-P",
                "64",
                "-n",
                str(p.zadd_ops),
                "-r",
                str(p.big_board),
                "-q",
                "--csv",
                "ZADD",
                key,
                "__rand_int__",
                "m:__rand_int__",
            ]
            out = subprocess.run(  # noqa: S603 - redis-benchmark from PATH, fixed arguments
                cmd, capture_output=True, text=True, timeout=300, check=True
            )
            nums = re.findall(r'"([0-9]+(?:\.[0-9]+)?)"', out.stdout)
            if not nums:
                raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout[:200]}")
            return float(nums[0]), "redis-benchmark -c 8 -P 64, one member per ZADD"
        pipe = r.pipeline(transaction=False)
        t0 = time.perf_counter()
        for i in range(p.zadd_ops):
            pipe.zadd(key, {f"m:{i}": i})
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        return p.zadd_ops / (time.perf_counter() - t0), "redis-py pipeline of 1,000 ZADDs"
    finally:
        r.unlink(key)
        r.close()


def run_baselines(
    base: Settings, p: Params, report: Report, ingest_runs: list[IngestRun], say: Say
) -> None:
    """Measure the baselines and add them (and the ratios, given ingest runs) to ``report``."""
    say("[baselines] naive synchronous, ZADD limit")
    naive = [retry(lambda: naive_once(base, p), say) for _ in range(p.reps)]
    zadd = [retry(lambda: zadd_limit_once(base, p), say) for _ in range(p.reps)]
    report.add(
        Figure(
            "2 baseline",
            "naive synchronous (ZINCRBY+ZREVRANK+INSERT), entries/s",
            "entries/s",
            naive,
            f"{p.naive_entries:,} entries per run, one client, autocommit INSERT",
            key="baseline.naive_entries_per_s",
        )
    )
    report.add(
        Figure(
            "2 baseline",
            "limit: raw pipelined ZADD, ops/s",
            "ops/s",
            [z for z, _ in zadd],
            zadd[0][1] + f", {p.zadd_ops:,} ops",
            key="baseline.zadd_ops_per_s",
        )
    )
    if ingest_runs:
        report.add(
            Figure(
                "2 baseline",
                "limit: raw Kafka consume of the same records, entries/s",
                "entries/s",
                [x.kafka_raw_rate for x in ingest_runs],
                "confluent-kafka Consumer, no decoding; records \u00d7 10",
                key="baseline.kafka_raw_entries_per_s",
            )
        )
        report.add(
            Figure(
                "2 baseline",
                "Kafka consume + Avro decode (one Python thread), entries/s",
                "entries/s",
                [x.kafka_decode_rate for x in ingest_runs],
                "confluent-kafka Consumer + codec.decode_as",
                key="baseline.kafka_decode_entries_per_s",
            )
        )
        ours = [x.e2e_rate for x in ingest_runs]
        for label, slug, base_runs, tgt in (
            ("÷ naive", "naive", naive, Target(10, True, "≥ 10\u00d7")),
            ("÷ raw ZADD limit", "zadd", [z for z, _ in zadd], None),
            ("÷ raw Kafka consume", "kafka_raw", [x.kafka_raw_rate for x in ingest_runs], None),
        ):
            report.add(
                Figure(
                    "2 ratio",
                    f"ingest e2e {label}",
                    "\u00d7",
                    ratio_runs(ours, base_runs),
                    "median ours / median baseline; range from extreme pairs",
                    tgt,
                    ratio=True,
                    key=f"ratio.e2e_vs_{slug}",
                )
            )
        report.alias("ratio.naive", "ratio.e2e_vs_naive", Target(15, True, "≥ 15\u00d7"))
