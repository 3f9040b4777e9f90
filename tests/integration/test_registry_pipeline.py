"""A newer producer's schema, unknown to every worker, resolved through the real Schema Registry.

The producer registers MatchResultSubmitted with a new optional field and sends records in both
formats (Confluent id and single-object fingerprint); the projector ranks them, the sinks audit
them and ``replay --verify`` (from Kafka and from PostgreSQL) equals live.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from infra import stack as local_stack
from infra.stack.registry import SchemaRegistry
from processors.kafka.producer import LeaderboardProducer, read_to_end
from processors.replay import replay_board
from streams.events import LeaderboardConfigured, MatchResultSubmitted, Operator, ScoreEntry
from tests.integration.conftest import Pipeline, wait_until
from tests.integration.test_moderation import rows
from tests.integration.test_schema_registry import PLATFORM, evolved_schema, write_evolved

pytestmark = pytest.mark.integration


def audited(p: Pipeline, board: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(p.settings.postgres_dsn) as conn:
        found = conn.execute(
            "SELECT event_id, participant_id, submitted_score FROM score_audit"
            " WHERE leaderboard_id = %s ORDER BY version, participant_id",
            [board],
        ).fetchall()
    return [(str(e), str(pid), int(s)) for e, pid, s in found]


def test_evolved_writer_is_projected_audited_and_replayed_through_the_registry(
    pipeline: Pipeline,
) -> None:
    url = local_stack_registry(pipeline)
    pipeline.env["LEADERBOARD_SCHEMA_REGISTRY_URL"] = url
    pipeline.settings = pipeline.settings.model_copy(update={"schema_registry_url": url})
    board = f"evo{uuid.uuid4().hex[:6]}"
    cfg = LeaderboardConfigured(board, operator=Operator.INCR)
    with LeaderboardProducer(pipeline.settings) as prod:
        prod.configure(cfg)
        prod.flush()
    pipeline.start_worker()
    pipeline.start_worker("sinks")

    client = SchemaRegistryClient.new_client({"url": url})
    schema = evolved_schema(PLATFORM)
    topic = pipeline.settings.topic("scores")
    sent = []
    with LeaderboardProducer(pipeline.settings) as prod:
        for i in range(6):
            ev = MatchResultSubmitted(
                f"{board}-e{i}",
                f"m{i}",
                board,
                int(time.time() * 1000),
                (ScoreEntry("alice", 10 + i), ScoreEntry(f"p{i % 3}", 5 * i)),
            )
            confluent, single = write_evolved(client, schema, {**ev.to_avro(), "platform": "pc"})
            prod.publish_raw(topic, board, confluent if i % 2 else single)
            sent.append(ev)
        # and one record of today's schema, through the project's own codec
        today = MatchResultSubmitted(
            f"{board}-now", "m-now", board, int(time.time() * 1000), (ScoreEntry("bob", 7),)
        )
        prod.submit(today)
        prod.flush()

    expected = {"alice": sum(10 + i for i in range(6)), "p0": 15, "p1": 25, "p2": 35, "bob": 7}
    wait_until(lambda: {pid: s for _, pid, s in rows(pipeline, board)[1]} == expected, 90)
    version, standings = rows(pipeline, board)
    assert [pid for _, pid, _ in standings] == ["alice", "p2", "p1", "p0", "bob"]
    audit = wait_until(lambda: (a := audited(pipeline, board)) and len(a) == 13 and a, 90)
    assert {e for e, _, _ in audit} == {ev.event_id for ev in [*sent, today]}
    assert not [m for m in read_to_end(pipeline.settings, pipeline.settings.dlq("scores"))], (
        "nothing dead-lettered"
    )

    for source in ("kafka", "postgres"):
        report = asyncio.run(replay_board(pipeline.settings, cfg, source=source, verify=True))
        assert report.diffs and report.verified, (source, report.diffs)
        assert report.version == version, source


def local_stack_registry(p: Pipeline) -> str:
    """The Confluent API of our Apicurio Registry (started if needed; idempotent)."""
    local_stack.up(p.settings, setup=False, schema_registry=True)
    return SchemaRegistry(p.settings).url()
