"""Merging the shards' apply results of one batch into the board's BoardOutcome.

Each shard answers per record a RecordResult (projections/results.py). The merge turns them
into what an unsharded board would have answered: one version sequence, global ranks, one
rejection per refused record, each ended period once, and the top-N notifications.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from projections.layout import ShardLayout
from projections.results import ChangeRow, RecordResult, to_change
from projections.store import BoardOutcome, Rejection, SourceRecord
from streams.errors import LeaderboardError
from streams.events import LeaderboardConfigured, NotificationKind, ParticipantNotified

#: Per shard, its result of each record it answered for (offset → result).
ShardResults = list[dict[int, RecordResult]]
#: (period, participant) → global rank.
Ranks = dict[tuple[str, str], int]


def first_versions(results: ShardResults, offsets: Sequence[int]) -> dict[int, int]:
    """Per shard with a change in the batch, its version before the batch's first change."""
    first: dict[int, int] = {}
    for s, res in enumerate(results):
        for o in offsets:
            r = res.get(o)
            if r is not None and r.changes and s not in first:
                first[s] = r.changes[0].version - 1
    return first


def number_hash_changes(
    outcome: BoardOutcome,
    results: ShardResults,
    offsets: Sequence[int],
    by_offset: dict[int, SourceRecord],
    version: int,
    known: Mapping[int, int] | None = None,
    bases: dict[int, int] | None = None,
) -> list[tuple[SourceRecord, ChangeRow]]:
    """Hash shards: the batch's changes in log order, versions counted on from ``version``.

    ``known``: the board version before a record, as it was numbered when first applied
    (it wins over the count); ``bases`` receives each record's version before it.
    Rejections and ended periods go to ``outcome`` on the way; ranks are still the shards'.
    """
    changes: list[tuple[SourceRecord, ChangeRow]] = []
    for o in offsets:
        if known and o in known:
            version = known[o]
        if bases is not None:
            bases[o] = version
        rec = by_offset[o]
        parts = [res[o] for res in results if o in res]
        rows = sorted((c for r in parts for c in r.changes), key=lambda c: c.entry_index)
        for row in rows:
            version += 1
            changes.append((rec, row._replace(version=version)))
        add_others(outcome, rec, parts, version)
    return changes


def add_hash_changes(
    cfg: LeaderboardConfigured,
    outcome: BoardOutcome,
    changes: Sequence[tuple[SourceRecord, ChangeRow]],
    before: Ranks,
    after: Ranks,
) -> None:
    """Hash shards: a participant's first change goes from its rank before the batch, the
    others from its rank after it; every change goes to its rank after the batch."""
    seen: set[tuple[str, str]] = set()
    for rec, row in changes:
        key = (row.period, row.participant_id)
        old = before.get(key) if key not in seen else after.get(key)
        seen.add(key)
        if row.old_score is None:
            old = None
        add_change(cfg, outcome, rec, row._replace(old_rank=old, new_rank=after.get(key, 0)))


def merge_range(
    cfg: LeaderboardConfigured,
    layout: ShardLayout,
    outcome: BoardOutcome,
    results: ShardResults,
    offsets: Sequence[int],
    by_offset: dict[int, SourceRecord],
) -> None:
    """Range shards: exact global ranks, local rank + sizes of the bands above at that change."""
    sort = cfg.sort_order
    for o in offsets:
        rec = by_offset[o]
        per_shard = [res.get(o) for res in results]
        ref = next(r for r in per_shard if r is not None)
        add_others(outcome, rec, [ref], None)
        for k, row in enumerate(ref.changes):
            views = [r.changes[k] if r is not None else None for r in per_shard]
            old = new = None
            if row.old_score is not None:
                band = layout.band(row.old_score)
                v = views[band]
                if v is not None and v.old_rank is not None:
                    above = layout.above(band, sort)
                    old = v.old_rank + sum(_view(views, t).band_before for t in above)
            band = layout.band(row.new_score)
            v = views[band]
            if v is not None and v.new_rank is not None:
                above = layout.above(band, sort)
                new = v.new_rank + sum(_view(views, t).band_after for t in above)
            add_change(cfg, outcome, rec, row._replace(old_rank=old, new_rank=new or 0))


def add_others(
    outcome: BoardOutcome, rec: SourceRecord, parts: Sequence[RecordResult], version: int | None
) -> None:
    """Rejections (a refusal once) and ended periods (as the first shard ending any says,
    at ``version`` if given) of one record's shard results."""
    refused = False
    for res in parts:
        outcome.rejections += [Rejection(rec.partition, rec.offset, r, i) for i, r in res.rejected]
        if res.refused is not None and not refused:
            outcome.rejections.append(Rejection(rec.partition, rec.offset, res.refused))
            refused = True
    ended = next((res.ended for res in parts if res.ended), [])
    for period, ver in ended:
        item = (period, version if version is not None else ver)
        if item not in outcome.periods_ended:
            outcome.periods_ended.append(item)


def add_change(
    cfg: LeaderboardConfigured, outcome: BoardOutcome, rec: SourceRecord, row: ChangeRow
) -> None:
    """Add one change with global ranks, and its entered/left top-N notification."""
    change = to_change(rec, row)
    outcome.changes.append(change)
    n = cfg.watch_top_n
    if n <= 0:
        return
    was = change.old_rank is not None and change.old_rank <= n
    now = change.new_rank <= n
    if was != now:
        kind = NotificationKind.ENTERED_TOP_N if now else NotificationKind.LEFT_TOP_N
        outcome.notifications.append(
            ParticipantNotified(
                leaderboard_id=outcome.board,
                period=change.period,
                participant_id=change.participant_id,
                kind=kind,
                rank=change.new_rank,
                by_participant_id=None,
                version=change.version,
                top_n=n,
                omitted=0,
            )
        )


def _view(views: list[ChangeRow | None], shard: int) -> ChangeRow:
    v = views[shard]
    if v is None:
        raise LeaderboardError(
            "a range shard has no result for a record the others applied; its outbox was "
            "acknowledged early: rebuild the board with `leaderboard replay`"
        )
    return v
