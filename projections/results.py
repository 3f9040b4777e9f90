"""The apply scripts' reply: its fixed positions (NamedTuples) and its one decoder.

``rules.lua`` answers one msgpack blob per record, ``{offset, changes, notices, rejected,
refused, ended, position}``, whose rows are arrays in the field order of the NamedTuples below;
``decode`` is the only code that reads those positions, and ``to_change``/``to_notice`` turn rows
into events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import msgpack

from streams.events import NotificationKind, ParticipantNotified, RankChange
from streams.rules import TIEBREAK_WIDTH

if TYPE_CHECKING:
    from projections.store import SourceRecord


class ChangeRow(NamedTuple):
    """One applied entry. Ranks are the board's (plain) or the band's (range shard; None
    outside the band); the band sizes are a range shard's, 0 on a plain board."""

    entry_index: int
    period: str
    participant_id: str
    old_rank: int | None
    new_rank: int | None
    old_score: int | None
    new_score: int
    version: int
    operator: str
    submitted: int
    band_before: int = 0
    band_after: int = 0


class NoticeRow(NamedTuple):
    """One notification (plain boards only): the positions of a notice row.

    ``RecordResult.notices`` holds the rows as unpacked (tuples in this order, ``false`` read
    as None), not NoticeRows: a hot board's entry has ~9 notices, and an object more per
    notice is garbage the collector then walks (``to_notice`` reads them by position).
    """

    kind: str
    period: str
    participant_id: str
    rank: int
    by_participant_id: str | None
    version: int
    top_n: int
    omitted: int


class RecordResult(NamedTuple):
    """What applying one record did (or did the first time, for a record applied before)."""

    offset: int
    changes: list[ChangeRow]
    #: rows in ``NoticeRow``'s field order (see there)
    notices: list[tuple[Any, ...]]
    #: (entry_index, reason) of entries the script rejected.
    rejected: list[tuple[int, str]]
    #: Why the whole record was refused (duplicate event id, late event), or None.
    refused: str | None
    #: (period, board version) of the periods the record ended.
    ended: list[tuple[str, int]]
    #: Its outbox field: the offset, or ``offset:index`` for a coalesced submission.
    position: str = ""


def decode(reply: Any) -> list[RecordResult]:
    """Decode one apply call's reply: one msgpack blob per record (``false`` = None).

    The blobs are read by ONE ``unpackb`` (behind an array header) into tuples, not lists:
    one C call per reply instead of one per record (a hot board's reply holds a blob per
    coalesced submission), and a row tuple of plain values is garbage the collector soon
    stops tracking, where a list is walked by every collection while it lives.
    """
    if not reply:
        return []
    whole = _unpackb(b"".join((_ARRAY32 + len(reply).to_bytes(4, "big"), *reply)), use_list=False)
    return [_record(res) for res in whole]


#: msgpack's header of an array of up to 2^32 - 1 items (its length follows, big-endian).
_ARRAY32 = b"\xdd"
_unpackb = msgpack.unpackb

#: Builds a NamedTuple from a tuple without its ``__new__`` (keyword parsing, one call per
#: field): the rows of one apply call are thousands, decoded on the projector's hot path.
_tuple_new = tuple.__new__


def _record(res: tuple[Any, ...]) -> RecordResult:
    offset, changes, notices, rejected, refused, ended = res[:6]
    # results stored before positions existed have six fields: their position is the offset
    position = res[6] if len(res) > 6 else str(offset)
    rows: list[ChangeRow] = []
    add = rows.append
    for c in changes:  # one tuple per row, made once, ``false`` read as None
        if len(c) == 10:  # a plain board's row: no band sizes
            idx, period, pid, old_rank, new_rank, old_score, new_score, ver, op, sub = c
            before = after = 0
        else:
            idx, period, pid, old_rank, new_rank, old_score, new_score, ver, op, sub = c[:10]
            before, after = c[10], c[11]
        add(
            _tuple_new(
                ChangeRow,
                (
                    idx,
                    period,
                    pid,
                    None if old_rank is False else old_rank,
                    None if new_rank is False else new_rank,
                    None if old_score is False else old_score,
                    new_score,
                    ver,
                    op,
                    sub,
                    before,
                    after,
                ),
            )
        )
    if notices:
        notices = _notice_rows(notices)
    return _tuple_new(
        RecordResult,
        (
            offset,
            rows,
            notices,
            # nearly always empty: then a new empty list (the field is a list)
            [(r[0], r[1]) for r in rejected] if rejected else [],
            None if refused is False else refused,
            [(e[0], e[1]) for e in ended] if ended else [],
            position.decode() if isinstance(position, bytes) else str(position),
        ),
    )


def _notice_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A record's notice rows in ``NoticeRow``'s positions.

    The script answers one ``overtaken`` row per change whose participant field is the list of
    the passed participants' sorted-set members (prefix then id) and whose rank is the first
    one's (lua/apply.lua): it becomes one row per passed participant, the last counting those
    left out. A row is rebuilt otherwise only when its ``by`` is false (entered / left top N).
    """
    out: list[tuple[Any, ...]] = []
    add = out.append
    width = TIEBREAK_WIDTH
    for n in rows:
        kind, period, who, rank, by, version, top_n, omitted = n
        if type(who) is tuple:
            last = len(who) - 1
            for i, member in enumerate(who):
                left = omitted if i == last else 0
                add((kind, period, member[width:], rank + i, by, version, top_n, left))
        elif by is False:
            add((kind, period, who, rank, None, version, top_n, omitted))
        else:
            add(n)
    return out


def to_change(rec: SourceRecord, row: ChangeRow) -> RankChange:
    """The RankChange of one change row (its ranks global: a new rank of None reads as 0)."""
    return to_changes(rec, (row,))[0]


def to_changes(rec: SourceRecord, rows: Sequence[ChangeRow]) -> list[RankChange]:
    """The RankChanges of one record's change rows (see ``to_change``)."""
    ev = rec.event
    event_id, match_id, at = ev.event_id, ev.match_id, rec.time
    claimed = None if ev.occurred_at == at else ev.occurred_at
    partition, offset = rec.partition, rec.offset
    # positional arguments in field order: the dataclass's keyword parsing is measurable here
    return [
        RankChange(
            row[7],  # version
            row[1],  # period
            row[2],  # participant_id
            row[3],  # old_rank
            row[4] or 0,  # new_rank
            row[5],  # old_score
            row[6],  # new_score
            row[9],  # submitted_score
            row[8],  # operator
            event_id,
            match_id,
            row[0],  # entry_index
            at,
            partition,
            offset,
            claimed,
        )
        for row in rows
    ]


#: Notice kinds by their wire value: a dict lookup, not ``NotificationKind(value)`` (Enum's
#: call costs about 2 µs, paid per notice: several per entry on a busy board).
_KINDS: dict[str, NotificationKind] = {k.value: k for k in NotificationKind}


def to_notice(board: str, row: Sequence[Any]) -> ParticipantNotified:
    """The ParticipantNotified of one notice row (``NoticeRow``'s positions)."""
    kind, period, pid, rank, by, version, top_n, omitted = row
    found = _KINDS.get(kind)
    return ParticipantNotified(  # positional, in field order (several notices per entry)
        board,
        period,
        pid,
        found if found is not None else NotificationKind(kind),
        rank,
        version,
        by,
        top_n,
        omitted,
    )
