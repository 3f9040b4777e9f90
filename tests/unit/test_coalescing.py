"""Coalesced submissions without services: the ScoresSubmitted codec and unpacking, the SDK's
record builder, and the gateway's per-board coalescer (with a fake producer)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from processors.gateway.coalescer import SubmitCoalescer
from processors.kafka.producer import DeliveryCallback, DeliveryFailed, coalesced, one_score
from processors.workers.projector import decode_score_record
from projections.store import SourceRecord, prepare_batch
from streams.codec import SingleObjectCodec
from streams.errors import DecodeError, ValidationError
from streams.events import (
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    PeriodClosed,
    ScoresSubmitted,
    ScoreSubmission,
)

NOW = 1_790_000_000_000


def _subs(n: int) -> tuple[ScoreSubmission, ...]:
    return tuple(
        ScoreSubmission(f"e{i}", f"m{i}", NOW + i, f"p{i}", i * 10, Operator.SET if i else None)
        for i in range(n)
    )


def test_codec_round_trip_and_unpack_keep_each_submission() -> None:
    codec = SingleObjectCodec()
    record = ScoresSubmitted("b1", _subs(3))
    back = codec.decode(codec.encode(record))
    assert back == record
    unpacked = record.unpack()
    assert [i for i, _ in unpacked] == [0, 1, 2]
    _, match = unpacked[2]
    assert (
        match == MatchResultSubmitted("e2", "m2", "b1", NOW + 2, (match.entries[0],))
        and match.entries[0].participant_id == "p2"
    )
    assert match.entries[0].score == 20 and match.entries[0].operator is Operator.SET


def test_unpack_keeps_explicit_indexes_of_a_rebuilt_record() -> None:
    subs = tuple(
        ScoreSubmission(s.event_id, s.match_id, s.occurred_at, s.participant_id, s.score, index=i)
        for s, i in zip(_subs(2), (3, 7), strict=True)
    )
    assert [i for i, _ in ScoresSubmitted("b", subs).unpack()] == [3, 7]


def test_the_score_topic_decoder_takes_both_record_types_only() -> None:
    codec = SingleObjectCodec()
    assert isinstance(
        decode_score_record(codec, codec.encode(ScoresSubmitted("b", _subs(1)))), ScoresSubmitted
    )
    with pytest.raises(DecodeError, match="expected MatchResultSubmitted or ScoresSubmitted"):
        decode_score_record(codec, codec.encode(PeriodClosed("b", "all", 1, "x", 1)))


def test_a_submission_is_applied_at_its_position_with_its_index() -> None:
    cfg = LeaderboardConfigured("b")
    _, match = ScoresSubmitted("b", _subs(5)).unpack()[4]
    rec = SourceRecord(0, 42, match, NOW, index=4)
    assert rec.position == "42:4"
    assert SourceRecord(0, 42, match, NOW).position == "42"
    _, prepared = prepare_batch(cfg, [rec])
    assert [e[0] for e in prepared[0].entries] == [4]  # the entry index is the submission's


def test_sdk_builds_one_record_of_one_entry_matches_and_refuses_the_rest() -> None:
    scores = [one_score("b", f"p{i}", i, at=NOW) for i in range(3)]
    record = coalesced("b", scores, now_ms=NOW)
    assert [s.event_id for s in record.submissions] == [m.event_id for m in scores]
    with pytest.raises(ValidationError, match="1 to 10000"):
        coalesced("b", [], now_ms=NOW)
    with pytest.raises(ValidationError, match="only one-entry matches of board 'b'"):
        coalesced("b", [one_score("other", "p", 1, at=NOW)], now_ms=NOW)
    late = one_score("b", "p", 1, at=NOW + 3_600_000)
    with pytest.raises(ValidationError, match="ahead"):
        coalesced("b", [late], now_ms=NOW)


class FakeProducer:
    """Records what the coalescer produces; the test settles deliveries by hand."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], DeliveryCallback | None]] = []

    def submit(
        self, match: MatchResultSubmitted, *, on_delivery: DeliveryCallback | None = None
    ) -> str:
        self.sent.append(("match", [match.entries[0].participant_id], on_delivery))
        return match.event_id

    def submit_scores(
        self,
        board: str,
        scores: Sequence[MatchResultSubmitted],
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> list[str]:
        self.sent.append(("coalesced", [m.entries[0].participant_id for m in scores], on_delivery))
        return [m.event_id for m in scores]

    def ack(self, i: int, error: str | None = None) -> None:
        tell = self.sent[i][2]
        assert tell is not None
        tell(error)


def _match(pid: str, board: str = "b") -> MatchResultSubmitted:
    m = one_score(board, pid, 1)
    return MatchResultSubmitted(uuid.uuid4().hex, m.match_id, board, m.occurred_at, m.entries)


async def _turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_idle_submission_goes_alone_and_concurrent_ones_coalesce() -> None:
    fake = FakeProducer()
    co = SubmitCoalescer(fake, max_submissions=4, window_s=10.0)  # type: ignore[arg-type]
    first = co.submit(_match("a"))
    await _turn()
    assert fake.sent == [("match", ["a"], fake.sent[0][2])]  # idle: at once, a plain match
    # while "a" is in flight, the next ones wait (the window is long) ...
    futs = [co.submit(_match(p)) for p in ("b", "c")]
    await _turn()
    assert len(fake.sent) == 1 and not any(f.done() for f in futs)
    # ... until the record in flight is acknowledged: then they go as one record
    fake.ack(0)
    await _turn()
    assert first.done() and first.result() is None
    assert [(k, pids) for k, pids, _ in fake.sent] == [("match", ["a"]), ("coalesced", ["b", "c"])]
    fake.ack(1)
    await _turn()
    assert all(f.done() and f.result() is None for f in futs)


async def test_max_submissions_sends_at_once_and_a_lost_record_fails_only_its_own() -> None:
    fake = FakeProducer()
    co = SubmitCoalescer(fake, max_submissions=3, window_s=10.0)  # type: ignore[arg-type]
    lone = co.submit(_match("a"))
    await _turn()
    full = [co.submit(_match(p)) for p in ("b", "c", "d")]  # the third fills the record
    other_board = co.submit(_match("x", board="b2"))
    assert [(k, pids) for k, pids, _ in fake.sent] == [
        ("match", ["a"]),
        ("coalesced", ["b", "c", "d"]),
    ]
    await _turn()
    assert fake.sent[-1][:2] == ("match", ["x"])  # another board: its own record, at once
    fake.ack(1, "scores: timed out")
    fake.ack(0)
    await _turn()
    for f in full:
        with pytest.raises(DeliveryFailed, match="timed out"):
            f.result()
    assert lone.result() is None and not other_board.done()
    assert co.records == 3 and co.submissions == 5


async def test_the_window_bounds_the_wait_behind_a_record_in_flight() -> None:
    fake = FakeProducer()
    co = SubmitCoalescer(fake, max_submissions=64, window_s=0.01)  # type: ignore[arg-type]
    co.submit(_match("a"))
    await _turn()
    late = co.submit(_match("b"))
    await asyncio.sleep(0.05)  # "a" is never acknowledged: "b" goes when the window ends
    assert [(k, pids) for k, pids, _ in fake.sent] == [("match", ["a"]), ("match", ["b"])]
    assert not late.done()


async def test_a_bad_submission_is_refused_before_it_joins_a_record() -> None:
    fake = FakeProducer()
    co = SubmitCoalescer(fake)  # type: ignore[arg-type]
    m = _match("a")
    bad = MatchResultSubmitted(m.event_id, m.match_id, "b", m.occurred_at + 3_600_000, m.entries)
    with pytest.raises(ValidationError, match="ahead"):
        co.submit(bad)
    await _turn()
    assert fake.sent == []


async def test_more_records_in_flight_send_at_once_until_the_limit() -> None:
    fake = FakeProducer()
    co = SubmitCoalescer(fake, max_submissions=64, window_s=10.0, max_in_flight=2)  # type: ignore[arg-type]
    co.submit(_match("a"))
    await _turn()
    co.submit(_match("b"))  # one record in flight, the limit is two: sent at once
    await _turn()
    waiting = [co.submit(_match(p)) for p in ("c", "d")]  # two in flight: these wait
    await _turn()
    assert [pids for _, pids, _ in fake.sent] == [["a"], ["b"]]
    fake.ack(0)
    await _turn()
    assert [pids for _, pids, _ in fake.sent] == [["a"], ["b"], ["c", "d"]]
    assert not any(f.done() for f in waiting)


async def test_a_record_never_acknowledged_fails_its_submissions_after_the_timeout() -> None:
    fake = FakeProducer()
    co = SubmitCoalescer(fake, max_submissions=64, window_s=10.0, timeout_s=0.05)  # type: ignore[arg-type]
    lost = co.submit(_match("a"))
    await _turn()
    assert not lost.done()
    await asyncio.sleep(0.1)  # no delivery report: the record's one timer fails it
    with pytest.raises(DeliveryFailed, match=r"not acknowledged by Kafka within 0\.05s"):
        lost.result()
    fake.ack(0)  # the report that comes late changes nothing, and frees the board
    await _turn()
    kept = co.submit(_match("b"))
    await _turn()
    fake.ack(1)
    await _turn()
    assert kept.result() is None
