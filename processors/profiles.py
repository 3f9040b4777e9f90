"""Participant profiles end to end: publish one, read one, rebuild every one from the topic."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from processors.bootstrap import get_codec, make_client, pg_connect
from processors.kafka.producer import LeaderboardProducer, read_to_end
from projections.profiles import encode, profiles_key, profiles_version_key, read_profiles
from sinks import participants
from streams.errors import DecodeError
from streams.events import ParticipantProfileUpdated
from streams.settings import Settings

__all__ = [
    "RebuildReport",
    "latest_profiles",
    "publish_profile",
    "read_profile",
    "rebuild_profiles",
]

log = logging.getLogger(__name__)


def publish_profile(producer: LeaderboardProducer, ev: ParticipantProfileUpdated) -> None:
    """Send ``ev`` to the participants topic, keyed by the participant id (compaction key)."""
    settings = producer.settings
    producer.publish(settings.topic(settings.participants_topic), ev.participant_id, ev)


async def read_profile(settings: Settings, participant_id: str) -> dict[str, Any] | None:
    """The profile reads return for ``participant_id`` (from Redis), or None."""
    client = make_client(settings)
    try:
        found = await read_profiles(
            client, [participant_id], key=profiles_key(settings.topic_prefix)
        )
    finally:
        await client.aclose()
    return found.get(participant_id)


def latest_profiles(
    settings: Settings, *, timeout: float = 10.0
) -> tuple[dict[str, tuple[ParticipantProfileUpdated, int, int]], int]:
    """The latest profile of every participant on the participants topic (read to its end),
    with its partition and offset; and the number of records that did not decode."""
    codec = get_codec(settings)
    topic = settings.topic(settings.participants_topic)
    latest: dict[str, tuple[ParticipantProfileUpdated, int, int] | None] = {}
    bad = 0
    for msg in read_to_end(settings, topic, timeout=timeout):
        value, key = msg.value(), msg.key()
        if value is None:
            if key:
                latest[key.decode(errors="replace") if isinstance(key, bytes) else key] = None
            continue
        try:
            ev = codec.decode_as(value, ParticipantProfileUpdated)
        except DecodeError as exc:
            log.warning("skipping %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), exc)
            bad += 1
            continue
        latest[ev.participant_id] = (ev, int(msg.partition() or 0), int(msg.offset() or 0))
    return {pid: row for pid, row in latest.items() if row is not None}, bad


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild of the profiles did."""

    participants: int
    undecodable: int


async def rebuild_profiles(settings: Settings, *, read_timeout_s: float = 10.0) -> RebuildReport:
    """Replace the profiles in Redis and PostgreSQL by the latest record of each participant
    on the compacted participants topic.

    Redis gets the new hash under a temporary name, then one RENAME swaps it in (readers see
    the old or the new set, never a half-written one); PostgreSQL is replaced in one
    transaction. A profile set while the rebuild runs is applied by the sinks worker after it.
    """
    latest, bad = latest_profiles(settings, timeout=read_timeout_s)
    rows = list(latest.values())
    with pg_connect(settings) as conn, conn.transaction():
        conn.execute("DELETE FROM participants")
        participants.upsert_profiles(conn, rows)
    client = make_client(settings)
    try:
        key = profiles_key(settings.topic_prefix)
        staging = key + ":rebuild"
        pipe = client.pipeline(transaction=False)
        pipe.delete(staging)
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            pipe.hset(staging, mapping={ev.participant_id: encode(ev) for ev, _, _ in chunk})
        await pipe.execute()
        swap = client.pipeline(transaction=False)
        if rows:
            swap.rename(staging, key)
        else:
            swap.delete(key)
        swap.incr(profiles_version_key(key))  # reads showing profiles get a new validator
        await swap.execute()
    finally:
        await client.aclose()
    log.info("profiles rebuilt: %d participants (%d undecodable records)", len(rows), bad)
    return RebuildReport(len(rows), bad)


def profile_text(profile: dict[str, Any]) -> str:
    """A profile as one line of JSON (CLI output)."""
    return json.dumps(profile, ensure_ascii=False, sort_keys=True)
