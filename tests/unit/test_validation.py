"""Producer-edge validation: good input becomes events, bad input one readable error line."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import ValidationError
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.rules import MAX_EXACT as MAX_ABS_SCORE
from streams.validation import parse_board, parse_match, parse_time


def line(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "leaderboard_id": "arena-1",
        "match_id": "m-1",
        "occurred_at": "2025-01-31T12:00:00Z",
        "entries": [{"participant_id": "alice", "score": 10}],
    }
    base.update(kw)
    return base


def test_good_match_becomes_an_event() -> None:
    event = parse_match(
        line(
            entries=[
                {
                    "participant_id": "alice",
                    "score": 10,
                    "operator": "incr",
                    "metadata": {"a": "b"},
                },
                {"participant_id": "bob", "score": -MAX_ABS_SCORE},
            ]
        )
    )
    assert event.leaderboard_id == "arena-1"
    assert event.match_id == "m-1"
    assert event.occurred_at == 1_738_324_800_000
    assert event.entries == (
        ScoreEntry("alice", 10, Operator.INCR, {"a": "b"}),
        ScoreEntry("bob", -MAX_ABS_SCORE),
    )
    assert event.event_id  # generated


def test_missing_ids_and_time_are_filled() -> None:
    event = parse_match(
        {"leaderboard_id": "b", "entries": [{"participant_id": "p", "score": 1}]}, now_ms=42
    )
    assert event.occurred_at == 42
    assert event.match_id == event.event_id


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (0, 0),
        ("1700000000123", 1_700_000_000_123),
        ("2025-01-31T12:00:00Z", 1_738_324_800_000),
        ("2025-01-31T13:00:00+01:00", 1_738_324_800_000),
        ("2025-01-31T12:00:00", 1_738_324_800_000),
        ("2025-01-31T12:00:00.123Z", 1_738_324_800_123),
    ],
)
def test_parse_time(value: Any, ms: int) -> None:
    assert parse_time(value) == ms


@pytest.mark.parametrize("value", ["yesterday", "", -1, True, 3.5, "99999-01-01"])
def test_parse_time_refuses(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_time(value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            line(entries=[{"participant_id": "p", "score": 2**53}]),
            f"entries[0].score: must satisfy |score| < 2^53, i.e. between {-MAX_ABS_SCORE} "
            f"and {MAX_ABS_SCORE} (got {2**53})",
        ),
        (
            line(entries=[{"participant_id": "p", "score": 1}, {"score": 3}]),
            "entries[1].participant_id: required field is missing",
        ),
        (
            line(entries=[{"participant_id": "", "score": 3}]),
            "entries[0].participant_id: String should have at least 1 character",
        ),
        (
            line(entries=[{"participant_id": "   ", "score": 3}]),
            "entries[0].participant_id: is blank",
        ),
        (
            line(entries=[{"participant_id": "adm\u200bin", "score": 3}]),
            "entries[0].participant_id: contains an invisible or format character (U+200B)",
        ),
        (
            line(entries=[{"participant_id": "evil\u202eoc", "score": 3}]),
            "entries[0].participant_id: contains an invisible or format character (U+202E)",
        ),
        (
            line(entries=[{"participant_id": "a\u0085b", "score": 3}]),
            "entries[0].participant_id: contains control characters",
        ),
        (
            line(entries=[{"participant_id": "e\u0301", "score": 3}]),
            "entries[0].participant_id: is not in Unicode NFC form",
        ),
        (
            line(entries=[{"participant_id": "p" * 129, "score": 3}]),
            "entries[0].participant_id: String should have at most 128 characters",
        ),
        (
            line(entries=[{"participant_id": "p", "score": 1.5}]),
            "entries[0].score: Input should be a valid integer (got 1.5)",
        ),
        (
            line(entries=[{"participant_id": "p", "score": "12"}]),
            "entries[0].score: Input should be a valid integer (got '12')",
        ),
        (
            line(entries=[{"participant_id": "p", "score": 1, "operator": "max"}]),
            "entries[0].operator: Input should be 'best', 'set', 'incr' or 'decr'",
        ),
        (line(color="red"), "color: unknown field (not allowed in this record)"),
        (
            line(entries=[{"participant_id": "p", "score": 1, "bonus": 2}]),
            "entries[0].bonus: unknown field",
        ),
        (line(entries=[]), "entries: List should have at least 1 item"),
        (
            line(leaderboard_id="a b"),
            "leaderboard_id: must be 1 to 64 characters of [A-Za-z0-9_.-]",
        ),
        (line(leaderboard_id="x" * 65), "leaderboard_id: must be 1 to 64 characters"),
        (line(occurred_at="soon"), "occurred_at: expected ISO-8601"),
        (line(occurred_at=-5), "occurred_at: must be between 1970 and 9999"),
    ],
)
def test_bad_match_gives_one_clear_line(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_match(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert "pydantic" not in text


def test_several_errors_are_joined_on_one_line() -> None:
    with pytest.raises(ValidationError) as info:
        parse_match({"leaderboard_id": "b", "entries": [{"score": 2**60}], "x": 1})
    text = str(info.value)
    assert text.count(";") == 2
    assert "entries[0].participant_id" in text and "entries[0].score" in text and "x:" in text


def test_not_an_object() -> None:
    with pytest.raises(ValidationError, match="input: "):
        parse_match([1, 2])  # type: ignore[arg-type]


@given(st.integers(min_value=-MAX_ABS_SCORE, max_value=MAX_ABS_SCORE))
def test_every_exact_score_is_accepted(score: int) -> None:
    event = parse_match(line(entries=[{"participant_id": "p", "score": score}]))
    assert event.entries[0].score == score


@given(st.integers(min_value=MAX_ABS_SCORE + 1, max_value=2**70) | st.integers(max_value=-(2**53)))
def test_every_inexact_score_is_refused(score: int) -> None:
    with pytest.raises(ValidationError, match=r"\|score\| < 2\^53"):
        parse_match(line(entries=[{"participant_id": "p", "score": score}]))


def test_board_config() -> None:
    cfg = parse_board(
        {
            "leaderboard_id": "cup.2025",
            "sort_order": "asc",
            "operator": "set",
            "reset_period": "monthly",
            "watch_top_n": 10,
            "starts_at": "2025-01-01T00:00:00Z",
            "ends_at": "2025-02-01T00:00:00Z",
            "metadata": {"title": "Cup"},
        },
        configured_at=7,
    )
    assert cfg == LeaderboardConfigured(
        "cup.2025",
        SortOrder.ASC,
        Operator.SET,
        ResetPeriod.MONTHLY,
        7,
        1_735_689_600_000,
        1_738_368_000_000,
        10,
        {"title": "Cup"},
        BoardStatus.ACTIVE,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"leaderboard_id": "b", "sort_order": "up"}, "sort_order: Input should be 'desc' or"),
        ({"leaderboard_id": "b", "watch_top_n": -1}, "watch_top_n: Input should be greater"),
        ({"leaderboard_id": "b", "reset_period": "yearly"}, "reset_period: Input should be"),
        ({"leaderboard_id": "b", "starts_at": 10, "ends_at": 5}, "ends_at must be after starts_at"),
        ({"leaderboard_id": "b", "foo": 1}, "foo: unknown field"),
        ({}, "leaderboard_id: required field is missing"),
    ],
)
def test_bad_board_config(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_board(data)
    assert message in str(info.value)
