"""Pure ranking rules: periods, operators, ordering, validation, checksum."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import rules
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
    TimeSource,
)
from streams.model import ModelBoard


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_month_boundary_splits_periods() -> None:
    last = ms(2026, 10, 31, 23, 59, 59) + 999
    first = ms(2026, 11, 1)
    assert rules.period_key(ResetPeriod.MONTHLY, last) == "2026-10"
    assert rules.period_key(ResetPeriod.MONTHLY, first) == "2026-11"
    assert rules.period_key(ResetPeriod.DAILY, last) == "2026-10-31"
    assert rules.period_key(ResetPeriod.DAILY, first) == "2026-11-01"
    assert rules.period_key(ResetPeriod.NONE, first) == rules.ALL_TIME


def test_iso_week_crosses_year() -> None:
    # 2026-12-31 is a Thursday of ISO week 2026-W53; 2027-01-04 is in 2027-W01.
    assert rules.period_key(ResetPeriod.WEEKLY, ms(2026, 12, 31, 12)) == "2026-W53"
    assert rules.period_key(ResetPeriod.WEEKLY, ms(2027, 1, 4)) == "2027-W01"
    assert rules.period_key(ResetPeriod.WEEKLY, ms(2021, 1, 1)) == "2020-W53"


@given(
    st.sampled_from([ResetPeriod.DAILY, ResetPeriod.WEEKLY, ResetPeriod.MONTHLY]),
    st.integers(min_value=0, max_value=ms(2200, 1, 1)),
)
def test_event_lies_in_its_period_bounds(reset: ResetPeriod, at: int) -> None:
    key = rules.period_key(reset, at)
    start, end = rules.period_bounds(reset, key)
    assert start <= at < end
    assert rules.period_key(reset, start) == key
    assert rules.period_key(reset, end) != key
    assert rules.period_key(reset, end - 1) == key


@given(st.integers(-(2**60), 2**60), st.integers(-(2**60), 2**60))
def test_best_keeps_the_better(old: int, new: int) -> None:
    assert rules.combine(Operator.BEST, old, new, SortOrder.DESC) == max(old, new)
    assert rules.combine(Operator.BEST, old, new, SortOrder.ASC) == min(old, new)


@given(st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40))
def test_set_incr_decr(old: int, v: int) -> None:
    assert rules.combine(Operator.SET, old, v, SortOrder.DESC) == v
    assert rules.combine(Operator.INCR, old, v, SortOrder.DESC) == old + v
    assert rules.combine(Operator.DECR, old, v, SortOrder.DESC) == old - v
    assert rules.combine(Operator.DECR, None, v, SortOrder.DESC) == -v
    assert rules.combine(Operator.INCR, None, v, SortOrder.ASC) == v


def test_exact_range() -> None:
    assert rules.in_exact_range(2**53 - 1)
    assert rules.in_exact_range(-(2**53 - 1))
    assert not rules.in_exact_range(2**53)
    assert rules.entry_reject_reason(2**53, "p") is not None
    assert rules.entry_reject_reason(1, "") is not None
    assert rules.entry_reject_reason(1, "a\nb") is not None
    assert rules.entry_reject_reason(1, "x" * 129) is not None
    assert rules.entry_reject_reason(1, "ok") is None


@given(
    st.integers(0, 2**43 - 1),
    st.integers(0, 2**50 - 1),
    st.integers(0, 2**14 - 1),
    st.integers(0, 2**43 - 1),
    st.integers(0, 2**50 - 1),
    st.integers(0, 2**14 - 1),
)
def test_member_order_is_reach_order(t1: int, o1: int, i1: int, t2: int, o2: int, i2: int) -> None:
    a = rules.member(t1, o1, i1, "p")
    b = rules.member(t2, o2, i2, "p")
    assert len(a) == rules.TIEBREAK_WIDTH + 1
    assert (a < b) == ((t1, o1, i1) < (t2, o2, i2))
    assert rules.participant_of(rules.member(t1, o1, i1, "alice")) == "alice"
    assert set(a[: rules.TIEBREAK_WIDTH]) <= set(rules.TIEBREAK_DIGITS)


@given(st.integers(0, 2**43 - 1), st.integers(0, 2**50 - 1), st.integers(0, 4095), st.text())
def test_tiebreak_base_and_pair_make_the_member(t: int, o: int, i: int, pid: str) -> None:
    """The fold's per-record prefix plus the entry's two digits is ``member`` exactly."""
    base = rules.tiebreak_base(t, o)
    assert base + rules.TIEBREAK_PAIRS[i] + pid == rules.member(t, o, i, pid)


def test_tiebreak_digits_ascend_and_out_of_range_parts_are_refused() -> None:
    assert list(rules.TIEBREAK_DIGITS) == sorted(set(rules.TIEBREAK_DIGITS))
    assert len(rules.TIEBREAK_DIGITS) == 64
    assert rules.member(0, 0, 0, "p") == "-" * rules.TIEBREAK_WIDTH + "p"
    for bad in [(2**43, 0, 0), (0, 2**50, 0), (0, 0, 2**14), (-1, 0, 0)]:
        with pytest.raises(ValueError, match="tie-break out of range"):
            rules.member(*bad, "p")


T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def test_reject_reasons() -> None:
    cfg = LeaderboardConfigured("b", starts_at=T0 + 1000, ends_at=T0 + 2000)
    rec = MatchResultSubmitted("e", "m", "b", T0 + 1500, (ScoreEntry("p", 1),))
    assert rules.reject_reason(cfg, rec) is None
    assert "unknown" in str(rules.reject_reason(None, rec))
    late = MatchResultSubmitted("e", "m", "b", T0 + 2000, (ScoreEntry("p", 1),))
    assert "after the tournament" in str(rules.reject_reason(cfg, late))
    early = MatchResultSubmitted("e", "m", "b", T0 + 999, (ScoreEntry("p", 1),))
    assert "before the tournament" in str(rules.reject_reason(cfg, early))
    closed = LeaderboardConfigured("b", status=BoardStatus.CLOSED, closed_at=T0 + 1200)
    assert "closed" in str(rules.reject_reason(closed, rec))
    empty = MatchResultSubmitted("e", "m", "b", T0 + 1500, ())
    assert "no entries" in str(rules.reject_reason(cfg, empty))


@pytest.mark.parametrize(
    ("occurred_at", "fragment"),
    [
        (-5, "outside the accepted range"),
        (1_795_690_000, "looks like seconds"),
        (253_402_214_400_000, "outside the accepted range"),  # 9999-12-31
        (rules.MAX_EVENT_MS, "outside the accepted range"),
        (rules.MIN_EVENT_MS - 1, "outside the accepted range"),
    ],
)
def test_event_time_out_of_range_is_refused(occurred_at: int, fragment: str) -> None:
    rec = MatchResultSubmitted("e", "m", "b", occurred_at, (ScoreEntry("p", 1),))
    assert fragment in str(rules.reject_reason(LeaderboardConfigured("b"), rec))


def test_event_time_ahead_of_the_log_is_refused() -> None:
    rec = MatchResultSubmitted("e", "m", "b", T0 + 13 * 3_600_000, (ScoreEntry("p", 1),))
    cfg = LeaderboardConfigured("b")
    assert "46,800 s ahead of the log's time" in str(rules.reject_reason(cfg, rec, T0))
    assert rules.reject_reason(cfg, rec, T0 + 13 * 3_600_000 - rules.MAX_CLOCK_SKEW_MS) is None
    assert rules.reject_reason(cfg, rec) is None  # no log time: only the range applies


@given(st.integers(min_value=rules.MIN_EVENT_MS, max_value=rules.MAX_EVENT_MS - 1))
def test_every_accepted_time_has_a_period_and_a_closing_time(occurred_at: int) -> None:
    for reset in ResetPeriod:
        key = rules.period_key(reset, occurred_at)
        start, end = rules.period_bounds(reset, key)
        assert reset is ResetPeriod.NONE or start <= occurred_at < end
        rules.period_closes_at(LeaderboardConfigured("b", reset_period=reset), key, 60_000)
        assert len(rules.member(occurred_at, 10**15 - 1, 9_999, "p")) == rules.TIEBREAK_WIDTH + 1


def test_checksum_is_order_sensitive_and_stable() -> None:
    rows = [(1, "a", 10), (2, "b", 5)]
    assert rules.standings_checksum(rows) == rules.standings_checksum(list(rows))
    assert rules.standings_checksum(rows) != rules.standings_checksum(rows[::-1])
    assert len(rules.standings_checksum([])) == 64


@pytest.mark.parametrize("sort", [SortOrder.DESC, SortOrder.ASC])
def test_model_ties_first_to_reach_ranks_higher(sort: SortOrder) -> None:
    board = ModelBoard(LeaderboardConfigured("b", sort_order=sort))
    board.apply(5, MatchResultSubmitted("e1", "m", "b", T0 + 100, (ScoreEntry("late", 7),)))
    board.apply(3, MatchResultSubmitted("e2", "m", "b", T0 + 50, (ScoreEntry("early", 7),)))
    board.apply(9, MatchResultSubmitted("e3", "m", "b", T0 + 50, (ScoreEntry("same-time", 7),)))
    assert [p for _, p, _ in board.standings("all")] == ["early", "same-time", "late"]


def test_model_unchanged_score_keeps_reach_time() -> None:
    board = ModelBoard(LeaderboardConfigured("b"))
    board.apply(1, MatchResultSubmitted("e1", "m", "b", T0 + 10, (ScoreEntry("a", 7),)))
    board.apply(2, MatchResultSubmitted("e2", "m", "b", T0 + 20, (ScoreEntry("b", 7),)))
    board.apply(3, MatchResultSubmitted("e3", "m", "b", T0 + 30, (ScoreEntry("a", 5),)))
    assert [p for _, p, _ in board.standings("all")] == ["a", "b"]


def test_clock_marks_move_time_bound_log_boards_until_their_last_end() -> None:
    """Marks move a log-time board with a period, window or closing to end; a board whose
    last period has ended (window or closing, plus the grace) only for an hour more."""
    hour = 3_600_000
    cup = LeaderboardConfigured("b", ends_at=T0)
    assert rules.moved_by_mark(cup, T0 - 1, 0) and rules.moved_by_mark(cup, T0 + hour - 1, 0)
    assert not rules.moved_by_mark(cup, T0 + hour, 0)
    closed = LeaderboardConfigured("b", status=BoardStatus.CLOSED, closed_at=T0)
    assert rules.moved_by_mark(closed, T0 + 60_000, 60_000)
    assert not rules.moved_by_mark(closed, T0 + 60_000 + hour, 60_000)
    daily = LeaderboardConfigured("b", reset_period=ResetPeriod.DAILY)
    assert rules.moved_by_mark(daily, rules.MAX_EVENT_MS - 1, 0)  # periods never stop ending
    assert not rules.moved_by_mark(LeaderboardConfigured("b"), T0, 0)  # nothing ever ends
    backfill = replace(daily, time_source=TimeSource.CLIENT)
    assert not rules.moved_by_mark(backfill, T0, 0)  # moved by its own claims only
