"""Avro bodies of the projector's fixed-shape outputs (RankChanged, ParticipantsNotified), fast.

fastavro's writer walks the schema for every value and needs a dict per record: about 6 µs per
rank change on the dev machine, the projector's largest single cost per entry. The two output
schemas have a fixed shape, so their binary encoding (Avro spec: zig-zag varints, length-
prefixed UTF-8, one block per array, union branch index first) is written here directly from
the events. The bytes are identical to fastavro's (tests/unit/test_avro_out.py checks it on
random records); ``SCHEMAS`` names the schema fingerprint each encoder was written for, and the
codec uses an encoder only while the current schema still has that fingerprint, so a changed
schema falls back to fastavro instead of being written in the old shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from streams.events import NotificationKind, ParticipantsNotified, RankChanged

__all__ = [
    "CHANGE_ROW",
    "NOTICE_ROW",
    "SCHEMAS",
    "encode_participants_notified",
    "encode_rank_changed",
    "notice_rows",
    "participants_notified_body",
    "rank_change_rows",
    "rank_changed_body",
    "record_context",
]

#: Varints of the zig-zag values below 2^14 (one or two bytes), looked up instead of computed.
_SMALL = [bytes([z]) if z < 0x80 else bytes([(z & 0x7F) | 0x80, z >> 7]) for z in range(1 << 14)]

_NULL = b"\x00"  # union branch 0 ("null"); also an empty array's end and an empty array
_SOME = b"\x02"  # union branch 1 (the value's type)

#: Enum indexes of the Notice's ``kind`` (schemas/ParticipantsNotified.avsc, NoticeKind).
_KIND = {
    NotificationKind.OVERTAKEN: b"\x00",
    NotificationKind.ENTERED_TOP_N: b"\x02",
    NotificationKind.LEFT_TOP_N: b"\x04",
}


def _long(n: int) -> bytes:
    """An Avro int or long: zig-zag, then a little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if 0 <= z < 0x4000:
        return _SMALL[z]
    if 0 <= z < 0x200000:  # ranks and versions of big boards: three bytes, no loop
        return bytes(((z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, z >> 14))
    if not -(1 << 63) <= n < (1 << 63):
        raise ValueError(f"{n} does not fit an Avro long")
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _str(text: str) -> bytes:
    """An Avro string: its UTF-8 length, then the bytes."""
    data = text.encode()
    return _long(len(data)) + data


def encode_rank_changed(event: RankChanged) -> bytes:
    """The Avro body of a RankChanged (schemas/RankChanged.avsc), byte for byte fastavro's."""
    parts = [_str(event.leaderboard_id), _long(event.version_from), _long(event.version_to)]
    add = parts.append
    changes = event.changes
    if changes:
        add(_long(len(changes)))
        # consecutive changes mostly come from one record and period: their bytes are reused
        last_period: Any = None
        period_b = b""
        last_event: Any = None
        event_b = b""
        last_match: Any = None
        match_b = b""
        last_at: Any = None
        at_b = b""
        last_op: Any = None
        op_b = b""
        for c in changes:
            if c.period is not last_period:
                last_period, period_b = c.period, _str(c.period)
            if c.operator is not last_op:
                last_op, op_b = c.operator, _str(c.operator)
            if c.event_id is not last_event:
                last_event, event_b = c.event_id, _str(c.event_id)
            if c.match_id is not last_match:
                last_match, match_b = c.match_id, _str(c.match_id)
            if c.occurred_at != last_at:
                last_at, at_b = c.occurred_at, _long(c.occurred_at)
            add(_long(c.version))
            add(period_b)
            add(_str(c.participant_id))
            add(_NULL if c.old_rank is None else _SOME + _long(c.old_rank))
            add(_long(c.new_rank))
            add(_NULL if c.old_score is None else _SOME + _long(c.old_score))
            add(_long(c.new_score))
            add(_long(c.submitted_score))
            add(op_b)
            add(event_b)
            add(match_b)
            add(_long(c.entry_index))
            add(at_b)
            add(_NULL if c.claimed_at is None else _SOME + _long(c.claimed_at))
            add(_long(c.source_partition))
            add(_long(c.source_offset))
    add(_NULL)
    ended = event.periods_ended
    if ended:
        add(_long(len(ended)))
        parts += [_str(p) for p in ended]
    add(_NULL)
    return b"".join(parts)


def encode_participants_notified(event: ParticipantsNotified) -> bytes:
    """The Avro body of a ParticipantsNotified (schemas/ParticipantsNotified.avsc)."""
    parts = [_str(event.leaderboard_id), _long(event.version_from), _long(event.version_to)]
    add = parts.append
    notices = event.notices
    if notices:
        add(_long(len(notices)))
        # a change's overtaken notices share its period, mover and version: bytes reused
        last_period: Any = None
        period_b = b""
        last_by: Any = None
        by_b = _NULL
        last_version: Any = None
        version_b = b""
        small = _SMALL
        for n in notices:
            if n.period is not last_period:
                last_period, period_b = n.period, _str(n.period)
            if n.by_participant_id is not last_by:
                last_by = n.by_participant_id
                by_b = _NULL if last_by is None else _SOME + _str(last_by)
            if n.version != last_version:
                last_version, version_b = n.version, _long(n.version)
            pid = n.participant_id.encode()
            size = len(pid)
            add(period_b)
            add(small[size << 1] if size < 0x2000 else _long(size))
            add(pid)
            add(_KIND[n.kind])
            add(_long(n.rank))
            add(by_b)
            top_n, omitted = n.top_n, n.omitted
            add(small[top_n << 1] if 0 <= top_n < 0x2000 else _long(top_n))
            add(small[omitted << 1] if 0 <= omitted < 0x2000 else _long(omitted))
            add(version_b)
    add(_NULL)
    return b"".join(parts)


# --------------------------------------------------------------- straight from result rows
#
# The projector's outputs written from the apply script's rows (projections/results.py), with
# no RankChange or notice object in between: the rows' fields are written where the schemas
# want them, each change or notice as a fixed number of parts (so a record of the first k of
# them is ``parts[:k * N]``), the same bytes as the encoders above (tests/unit/test_avro_rows.py).

#: The fields of a change row these writers read, by position (the first ten of
#: ``projections.results.ChangeRow``; tests/unit/test_avro_rows.py checks they agree).
CHANGE_ROW = (
    "entry_index",
    "period",
    "participant_id",
    "old_rank",
    "new_rank",
    "old_score",
    "new_score",
    "version",
    "operator",
    "submitted",
)
#: The fields of a notice row, by position (``projections.results.NoticeRow``).
NOTICE_ROW = (
    "kind",
    "period",
    "participant_id",
    "rank",
    "by_participant_id",
    "version",
    "top_n",
    "omitted",
)
#: Parts ``rank_change_rows`` appends per change, ``notice_rows`` per notice.
CHANGE_PARTS = 10
NOTICE_PARTS = 6

#: Notice kinds by their wire value (a row's ``kind``) → the enum's index, as written.
_KIND_OF: dict[str, bytes] = {kind.value: data for kind, data in _KIND.items()}


def record_context(
    event_id: str, match_id: str, at: int, claimed_at: int | None, partition: int, offset: int
) -> tuple[bytes, bytes]:
    """The bytes every change of one source record shares: (event and match ids; its time,
    claimed time, partition and offset), written around each change's entry index."""
    claimed = _NULL if claimed_at is None else _SOME + _long(claimed_at)
    return (
        _str(event_id) + _str(match_id),
        _long(at) + claimed + _long(partition) + _long(offset),
    )


def rank_change_rows(
    parts: list[bytes],
    versions: list[int],
    rows: Iterable[Sequence[Any]],
    ids: bytes,
    tail: bytes,
) -> None:
    """Append the Avro ``RankChange`` of each change row of one source record to ``parts``
    (``CHANGE_PARTS`` each) and its version to ``versions``; ``ids`` and ``tail`` are the
    record's ``record_context``. A new rank of None is written as 0 (outside a band)."""
    add = parts.append
    small = _SMALL
    last_period: Any = None
    period_b = b""
    last_op: Any = None
    op_ids = b""
    for row in rows:
        period = row[1]
        op = row[8]
        version = row[7]
        old_rank = row[3]
        old_score = row[5]
        index = row[0]
        if period != last_period:
            last_period, period_b = period, _str(period)
        if op != last_op:
            last_op, op_ids = op, _str(op) + ids
        versions.append(version)
        data = row[2].encode()
        size = len(data)
        add(_long(version) + period_b)
        add(small[size << 1] if size < 0x2000 else _long(size))
        add(data)
        add(_NULL if old_rank is None else _SOME + _long(old_rank))
        add(_long(row[4] or 0))
        add(_NULL if old_score is None else _SOME + _long(old_score))
        add(_long(row[6]) + _long(row[9]))
        add(op_ids)
        add(small[index << 1] if 0 <= index < 0x2000 else _long(index))
        add(tail)


def notice_rows(parts: list[bytes], versions: list[int], rows: Iterable[Sequence[Any]]) -> None:
    """Append the Avro ``Notice`` of each notice row to ``parts`` (``NOTICE_PARTS`` each) and
    its version to ``versions``."""
    add = parts.append
    small = _SMALL
    kinds = _KIND_OF
    last_period: Any = None
    period_b = b""
    last_kind: Any = None
    kind_b = b""
    # a change's overtaken notices share its mover, watch size, omitted count and version
    # (compared one by one: a tuple per notice would be garbage for the collector to walk)
    last_by: Any = None
    last_top: Any = None
    last_omitted: Any = None
    last_version: Any = None
    tail_b = b""
    for row in rows:
        kind, period, pid, rank, by, version, top_n, omitted = row
        if period != last_period:
            last_period, period_b = period, _str(period)
        if kind != last_kind:
            found = kinds.get(kind)
            if found is None:
                raise ValueError(f"{kind!r} is not a notification kind")
            last_kind, kind_b = kind, found
        if (
            version != last_version
            or by != last_by
            or top_n != last_top
            or omitted != last_omitted
            or not tail_b
        ):
            last_by, last_top, last_omitted, last_version = by, top_n, omitted, version
            tail_b = (
                (_NULL if by is None else _SOME + _str(by))
                + _long(top_n)
                + _long(omitted)
                + _long(version)
            )
        versions.append(version)
        data = pid.encode()
        size = len(data)
        add(period_b)
        add(small[size << 1] if size < 0x2000 else _long(size))
        add(data)
        add(kind_b)
        add(small[rank << 1] if 0 <= rank < 0x2000 else _long(rank))
        add(tail_b)


def rank_changed_body(
    board: str,
    version_from: int,
    version_to: int,
    count: int,
    parts: Sequence[bytes],
    periods_ended: Sequence[str],
) -> bytes:
    """The Avro body of a RankChanged of ``count`` changes written by ``rank_change_rows``."""
    head = _str(board) + _long(version_from) + _long(version_to)
    changes = _long(count) + b"".join(parts) + _NULL if count else _NULL
    if periods_ended:
        ended = _long(len(periods_ended)) + b"".join(map(_str, periods_ended)) + _NULL
    else:
        ended = _NULL
    return head + changes + ended


def participants_notified_body(
    board: str, version_from: int, version_to: int, count: int, parts: Sequence[bytes]
) -> bytes:
    """The Avro body of a ParticipantsNotified of ``count`` notices written by
    ``notice_rows``."""
    head = _str(board) + _long(version_from) + _long(version_to)
    return head + (_long(count) + b"".join(parts) + _NULL if count else _NULL)


#: Full schema name → (the CRC-64-AVRO fingerprint, as hex of its 8 little-endian bytes, of the
#: schema the encoder writes; the encoder). tests/unit/test_avro_out.py keeps them current.
SCHEMAS: dict[str, tuple[str, Callable[[Any], bytes]]] = {
    RankChanged.SCHEMA: ("ebdc246bd981a95f", encode_rank_changed),
    ParticipantsNotified.SCHEMA: ("65dca19e93170986", encode_participants_notified),
}
