"""``replay --verify`` equals live on boards that went through profiles, moderation (void,
remove, ban) and a tournament close, replayed from Kafka and from PostgreSQL.

A tournament (a window that ends) and a board closed by its operator both get scores, profiles
for their participants, a voided match, a removed participant and a ban (with a refused match
after it); a third tournament gets the same scores without moderation. Clock marks then end
every board's period (final standings in PostgreSQL). Replayed from the log, each board equals
live byte for byte; from the audit table too, except that a moderated board is refused with
the reason (the audit keeps a moderation's outcome, not its command: replay it from Kafka).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg
import pytest

from processors.bootstrap import make_client
from processors.kafka.producer import LeaderboardProducer
from processors.replay import replay_board
from projections.profiles import profiles_key, read_profiles
from streams.errors import LeaderboardError
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    LeaderboardModerated,
    ModerationAction,
    Operator,
    ParticipantProfileUpdated,
)
from tests.integration.conftest import Pipeline, wait_until
from tests.integration.test_moderation import MATCHES, rows, submit

pytestmark = pytest.mark.integration

GRACE = 1_500
HOUR = 3_600_000


def moderation(board: str, action: ModerationAction, **target: str) -> LeaderboardModerated:
    return LeaderboardModerated(
        uuid.uuid4().hex, board, action, "ops-1", "test", int(time.time() * 1000), **target
    )


def closed_periods(p: Pipeline, board: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(p.settings.postgres_dsn) as conn:
        return conn.execute(
            "SELECT period, participant_count FROM closed_periods WHERE leaderboard_id = %s",
            [board],
        ).fetchall()


def test_replay_verifies_after_profiles_moderation_and_closes(pipeline: Pipeline) -> None:
    p = pipeline
    p.env.update({"LEADERBOARD_PERIOD_GRACE_MS": str(GRACE), "LEADERBOARD_CLOCK_MARK_S": "0.3"})
    p.settings = p.settings.model_copy(update={"period_grace_ms": GRACE})
    tag = f"rv{uuid.uuid4().hex[:6]}"
    # workers first (a slow start must not eat the tournament's time): a warm-up board shows
    # the projector applies, then the boards under test get a window of 15 s from now
    warm = LeaderboardConfigured(f"{tag}-warm")
    with LeaderboardProducer(p.settings) as prod:
        prod.configure(warm)
        prod.flush()
    p.start_worker()
    p.start_worker("sinks")
    with LeaderboardProducer(p.settings) as prod:
        submit(prod, warm.leaderboard_id, f"{tag}-warm", ("w", 1))
    wait_until(lambda: rows(p, warm.leaderboard_id)[0] == 1, 90)
    end = int(time.time() * 1000) + 15_000
    cfgs = [
        LeaderboardConfigured(
            f"{tag}-cup",
            operator=Operator.INCR,
            retain_entries=True,
            starts_at=end - HOUR,
            ends_at=end,
        ),
        LeaderboardConfigured(
            f"{tag}-plain",
            operator=Operator.INCR,
            retain_entries=True,
            starts_at=end - HOUR,
            ends_at=end,
        ),
        LeaderboardConfigured(
            f"{tag}-shut",
            operator=Operator.INCR,
            retain_entries=True,
            status=BoardStatus.CLOSED,
            closed_at=end,
        ),
    ]
    with LeaderboardProducer(p.settings) as prod:
        for cfg in cfgs:
            prod.configure(cfg)
        for pid in "abcd":  # profiles, on the participants topic
            ev = ParticipantProfileUpdated(pid, int(time.time() * 1000), display_name=pid.upper())
            prod.publish(p.settings.topic(p.settings.participants_topic), pid, ev)
        prod.flush()
    time.sleep(1)  # the projector's configuration view catches up
    with LeaderboardProducer(p.settings) as prod:
        for cfg in cfgs:
            for eid, entries in MATCHES:
                submit(prod, cfg.leaderboard_id, f"{cfg.leaderboard_id}-{eid}", *entries)
    for cfg in cfgs:
        wait_until(lambda b=cfg.leaderboard_id: rows(p, b)[0] == 9, 60)
    moderated = [cfgs[0], cfgs[2]]
    with LeaderboardProducer(p.settings) as prod:
        for cfg in moderated:
            board = cfg.leaderboard_id
            prod.moderate(
                moderation(board, ModerationAction.MATCH_VOIDED, voided_event_id=f"{board}-m2")
            )
            prod.moderate(
                moderation(board, ModerationAction.PARTICIPANT_REMOVED, participant_id="b")
            )
            prod.moderate(
                moderation(board, ModerationAction.PARTICIPANT_BANNED, participant_id="c")
            )
            submit(prod, board, f"{board}-m4", ("c", 500), ("a", 1))  # refused whole: c banned
            submit(prod, board, f"{board}-m5", ("a", 1))
        prod.flush()
    for cfg in moderated:
        wait_until(lambda b=cfg.leaderboard_id: [r[1] for r in rows(p, b)[1]] == ["a", "c"], 60)
    assert time.time() * 1000 < end, "the moderation came after the close: a slow machine"

    # the window's end and the close pass; marks end both boards' periods
    for cfg in cfgs:
        wait_until(lambda b=cfg.leaderboard_id: closed_periods(p, b), 60)
    profiles = asyncio.run(_profiles(p))
    assert profiles == {pid: {"display_name": pid.upper()} for pid in "abcd"}

    for cfg in cfgs:
        version = rows(p, cfg.leaderboard_id)[0]
        sources = ("kafka",) if cfg in moderated else ("kafka", "postgres")
        for source in sources:
            report = asyncio.run(replay_board(p.settings, cfg, source=source, verify=True))
            assert report.diffs and report.verified, (cfg.leaderboard_id, source, report.diffs)
            assert report.version == version, (cfg.leaderboard_id, source)
    for cfg in moderated:
        with pytest.raises(
            LeaderboardError, match=r"was moderated .* replay it with --source kafka"
        ):
            asyncio.run(replay_board(p.settings, cfg, source="postgres", verify=True))


async def _profiles(p: Pipeline) -> dict[str, dict[str, Any]]:
    client = make_client(p.settings)
    try:
        return await read_profiles(client, list("abcd"), key=profiles_key(p.settings.topic_prefix))
    finally:
        await client.aclose()
