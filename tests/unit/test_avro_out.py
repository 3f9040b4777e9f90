"""The direct encoders of the projector's outputs write fastavro's bytes, for any record."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import avro_out
from streams.codec import SCHEMA_DIR, SchemaStore, SingleObjectCodec, default_store
from streams.errors import LeaderboardError
from streams.events import (
    NotificationKind,
    ParticipantNotified,
    ParticipantsNotified,
    RankChange,
    RankChanged,
)

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# a few shared strings, so that the encoders' reuse of consecutive bytes is exercised
SHARED = st.sampled_from(["all", "2026-11", "2026-W48", "best", "e-1", "ü-€-𝄞", ""])
# both sides of the varint table (zig-zag values below 2^14) and of every varint length
BOUNDS = st.sampled_from(
    [0, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 2**20 - 1, 2**20, -(2**20), -(2**20) - 1]
)
EXTREMES = st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63)])
SMALL = st.integers(-20_000, 20_000) | BOUNDS | EXTREMES
LONG = st.integers(-(2**63), 2**63 - 1) | BOUNDS | EXTREMES
INT = st.integers(-(2**31), 2**31 - 1) | BOUNDS


def _fastavro(event: RankChanged | ParticipantsNotified) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, default_store().reader(event.SCHEMA).parsed, event.to_avro())
    return buf.getvalue()


changes = st.builds(
    RankChange,
    version=LONG,
    period=SHARED | TEXT,
    participant_id=TEXT,
    old_rank=st.none() | SMALL | LONG,
    new_rank=SMALL | LONG,
    old_score=st.none() | SMALL | LONG,
    new_score=LONG,
    submitted_score=SMALL | LONG,
    operator=SHARED,
    event_id=SHARED | TEXT,
    match_id=SHARED | TEXT,
    entry_index=INT,
    occurred_at=st.sampled_from([0, 1_764_000_000_000]) | LONG,
    source_partition=INT,
    source_offset=LONG,
    claimed_at=st.none() | LONG,
)


@settings(max_examples=300, deadline=None)
@given(
    board=TEXT,
    vfrom=LONG,
    vto=LONG,
    items=st.lists(changes, max_size=12),
    ended=st.lists(SHARED | TEXT, max_size=3),
)
def test_rank_changed_bytes_are_fastavros(
    board: str, vfrom: int, vto: int, items: list[RankChange], ended: list[str]
) -> None:
    event = RankChanged(board, vfrom, vto, tuple(items), tuple(ended))
    assert avro_out.encode_rank_changed(event) == _fastavro(event)


notices = st.builds(
    ParticipantNotified,
    leaderboard_id=st.just("b"),
    period=SHARED | TEXT,
    participant_id=TEXT,
    kind=st.sampled_from(list(NotificationKind)),
    rank=SMALL | LONG,
    version=LONG,
    by_participant_id=st.none() | TEXT,
    top_n=INT,
    omitted=INT,
)


@settings(max_examples=300, deadline=None)
@given(board=TEXT, vfrom=LONG, vto=LONG, items=st.lists(notices, max_size=12))
def test_participants_notified_bytes_are_fastavros(
    board: str, vfrom: int, vto: int, items: list[ParticipantNotified]
) -> None:
    event = ParticipantsNotified(board, vfrom, vto, tuple(items))
    assert avro_out.encode_participants_notified(event) == _fastavro(event)


def test_encoders_are_for_the_current_schemas() -> None:
    """A schema changed without its encoder falls back to fastavro: this says so."""
    store = default_store()
    for name, (fingerprint, _) in avro_out.SCHEMAS.items():
        assert store.reader(name).fingerprint.hex() == fingerprint, (
            f"{name} changed: update streams/avro_out.py (or its fingerprint)"
        )
    assert set(SingleObjectCodec()._direct) == set(avro_out.SCHEMAS)


def test_a_changed_schema_is_encoded_by_fastavro(tmp_path: Path) -> None:
    """An output schema with another shape than the encoder's is not written the old way."""
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, schemas)
    path = schemas / "RankChanged.avsc"
    doc = json.loads(path.read_text())
    doc["fields"].append({"name": "extra", "type": "long", "default": 0})
    path.write_text(json.dumps(doc))
    codec = SingleObjectCodec(SchemaStore(schemas))
    assert RankChanged.SCHEMA not in codec._direct
    assert ParticipantsNotified.SCHEMA in codec._direct
    event = RankChanged("b", 1, 1, ())
    assert codec.encode(event).endswith(avro_out.encode_rank_changed(event) + b"\x00")


def test_a_value_out_of_range_is_a_clear_error() -> None:
    change = RankChange(1, "all", "p", None, 1, None, 2**63, 1, "best", "e", "m", 0, 0, 0, 0)
    wanted = r"cannot encode io\.leaderboard\.events\.RankChanged"
    with pytest.raises(LeaderboardError, match=wanted):
        SingleObjectCodec().encode(RankChanged("b", 1, 1, (change,)))
