"""Participant profiles in Redis: one hash, participant → profile JSON, written and read in batches.

The profiles are not a board's: they sit outside every board's hash tag, in one hash
(``lb:{profiles}``, plus ``:<topic prefix>`` in a prefixed namespace), so one HMGET answers
the profiles of a whole page of rows. Reads attach them to rows after the board's atomic
read: a profile is not part of a board's version, so every write of the hash also bumps a
profiles version (``<hash>#ver``) that the validators (ETags) of reads showing profiles include.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from projections.redis_client import RedisClient
from streams.events import ParticipantProfileUpdated

__all__ = [
    "PROFILES_KEY",
    "attach_profiles",
    "profiles_key",
    "profiles_version",
    "profiles_version_key",
    "read_profiles",
    "write_profiles",
]

#: The hash of every participant's current profile (field: participant id, value: JSON).
PROFILES_KEY = "lb:{profiles}"


def profiles_key(topic_prefix: str = "") -> str:
    """The profile hash of the namespace ``topic_prefix`` (its own topics, its own profiles);
    the hash tag keeps a rebuild's staging key in the same cluster slot."""
    return f"{PROFILES_KEY}:{topic_prefix}" if topic_prefix else PROFILES_KEY


def profiles_version_key(key: str = PROFILES_KEY) -> str:
    """The counter bumped by every write of the profile hash ``key`` (same hash tag; ``#`` is
    not a topic-name character, so no prefix's hash has this name)."""
    return f"{key}#ver"


async def profiles_version(client: RedisClient, *, key: str = PROFILES_KEY) -> int:
    """How many writes the profile hash ``key`` has had (0: none): it moves whenever a profile
    a read may show changes. Read it before the profiles, so a validator is never newer."""
    return int(await client.get(profiles_version_key(key)) or 0)


def encode(ev: ParticipantProfileUpdated) -> str:
    """The stored form of one profile: compact JSON of the set fields, keys sorted."""
    return json.dumps(ev.profile(), separators=(",", ":"), sort_keys=True)


async def write_profiles(
    client: RedisClient,
    profiles: Iterable[ParticipantProfileUpdated],
    deleted: Iterable[str] = (),
    *,
    key: str = PROFILES_KEY,
) -> int:
    """Set the given profiles and drop the ``deleted`` ones in one round trip (one HSET of
    every profile, one HDEL, one INCR of the profiles version). The caller passes only the
    latest profile per participant."""
    mapping: dict[Any, Any] = {ev.participant_id: encode(ev) for ev in profiles}
    gone = [pid for pid in deleted if pid not in mapping]
    if not mapping and not gone:
        return 0
    pipe = client.pipeline(transaction=False)
    if gone:
        pipe.hdel(key, *gone)
    if mapping:
        pipe.hset(key, mapping=mapping)
    pipe.incr(profiles_version_key(key))
    await pipe.execute()
    return len(mapping) + len(gone)


async def read_profiles(
    client: RedisClient, pids: Sequence[str], *, key: str = PROFILES_KEY
) -> dict[str, dict[str, Any]]:
    """The profiles of ``pids`` that are set (one HMGET)."""
    unique = list(dict.fromkeys(pids))
    if not unique:
        return {}
    raw: list[Any] = await client.hmget(key, unique)
    return {pid: json.loads(value) for pid, value in zip(unique, raw, strict=True) if value}


async def attach_profiles(
    client: RedisClient,
    rows: Sequence[dict[str, Any]],
    *,
    key: str = PROFILES_KEY,
    field: str = "participant_id",
) -> None:
    """Add ``profile`` to each row whose participant (``row[field]``) has one, in place."""
    if not rows:
        return
    found = await read_profiles(client, [r[field] for r in rows if field in r], key=key)
    for row in rows:
        profile = found.get(row.get(field, ""))
        if profile:
            row["profile"] = profile
