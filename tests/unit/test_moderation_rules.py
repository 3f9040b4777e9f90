"""The pure rules of moderation and tournament limits, the operator's input, and the schemas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import rules
from streams.codec import SCHEMA_DIR, SchemaStore, SingleObjectCodec
from streams.errors import ValidationError
from streams.events import (
    LeaderboardConfigured,
    LeaderboardModerated,
    ModerationAction,
    Operator,
    ResetPeriod,
    SortOrder,
)
from streams.validation import parse_board, parse_moderation

A = ModerationAction
ROWS = st.lists(
    st.tuples(
        st.sampled_from(list(Operator)),
        st.integers(-1000, 1000),
    ),
    max_size=12,
)


def prefixes(ops: list[tuple[Operator, int]]) -> list[tuple[str, Operator, int]]:
    return [
        (rules.member(rules.MIN_EVENT_MS, i, 0, ""), op, sub) for i, (op, sub) in enumerate(ops)
    ]


@given(ROWS, st.sampled_from(list(SortOrder)))
def test_refold_is_the_fold_of_combine(ops: list[tuple[Operator, int]], sort: SortOrder) -> None:
    score: int | None = None
    last = ""
    for pre, op, sub in prefixes(ops):
        new = rules.combine(op, score, sub, sort)
        if score is None or new != score:
            last = pre
        score = new
    got = rules.refold(prefixes(ops), sort)
    assert got == (None if score is None else (score, last))


@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=12), st.data())
def test_a_void_subtracts_on_incr_and_keeps_the_best_of_the_rest(
    scores: list[int], data: st.DataObject
) -> None:
    drop = data.draw(st.integers(0, len(scores) - 1))
    rest = scores[:drop] + scores[drop + 1 :]
    incr = prefixes([(Operator.INCR, s) for s in scores])
    got = rules.refold(incr[:drop] + incr[drop + 1 :], SortOrder.DESC)
    assert got is not None and got[0] == sum(scores) - scores[drop]
    best = prefixes([(Operator.BEST, s) for s in scores])
    got = rules.refold(best[:drop] + best[drop + 1 :], SortOrder.ASC)
    assert got is not None and got[0] == min(rest)
    # the tie-break prefix is the first entry that reached that score
    first = next(i for i, s in enumerate(scores) if i != drop and s == min(rest))
    assert got[1] == best[first][0]


def test_limit_reason() -> None:
    cfg = LeaderboardConfigured("cup", max_attempts=2, max_participants=3)
    assert rules.limit_reason(cfg, "2026-11-26", "ann", 1, 3) is None
    assert rules.limit_reason(cfg, "2026-11-26", "ann", 2, 1) == (
        "max_attempts: participant ann has used its 2 attempts of period 2026-11-26"
    )
    assert rules.limit_reason(cfg, "all", "bob", 0, 2) is None
    assert rules.limit_reason(cfg, "all", "bob", 0, 3) == (
        "max_participants: period all is full (3 participants); bob is not admitted"
    )
    assert rules.limit_reason(LeaderboardConfigured("open"), "all", "x", 10**6, 10**6) is None


def moderation(**kw: object) -> LeaderboardModerated:
    base: dict[str, object] = {
        "event_id": "m1",
        "leaderboard_id": "b",
        "action": A.PARTICIPANT_BANNED,
        "issued_by": "ops",
        "reason": "r",
        "occurred_at": rules.MIN_EVENT_MS,
        "participant_id": "ann",
    }
    return LeaderboardModerated(**{**base, **kw})  # type: ignore[arg-type]


def test_moderation_reason() -> None:
    cfg = LeaderboardConfigured("b")
    assert rules.moderation_reason(cfg, moderation()) is None
    assert rules.moderation_reason(None, moderation()) == "unknown leaderboard 'b'"
    assert "issued_by" in (rules.moderation_reason(cfg, moderation(issued_by=" ")) or "")
    void = moderation(action=A.MATCH_VOIDED, participant_id=None, voided_event_id="e9")
    assert "does not retain entries" in (rules.moderation_reason(cfg, void) or "")
    kept = LeaderboardConfigured("b", retain_entries=True)
    assert rules.moderation_reason(kept, void) is None
    assert rules.moderation_reason(kept, moderation(participant_id="a\u200bb")) is not None


def test_parse_moderation_one_line_errors() -> None:
    ev = parse_moderation("b", {"action": "void", "event_id": "e1", "reason": "cheat"}, "ops", 5)
    assert (ev.action, ev.target, ev.issued_by, ev.occurred_at) == (A.MATCH_VOIDED, "e1", "ops", 5)
    assert ev.event_id.startswith("mod-")
    for data, fragment in [
        ({"action": "ban", "participant_id": "x"}, "reason"),
        ({"action": "nuke", "participant_id": "x", "reason": "r"}, "action"),
        ({"action": "void", "participant_id": "x", "reason": "r"}, "event_id"),
        ({"action": "ban", "participant_id": "x", "reason": "r", "period": "all"}, "remove only"),
    ]:
        with pytest.raises(ValidationError) as err:
            parse_moderation("b", data, "ops", 5)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValidationError, match="leaderboard_id"):
        parse_moderation("a b", {"action": "ban", "participant_id": "x", "reason": "r"}, "o", 5)


def test_board_limits_are_validated() -> None:
    cfg = parse_board({"leaderboard_id": "cup", "max_attempts": 3, "retain_entries": True})
    assert (cfg.max_attempts, cfg.max_participants, cfg.retain_entries) == (3, None, True)
    with pytest.raises(ValidationError, match="max_participants"):
        parse_board({"leaderboard_id": "cup", "max_participants": 0})
    with pytest.raises(ValidationError, match="plain board"):
        parse_board({"leaderboard_id": "cup", "max_attempts": 1, "metadata": {"shards": "hash:2"}})


def test_moderation_and_limits_round_trip_the_codec() -> None:
    codec = SingleObjectCodec()
    ev = moderation(action=A.PARTICIPANT_REMOVED, period="2026-11-26")
    assert codec.decode(codec.encode(ev)) == ev
    cfg = LeaderboardConfigured("cup", max_attempts=2, max_participants=9, retain_entries=True)
    assert codec.decode(codec.encode(cfg)) == cfg


def test_a_version_3_configuration_reads_with_no_limits(tmp_path: Path) -> None:
    """A record written before the limits (v3 writer) reads as a board without them; a v3
    reader (an older consumer) reads a new record, dropping them."""
    old = json.loads((SCHEMA_DIR / "history" / "LeaderboardConfigured.v3.avsc").read_text())
    assert "max_attempts" not in {f["name"] for f in old["fields"]}
    (tmp_path / "history").mkdir()
    shutil.copy(SCHEMA_DIR / "history" / "LeaderboardConfigured.v3.avsc", tmp_path / "x.avsc")
    shutil.copy(SCHEMA_DIR / "LeaderboardConfigured.avsc", tmp_path / "history" / "v4.avsc")
    older = SingleObjectCodec(SchemaStore(tmp_path))
    new = SingleObjectCodec()
    cfg = LeaderboardConfigured("cup", configured_at=rules.MIN_EVENT_MS)
    got = new.decode(older.encode(cfg))
    assert isinstance(got, LeaderboardConfigured)
    assert (got.max_attempts, got.max_participants, got.retain_entries) == (None, None, False)
    limited = LeaderboardConfigured("cup", configured_at=rules.MIN_EVENT_MS, max_attempts=2)
    back = older.decode(new.encode(limited))
    assert isinstance(back, LeaderboardConfigured) and back.max_attempts is None


def test_dead_letter_reason_kinds() -> None:
    from processors.workers.metrics import reason_kind

    cfg = LeaderboardConfigured("cup", max_attempts=1, max_participants=1)
    assert reason_kind(rules.banned_reason("ann")) == "banned"
    assert reason_kind(rules.limit_reason(cfg, "all", "ann", 1, 0) or "") == "max_attempts"
    assert reason_kind(rules.limit_reason(cfg, "all", "bob", 0, 1) or "") == "max_participants"
    assert reason_kind(rules.unknown_match_reason("e1")) == "moderation"


HOUR = 3_600_000


def test_a_daily_board_reset_at_four_runs_from_four_to_four() -> None:
    cfg = LeaderboardConfigured("daily4", reset_period=ResetPeriod.DAILY, reset_offset_ms=4 * HOUR)
    day = 1_795_651_200_000  # 2026-11-26T00:00:00Z
    assert rules.board_period(cfg, day + 4 * HOUR - 1) == "2026-11-25"
    assert rules.board_period(cfg, day + 4 * HOUR) == "2026-11-26"
    assert rules.period_span(cfg, "2026-11-26") == (day + 4 * HOUR, day + 28 * HOUR)
    assert rules.period_closes_at(cfg, "2026-11-26", 1000) == day + 28 * HOUR + 1000
    plain = LeaderboardConfigured("daily", reset_period=ResetPeriod.DAILY)
    assert rules.board_period(plain, day + 4 * HOUR - 1) == "2026-11-26"


def test_a_weekly_board_from_saturday_noon() -> None:
    offset = (5 * 24 + 12) * HOUR
    cfg = LeaderboardConfigured("cup", reset_period=ResetPeriod.WEEKLY, reset_offset_ms=offset)
    monday = 1_795_392_000_000  # 2026-11-23T00:00:00Z, ISO week 48
    assert rules.board_period(cfg, monday + offset - 1) == "2026-W47"
    assert rules.board_period(cfg, monday + offset) == "2026-W48"
    assert rules.period_span(cfg, "2026-W48") == (monday + offset, monday + offset + 7 * 24 * HOUR)


def test_reset_offsets_are_validated() -> None:
    assert rules.reset_offset_reason(ResetPeriod.DAILY, 24 * HOUR) is not None
    assert rules.reset_offset_reason(ResetPeriod.NONE, 1) is not None
    assert rules.reset_offset_reason(ResetPeriod.MONTHLY, 27 * 24 * HOUR) is None
    with pytest.raises(ValidationError, match="reset_offset_ms must be from 0 to 86399999"):
        parse_board({"leaderboard_id": "d", "reset_period": "daily", "reset_offset_ms": -1})
    cfg = parse_board({"leaderboard_id": "d", "reset_period": "daily", "reset_offset_ms": HOUR})
    assert SingleObjectCodec().decode(SingleObjectCodec().encode(cfg)) == cfg


def test_cli_reset_at() -> None:
    import click

    from processors.cli.boards import offset_ms

    assert offset_ms("04:00") == 4 * HOUR
    assert offset_ms("5d12h") == (5 * 24 + 12) * HOUR
    assert offset_ms("90m") == 90 * 60_000
    assert offset_ms("14400000") == 4 * HOUR
    for bad in ("", "25:00", "4x"):
        with pytest.raises(click.BadParameter):
            offset_ms(bad)


def test_the_scripts_derived_key_names_are_the_board_keys() -> None:
    """rules.lua names bn, mx, at:<period> and h:<period> from the key base; BoardKeys (used
    by the expiry of closed periods, clear and swap) must name the same keys."""
    from projections.keys import BoardKeys

    keys = BoardKeys("cup", "lb")
    kb = f"{keys.base}:"
    lua = (Path(__file__).parents[2] / "projections" / "lua" / "rules.lua").read_text()
    for suffix in ("'bn'", "'mx'", "'at:'", "'h:'"):
        assert f"kb .. {suffix}" in lua or f"lim.kb .. {suffix}" in lua, suffix
    assert (keys.banned, keys.matches) == (kb + "bn", kb + "mx")
    assert (keys.attempts("p"), keys.history("p")) == (kb + "at:p", kb + "h:p")


def test_a_removal_names_a_period_of_the_board() -> None:
    daily = LeaderboardConfigured("d", reset_period=ResetPeriod.DAILY)
    remove = moderation(action=A.PARTICIPANT_REMOVED, period="2026-11-26")
    assert rules.moderation_reason(daily, remove) is None
    for bad in ("2026-11", "2026-13-01", "garbage", "2026-11-6", "9" * 25 + "-01-01"):
        reason = rules.moderation_reason(
            daily, moderation(action=A.PARTICIPANT_REMOVED, period=bad)
        )
        assert reason == f"period {bad!r} is not a daily period (e.g. '2026-11-26')"
    plain = LeaderboardConfigured("p")
    assert rules.moderation_reason(plain, moderation(period="all")) is None
    assert "not a none period" in (rules.moderation_reason(plain, moderation(period="x")) or "")
    monthly = LeaderboardConfigured("m", reset_period=ResetPeriod.MONTHLY)
    weekly = LeaderboardConfigured("w", reset_period=ResetPeriod.WEEKLY)
    for cfg, bad in (
        (monthly, "9" * 25 + "-01"),
        (weekly, "9" * 25 + "-W01"),
        (weekly, "2026-W99"),
    ):
        assert rules.moderation_reason(cfg, moderation(period=bad)) is not None
