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

    ``RecordResult.notices`` holds the rows as unpacked (lists in this order, ``false`` read
    as None), not NoticeRows: a hot board's entry has ~9 notices, and a tuple more per notice
    is garbage the collector then walks (``to_notice`` reads them by position).
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
    notices: list[list[Any]]
    #: (entry_index, reason) of entries the script rejected.
    rejected: list[tuple[int, str]]
    #: Why the whole record was refused (duplicate event id, late event), or None.
    refused: str | None
    #: (period, board version) of the periods the record ended.
    ended: list[tuple[str, int]]
    #: Its outbox field: the offset, or ``offset:index`` for a coalesced submission.
    position: str = ""


def decode(reply: Any) -> list[RecordResult]:
    """Decode one apply call's reply: one msgpack blob per record (``false`` = None)."""
    return [_record(msgpack.unpackb(blob)) for blob in reply]


def _opt(value: Any) -> Any:
    """Lua's ``false`` placeholder as None."""
    return None if value is False else value


#: A plain board's change row has no band sizes: these two zeros complete it.
_NO_BAND = [0, 0]

#: Builds a NamedTuple from a list without its ``__new__`` (keyword parsing, one call per
#: field): the rows of one apply call are thousands, decoded on the projector's hot path.
_tuple_new = tuple.__new__


def _record(res: list[Any]) -> RecordResult:
    offset, changes, notices, rejected, refused, ended = res[:6]
    # results stored before positions existed have six fields: their position is the offset
    position = res[6] if len(res) > 6 else str(offset)
    rows: list[ChangeRow] = []
    for c in changes:  # lists fresh from msgpack: completed in place
        if c[3] is False:
            c[3] = None
        if c[4] is False:
            c[4] = None
        if c[5] is False:
            c[5] = None
        if len(c) == 10:
            c += _NO_BAND
        rows.append(_tuple_new(ChangeRow, c))
    for n in notices:
        if n[4] is False:
            n[4] = None
    return RecordResult(
        offset,
        rows,
        notices,
        # nearly always empty: then msgpack's own empty lists, not new ones
        [(r[0], r[1]) for r in rejected] if rejected else rejected,
        _opt(refused),
        [(e[0], e[1]) for e in ended] if ended else ended,
        position.decode() if isinstance(position, bytes) else str(position),
    )


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
