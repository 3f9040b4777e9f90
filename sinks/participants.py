"""Participant profiles in PostgreSQL: each participant's latest profile, upserted in batches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from streams.events import ParticipantProfileUpdated

__all__ = ["ProfileRow", "delete_profiles", "get_profile", "upsert_profiles"]

#: One profile with the topic position it came from.
ProfileRow = tuple[ParticipantProfileUpdated, int, int]

_UPSERT = """
INSERT INTO participants (participant_id, display_name, avatar_url, country, metadata,
                          updated_by, updated_at, source_partition, source_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (participant_id) DO UPDATE SET
    display_name = EXCLUDED.display_name, avatar_url = EXCLUDED.avatar_url,
    country = EXCLUDED.country, metadata = EXCLUDED.metadata,
    updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at,
    source_partition = EXCLUDED.source_partition, source_offset = EXCLUDED.source_offset,
    recorded_at = now()
"""


def upsert_profiles(conn: psycopg.Connection[Any], rows: Sequence[ProfileRow]) -> int:
    """Store each profile (the caller keeps only the latest per participant); one pipelined
    batch in one transaction. Returns the number of rows written."""
    if not rows:
        return 0
    params = [
        (
            ev.participant_id,
            ev.display_name,
            ev.avatar_url,
            ev.country,
            Jsonb(dict(ev.metadata)),
            ev.updated_by,
            datetime.fromtimestamp(ev.updated_at / 1000, tz=UTC),
            partition,
            offset,
        )
        for ev, partition, offset in rows
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_UPSERT, params)
    return len(params)


def delete_profiles(conn: psycopg.Connection[Any], participant_ids: Sequence[str]) -> None:
    """Forget the profiles of ``participant_ids`` (tombstones on the compacted topic)."""
    if participant_ids:
        conn.execute(
            "DELETE FROM participants WHERE participant_id = ANY(%s)", (list(participant_ids),)
        )


def get_profile(conn: psycopg.Connection[Any], participant_id: str) -> dict[str, Any] | None:
    """The stored profile of ``participant_id`` with its topic position, or None."""
    row = conn.execute(
        "SELECT display_name, avatar_url, country, metadata, updated_by,"
        " (extract(epoch FROM updated_at) * 1000)::bigint, source_partition, source_offset"
        " FROM participants WHERE participant_id = %s",
        (participant_id,),
    ).fetchone()
    if row is None:
        return None
    name, url, country, meta, by, at, partition, offset = row
    return {
        "participant_id": participant_id,
        "display_name": name,
        "avatar_url": url,
        "country": country,
        "metadata": dict(meta or {}),
        "updated_by": by,
        "updated_at": int(at),
        "source_partition": partition,
        "source_offset": offset,
    }
