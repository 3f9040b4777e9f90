"""Pure ranking rules: periods, operators, tie-break ordering, validation. No I/O, no clock."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    LeaderboardModerated,
    MatchResultSubmitted,
    ModerationAction,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)

#: Largest magnitude a score (stored or submitted) may have: Redis scores are doubles.
MAX_EXACT = 2**53 - 1
#: What a leaderboard id may look like (also enforced by the gateway's path parameters).
BOARD_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
#: Event times the service accepts, UTC milliseconds: [2000-01-01, 2200-01-01). Every period
#: key, monthly partition and 13-digit tie-break prefix of such a time is well formed, and a
#: time sent in seconds (~1.8e9) falls outside instead of landing in January 1970.
MIN_EVENT_MS = 946_684_800_000
MAX_EVENT_MS = 7_258_118_400_000
#: How far a claimed event time may run ahead of the log's own time (the broker's append
#: time): more would let one record end a period for every participant.
MAX_CLOCK_SKEW_MS = 60_000
#: Duplicate detection per board: event ids are remembered by day of event time (UTC), for at
#: least this long and, past the newest day, at most this many; a record older than the horizon
#: this implies is refused, so a forgotten id can never be applied twice (see ``dedup_forget``).
DEDUP_WINDOW_MS = 7 * 24 * 3_600_000
DEDUP_MAX_IDS = 1_000_000
#: The dedup horizon moves in whole days of event time: ids are forgotten a day at a time.
DEDUP_DAY_MS = 86_400_000
#: A close takes effect this long after it is issued (``closed_at`` = issue time + this), so
#: that every projector knows the closed configuration before the first record it refuses:
#: live and replay then refuse the same records.
CLOSE_DELAY_MS = 2_000
#: Period key of boards that never reset.
ALL_TIME = "all"
#: Marker for "this period never ends".
NEVER = -1
#: Width of the tie-break prefix of a sorted-set member (see ``member``): 18 characters of an
#: order-preserving base-64 alphabet holding 43 bits of event time (every accepted time), 50 of
#: log offset (10^15 records per partition) and 14 of entry index (the schema allows 10,000
#: entries per match). Shorter than decimal digits (33), so a member of an id of up to 10
#: characters fits a 32-byte allocation in Redis; still text, so every reader decodes it.
TIEBREAK_WIDTH = 18
#: Names the member layout above, the time rule (``ranking_time``) and the key layout (``d``:
#: the participant index in 4,096 bucket hashes holding the tie-break prefix, event ids in
#: their ``event_key`` form remembered by day of event time in 256 bucket hashes a day,
#: ``dedup_forget``; projections/keys.py); state written under another must be rebuilt from
#: the log (the projector's marker key carries it, so an upgrade waits for `rebuild --all`).
STATE_LAYOUT = "m18d"
#: The digits of the tie-break prefix, in ascending byte order (so text order = number order).
TIEBREAK_DIGITS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_PAIRS = tuple(a + b for a in TIEBREAK_DIGITS for b in TIEBREAK_DIGITS)
_TIME_LIMIT, _OFFSET_LIMIT, _INDEX_LIMIT = 1 << 43, 1 << 50, 1 << 14


def in_exact_range(score: int) -> bool:
    """True if ``score`` is exactly representable as a Redis score (|score| < 2^53)."""
    return -MAX_EXACT <= score <= MAX_EXACT


def dedup_day(at: int) -> int:
    """Day of event time (UTC, days since 1970) under which an event id is remembered."""
    return at // DEDUP_DAY_MS


def dedup_forget(
    days: dict[int, int], horizon: int, max_time: int, window: int, cap: int
) -> tuple[int, list[int]]:
    """The dedup horizon after an applied record, and the remembered days it forgets.

    ``days`` maps each remembered day to its number of ids. The horizon is always the start of
    a day: it moves to the start of the day ``window`` before the board's time ``max_time`` (so
    an id is remembered for at least ``window``, at most a day longer), then past the oldest
    days while more than ``cap`` ids remain, but never past the newest day (the ids of the
    board's current day are all kept). A record older than the horizon is refused. The apply
    script (lua/rules.lua ``forget``) and the model follow this rule step for step; it needs
    no order among the ids of a day, so they live in id-hashed buckets (projections/keys.py).
    """
    if max_time >= 0:
        start = max_time - window
        horizon = max(horizon, start - start % DEDUP_DAY_MS)
    order = sorted(days)
    gone = [d for d in order if d * DEDUP_DAY_MS < horizon]
    total = sum(days.values()) - sum(days[d] for d in gone)
    newest = dedup_day(max_time)
    for d in order[len(gone) :]:
        if total <= cap or d >= newest:
            break
        gone.append(d)
        total -= days[d]
        horizon = (d + 1) * DEDUP_DAY_MS
    return horizon, gone


def combine(operator: Operator, old: int | None, submitted: int, sort: SortOrder) -> int:
    """The stored score after applying ``submitted`` with ``operator`` to ``old``."""
    if old is None:
        if operator is Operator.DECR:
            return -submitted
        return submitted
    if operator is Operator.SET:
        return submitted
    if operator is Operator.INCR:
        return old + submitted
    if operator is Operator.DECR:
        return old - submitted
    return submitted if is_better(submitted, old, sort) else old


def is_better(a: int, b: int, sort: SortOrder) -> bool:
    """True if score ``a`` ranks strictly above score ``b`` under ``sort``."""
    return a > b if sort is SortOrder.DESC else a < b


def sort_key(score: int, sort: SortOrder) -> int:
    """Sorted-set score: ascending order of this key is best-first for either direction."""
    return -score if sort is SortOrder.DESC else score


def member(occurred_at: int, offset: int, entry_index: int, participant_id: str) -> str:
    """Sorted-set member: a fixed-width tie-break prefix then the participant id.

    Among equal scores Redis orders members lexicographically; the prefix makes that order
    "first to reach the score ranks higher": event time, then log offset, then entry index,
    packed into one 107-bit number written as 18 base-64 digits (``TIEBREAK_DIGITS``, whose
    byte order is their value order). lua/rules.lua ``tiebreak`` writes the same text.
    """
    if not (
        0 <= occurred_at < _TIME_LIMIT
        and 0 <= offset < _OFFSET_LIMIT
        and 0 <= entry_index < _INDEX_LIMIT
    ):
        raise ValueError(
            f"tie-break out of range: time {occurred_at}, offset {offset}, index {entry_index}"
        )
    n = (occurred_at << 64) | (offset << 14) | entry_index
    p = _PAIRS
    return (
        p[n >> 96]
        + p[(n >> 84) & 4095]
        + p[(n >> 72) & 4095]
        + p[(n >> 60) & 4095]
        + p[(n >> 48) & 4095]
        + p[(n >> 36) & 4095]
        + p[(n >> 24) & 4095]
        + p[(n >> 12) & 4095]
        + p[n & 4095]
        + participant_id
    )


#: Two tie-break digits for each value below 4096 (the last two digits of a member).
TIEBREAK_PAIRS = _PAIRS


def tiebreak_base(occurred_at: int, offset: int) -> str:
    """The tie-break prefix of ``member(occurred_at, offset, i, pid)`` without its last two
    digits, which are ``TIEBREAK_PAIRS[i]`` for every entry index ``i`` below 4096: one
    record's members share it, so a fold computes it once per record."""
    return member(occurred_at, offset, 0, "")[:-2]


def participant_of(member_value: str) -> str:
    """The participant id inside a sorted-set member."""
    return member_value[TIEBREAK_WIDTH:]


def period_key(reset: ResetPeriod, occurred_at: int) -> str:
    """Period an event belongs to, from its event time (UTC; ISO week for weekly)."""
    if reset is ResetPeriod.NONE:
        return ALL_TIME
    day = datetime.fromtimestamp(occurred_at // 1000, tz=UTC).date()
    if reset is ResetPeriod.DAILY:
        return day.isoformat()
    if reset is ResetPeriod.WEEKLY:
        year, week, _ = day.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return f"{day.year:04d}-{day.month:02d}"


def period_bounds(reset: ResetPeriod, key: str) -> tuple[int, int]:
    """[start, end) of a period in UTC milliseconds; (NEVER, NEVER) for all-time boards."""
    if reset is ResetPeriod.NONE:
        return NEVER, NEVER
    if reset is ResetPeriod.DAILY:
        start = date.fromisoformat(key)
        end = start + timedelta(days=1)
    elif reset is ResetPeriod.WEEKLY:
        iso_year, iso_week = key.split("-W")
        start = date.fromisocalendar(int(iso_year), int(iso_week), 1)
        end = start + timedelta(days=7)
    else:
        year, month = (int(x) for x in key.split("-"))
        start = date(year, month, 1)
        end = date(year + (month == 12), month % 12 + 1, 1)
    return _ms(start), _ms(end)


#: Longest reset offset per period kind (exclusive): one period (28 days for monthly).
MAX_RESET_OFFSET_MS = {
    ResetPeriod.NONE: 1,
    ResetPeriod.DAILY: 86_400_000,
    ResetPeriod.WEEKLY: 7 * 86_400_000,
    ResetPeriod.MONTHLY: 28 * 86_400_000,
}


def board_period(config: LeaderboardConfigured, at: int) -> str:
    """The period of a board a time belongs to: the calendar period of ``at`` minus the board's
    reset offset, so an instance of a daily board reset at 04:00 UTC runs from 04:00 to 04:00
    and is named by the day it starts."""
    return period_key(config.reset_period, at - config.reset_offset_ms)


def reset_offset_reason(reset: ResetPeriod, offset_ms: int) -> str | None:
    """Why a reset offset is refused for a reset period, or None."""
    limit = MAX_RESET_OFFSET_MS[reset]
    if reset is ResetPeriod.NONE and offset_ms:
        return "reset_offset_ms needs a reset period (daily, weekly or monthly)"
    if not 0 <= offset_ms < limit:
        return f"reset_offset_ms must be from 0 to {limit - 1} for a {reset.value} board"
    return None


def period_span(config: LeaderboardConfigured, key: str) -> tuple[int, int]:
    """[start, end) of a board's period: the calendar period moved by the reset offset, cut to
    the tournament window and to the board's closing. An end of NEVER: the period never ends;
    a start of NEVER: it has no start."""
    start, end = period_bounds(config.reset_period, key)
    if config.reset_period is not ResetPeriod.NONE:
        start, end = start + config.reset_offset_ms, end + config.reset_offset_ms
    for cut in (config.ends_at, closed_at(config)):
        if cut is not None:
            end = cut if end == NEVER else min(end, cut)
    if config.starts_at is not None:
        start = config.starts_at if start == NEVER else max(start, config.starts_at)
    return start, end


def period_closes_at(config: LeaderboardConfigured, key: str, grace_ms: int) -> int:
    """Board time from which a period is final: its end, or the tournament window's end if
    that comes first, plus the grace; NEVER if neither."""
    _, end = period_span(config, key)
    return NEVER if end == NEVER else end + grace_ms


def closing_cut(config: LeaderboardConfigured, grace_ms: int) -> int:
    """Board time at which every period of a closed board has ended (its closing plus the
    grace), or NEVER for a board that is not closed."""
    at = closed_at(config)
    return NEVER if at is None else at + grace_ms


def ranking_time(
    config: LeaderboardConfigured, record: MatchResultSubmitted, log_time: int | None
) -> int:
    """The time that ranks a record: assigns its period, checks the window and the closing,
    breaks ties and moves the board's clock.

    On ``time_source=log`` boards (the default) it is the broker's append time of the record,
    which no producer controls and which the log keeps, so replay reads the same value; the
    claimed ``occurred_at`` is only information there. ``time_source=client`` boards (trusted
    backfills) rank by the claim. A record without a log time (a topic not on LogAppendTime,
    or the audit history, which stores the ranking time) ranks by ``occurred_at``.
    """
    if config.time_source is TimeSource.LOG and log_time is not None:
        return log_time
    return record.occurred_at


def closed_at(config: LeaderboardConfigured) -> int | None:
    """When a closed board's closing takes effect (None: the board is not closed)."""
    return config.closed_at if config.status is BoardStatus.CLOSED else None


def ticks(config: LeaderboardConfigured) -> bool:
    """True if clock marks move this board's time: a log-time board with a period, window or
    closing that can end (client-time boards move only with their own records' claims)."""
    return config.time_source is TimeSource.LOG and (
        config.reset_period is not ResetPeriod.NONE
        or config.ends_at is not None
        or closed_at(config) is not None
    )


#: How long after a board's last period could end (its window's end or closing, plus the
#: grace) clock marks still move it: the first mark after the end ends the period; later
#: ones would only cost an apply call per ended board, forever.
MARK_TAIL_MS = 3_600_000


def moved_by_mark(config: LeaderboardConfigured, at: int, grace_ms: int) -> bool:
    """True if a clock mark at broker time ``at`` moves this board (see ``ticks``)."""
    if not ticks(config):
        return False
    _, end = period_span(replace(config, reset_period=ResetPeriod.NONE), ALL_TIME)
    return end == NEVER or at < end + grace_ms + MARK_TAIL_MS


def event_time_reason(occurred_at: int, reference_ms: int | None = None) -> str | None:
    """Why a claimed event time is refused, or None.

    ``reference_ms`` is a time the client does not control: the broker's append time of the
    record in the workers (the log keeps it, so replay decides the same), the wall clock at
    the edge. A time more than ``MAX_CLOCK_SKEW_MS`` ahead of it is refused.
    """
    if not MIN_EVENT_MS <= occurred_at < MAX_EVENT_MS:
        hint = ""
        if MIN_EVENT_MS <= occurred_at * 1000 < MAX_EVENT_MS:
            hint = " (it looks like seconds: send milliseconds)"
        return (
            f"event time {occurred_at} is outside the accepted range: UTC milliseconds from "
            f"2000-01-01 to 2200-01-01{hint}"
        )
    if reference_ms is not None and occurred_at > reference_ms + MAX_CLOCK_SKEW_MS:
        ahead = (occurred_at - reference_ms) / 1000
        return (
            f"event time is {ahead:,.0f} s ahead of the log's time "
            f"(at most {MAX_CLOCK_SKEW_MS // 1000} s of clock skew is accepted)"
        )
    return None


def reject_reason(
    config: LeaderboardConfigured | None,
    record: MatchResultSubmitted,
    log_time: int | None = None,
) -> str | None:
    """Why a whole record cannot be applied under its board's configuration, or None.

    Checks that need only the configuration and the record (not the current standings):
    unknown board, empty match or event id, claimed time (range, and skew against
    ``log_time``, the broker's time of the record), then closed board and tournament window
    by the record's ``ranking_time``.
    """
    if config is None:
        return f"unknown leaderboard {record.leaderboard_id!r}"
    if not record.entries:
        return "match result has no entries"
    if not record.event_id:
        return "event_id is empty"
    bad_time = event_time_reason(record.occurred_at, log_time)
    if bad_time:
        return bad_time
    return window_reason(config, ranking_time(config, record, log_time))


def window_reason(config: LeaderboardConfigured, at: int) -> str | None:
    """Why a record ranked at ``at`` is refused by the board's closing or tournament window."""
    if (
        config.status is BoardStatus.CLOSED
        and config.closed_at is not None
        and at >= config.closed_at
    ):
        return f"leaderboard {config.leaderboard_id!r} is closed"
    if config.starts_at is not None and at < config.starts_at:
        return "event time is before the tournament window"
    if config.ends_at is not None and at >= config.ends_at:
        return "event time is after the tournament window"
    return None


#: Unicode categories no participant id may hold: format characters (zero-width, bidi
#: overrides: "adm\u200bin" must not pass for "admin"), surrogates and private use.
_HIDDEN = frozenset({"Cf", "Cs", "Co"})


def participant_reason(participant_id: str) -> str | None:
    """Why a participant id is refused, or None: 1 to 128 printable characters in NFC, at
    least one of them not blank; no control, format (bidi, zero-width) or private-use ones."""
    if not participant_id:
        return "empty participant_id"
    if len(participant_id) > 128:
        return "participant_id longer than 128 characters"
    if participant_id.isascii() and participant_id.isprintable():
        # the common case, decided at once: printable ASCII has no control, format or
        # private-use character and is in NFC
        return None if participant_id.strip() else "participant_id is blank"
    if any(ch < " " or "\x7f" <= ch < "\xa0" for ch in participant_id):
        return "participant_id contains control characters"
    hidden = next((ch for ch in participant_id if unicodedata.category(ch) in _HIDDEN), None)
    if hidden is not None:
        return f"participant_id contains an invisible or format character (U+{ord(hidden):04X})"
    if not participant_id.strip():
        return "participant_id is blank"
    if unicodedata.normalize("NFC", participant_id) != participant_id:
        return "participant_id is not in Unicode NFC form"
    return None


def entry_reject_reason(score: int, participant_id: str) -> str | None:
    """Why one entry cannot be applied, judged on the entry alone, or None."""
    bad_id = participant_reason(participant_id)
    if bad_id:
        return bad_id
    if not in_exact_range(score):
        return f"score {score} outside the exact range |score| < 2^53"
    return None


def entries_refusal(entries: Sequence[ScoreEntry]) -> str:
    """Why a match cannot apply judged on its entries alone ("" if it can): every invalid
    entry as ``entries[i]: reason``, joined by "; " (a match applies whole or not at all)."""
    for entry in entries:  # the common case first: every entry valid (checked per entry once)
        pid = entry.participant_id
        if not (
            0 < len(pid) <= 128
            and pid.isascii()
            and pid.isprintable()
            and -MAX_EXACT <= entry.score <= MAX_EXACT
            and not pid.isspace()
        ):
            break
    else:
        return ""
    return "; ".join(
        f"entries[{idx}]: {reason}"
        for idx, entry in enumerate(entries)
        if (reason := entry_reject_reason(entry.score, entry.participant_id))
    )


def banned_reason(participant_id: str) -> str:
    """Why a match with a banned participant is refused (the dead-letter reason ``banned``)."""
    return f"banned: participant {participant_id} is banned from this board"


def limit_reason(
    config: LeaderboardConfigured,
    period: str,
    participant_id: str,
    used: int,
    admitted: int,
) -> str | None:
    """Why a tournament limit refuses one participant of a match, or None.

    ``used`` is how many matches the participant already has in ``period`` (0: a newcomer) and
    ``admitted`` how many participants the period has admitted so far (including earlier
    newcomers of the same match). A match applies whole or not at all, so one refusal refuses
    it; a refused match uses no attempt and admits no one.
    """
    if config.max_attempts is not None and used >= config.max_attempts:
        return (
            f"max_attempts: participant {participant_id} has used its "
            f"{config.max_attempts} attempts of period {period}"
        )
    if used == 0 and config.max_participants is not None and admitted >= config.max_participants:
        return (
            f"max_participants: period {period} is full "
            f"({config.max_participants} participants); {participant_id} is not admitted"
        )
    return None


def moderation_reason(
    config: LeaderboardConfigured | None, event: LeaderboardModerated
) -> str | None:
    """Why a moderation event cannot apply, judged on the configuration and the event alone."""
    if config is None:
        return f"unknown leaderboard {event.leaderboard_id!r}"
    if not event.event_id:
        return "event_id is empty"
    if not event.issued_by.strip():
        return "moderation without issued_by: name who did it"
    if event.action is ModerationAction.MATCH_VOIDED:
        if not event.voided_event_id:
            return "match_voided needs voided_event_id"
        if not config.retain_entries:
            return (
                f"leaderboard {config.leaderboard_id!r} does not retain entries: a match can be "
                "voided exactly only on a board created with retain_entries"
            )
        return None
    if event.participant_id is None:
        return f"{event.action.value} needs participant_id"
    if event.period is not None:
        bad = period_reason(config.reset_period, event.period)
        if bad:
            return bad
    return participant_reason(event.participant_id)


def period_reason(reset: ResetPeriod, key: str) -> str | None:
    """Why ``key`` names no period of a ``reset`` board, or None."""
    example = {
        ResetPeriod.NONE: ALL_TIME,
        ResetPeriod.DAILY: "2026-11-26",
        ResetPeriod.WEEKLY: "2026-W48",
        ResetPeriod.MONTHLY: "2026-11",
    }[reset]
    try:
        start, _ = period_bounds(reset, key)
        ok = key == ALL_TIME if reset is ResetPeriod.NONE else period_key(reset, start) == key
    except (ValueError, OverflowError):  # e.g. a year of 30 digits
        ok = False
    if ok:
        return None
    return f"period {key!r} is not a {reset.value} period (e.g. {example!r})"


def unknown_match_reason(event_id: str) -> str:
    """Why a void finds nothing to revert."""
    return f"match {event_id} is not applied on this board (unknown, refused or already voided)"


def refold(rows: Iterable[tuple[str, Operator, int]], sort: SortOrder) -> tuple[int, str] | None:
    """A participant's score and tie-break prefix from its retained entries, in log order.

    ``rows`` are (tie-break prefix, operator, submitted score) of each applied entry; the
    result is what applying them one after the other leaves: the score and the prefix of the
    entry that last moved it (None: no entry). A void refolds without the voided match's
    entries, which is exact for every operator: later entries keep their own results.
    """
    score: int | None = None
    prefix = ""
    for pre, op, sub in rows:
        new = combine(op, score, sub, sort)
        if score is None or new != score:
            prefix = pre
        score = new
    return None if score is None else (score, prefix)


def percentile(rank: int, count: int) -> float:
    """The share of the standings at or above ``rank``, in percent ("top 3 %"), 2 decimals."""
    return round(100 * rank / count, 2) if count else 100.0


def standings_checksum(rows: Iterable[tuple[int, str, int]]) -> str:
    """SHA-256 of the standings as ``rank\\tparticipant\\tscore\\n`` lines, best first."""
    digest = hashlib.sha256()
    for rank, participant, score in rows:
        digest.update(f"{rank}\t{participant}\t{score}\n".encode())
    return digest.hexdigest()


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
