"""Producer SDK, topic provisioning, dead letters and the event CLI against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from processors.bootstrap import get_codec
from processors.kafka.admin import create_topics, list_topics, require_topics
from processors.kafka.producer import (
    DeliveryFailed,
    LeaderboardProducer,
    delivery_future,
    read_boards,
    read_to_end,
)
from streams.errors import DecodeError, LeaderboardError, ServiceUnavailable
from streams.events import (
    BoardStatus,
    LeaderboardConfigured,
    MatchResultSubmitted,
    Operator,
    ResetPeriod,
    ScoreEntry,
    SortOrder,
)
from streams.settings import Settings, get_settings
from streams.topics import all_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def ev_settings(stack: Settings) -> Settings:
    """Settings with a topic prefix no other test uses, and its topics created."""
    settings = stack.model_copy(update={"topic_prefix": f"t-{uuid.uuid4().hex[:10]}-"})
    create_topics(settings)
    return settings


def match(board: str, n: int) -> MatchResultSubmitted:
    return MatchResultSubmitted(
        event_id=f"e-{board}-{n}",
        match_id=f"m-{n}",
        leaderboard_id=board,
        occurred_at=1_700_000_000_000 + n,
        entries=(ScoreEntry("alice", n, Operator.INCR, {"k": "v"}), ScoreEntry("bob", -n)),
    )


def test_topics_create_is_idempotent_and_listed(stack: Settings) -> None:
    settings = stack.model_copy(update={"topic_prefix": f"t-{uuid.uuid4().hex[:10]}-"})
    created = create_topics(settings)
    assert sorted(created) == sorted(spec.name for spec in all_topics(settings))
    assert create_topics(settings) == []
    infos = {info.name: info for info in list_topics(settings)}
    scores = infos[settings.topic("scores")]
    assert scores.partitions == settings.partitions
    assert scores.retention == "infinite"
    config = infos[settings.topic(settings.config_topic)]
    assert config.partitions == 1 and config.retention == "compacted"
    assert settings.dlq("scores") in infos and settings.dlq(settings.config_topic) in infos


def test_require_topics_names_what_is_missing(ev_settings: Settings) -> None:
    with pytest.raises(LeaderboardError, match="nope do not exist: run `leaderboard topics"):
        require_topics(ev_settings, [ev_settings.topic("scores"), "nope"])


def test_submit_and_read_back_keyed_and_in_order(ev_settings: Settings) -> None:
    sent = [match(board, n) for n in range(20) for board in ("b-1", "b-2", "b-3")]
    with LeaderboardProducer(ev_settings) as producer:
        for event in sent:
            assert producer.submit(event) == event.event_id
        producer.flush(30)
        assert producer.delivered == len(sent)
    codec = get_codec(ev_settings)
    got: dict[str, list[MatchResultSubmitted]] = {}
    partitions: dict[str, set[int | None]] = {}
    for msg in read_to_end(ev_settings, ev_settings.topic("scores")):
        key = msg.key()
        assert isinstance(key, bytes)
        value = msg.value()
        assert isinstance(value, bytes)
        event = codec.decode_as(value, MatchResultSubmitted)
        assert key.decode() == event.leaderboard_id
        got.setdefault(event.leaderboard_id, []).append(event)
        partitions.setdefault(event.leaderboard_id, set()).add(msg.partition())
    for board in ("b-1", "b-2", "b-3"):
        assert got[board] == [e for e in sent if e.leaderboard_id == board]  # order kept
        assert len(partitions[board]) == 1  # one board, one partition


def test_submit_score_validates_and_sends(ev_settings: Settings) -> None:
    with LeaderboardProducer(ev_settings) as producer:
        event_id = producer.submit_score(
            "arena", "carol", 42, at="2025-01-31T12:00:00Z", operator="set", match_id="mx"
        )
        with pytest.raises(LeaderboardError, match=r"entries\[0\].score: must satisfy"):
            producer.submit_score("arena", "carol", 2**53)
        with pytest.raises(LeaderboardError, match="leaderboard_id: must be 1 to 64"):
            producer.submit(match("bad board", 1))
    [msg] = list(read_to_end(ev_settings, ev_settings.topic("scores")))
    value = msg.value()
    assert isinstance(value, bytes)
    assert get_codec(ev_settings).decode(value) == MatchResultSubmitted(
        event_id, "mx", "arena", 1_738_324_800_000, (ScoreEntry("carol", 42, Operator.SET),)
    )


def test_read_boards_latest_configuration_wins(ev_settings: Settings) -> None:
    with LeaderboardProducer(ev_settings) as producer:
        producer.configure(LeaderboardConfigured("a", configured_at=1))
        producer.configure(
            LeaderboardConfigured("b", SortOrder.ASC, Operator.SET, ResetPeriod.DAILY, 1)
        )
        producer.configure(LeaderboardConfigured("a", watch_top_n=5, configured_at=2))
    boards = read_boards(ev_settings)
    assert boards == {
        "a": LeaderboardConfigured("a", watch_top_n=5, configured_at=2),
        "b": LeaderboardConfigured("b", SortOrder.ASC, Operator.SET, ResetPeriod.DAILY, 1),
    }


def test_dead_letter_keeps_bytes_and_headers(ev_settings: Settings) -> None:
    junk = b"\x00\x01not avro"
    codec = get_codec(ev_settings)
    with pytest.raises(DecodeError) as info:
        codec.decode(junk)
    with LeaderboardProducer(ev_settings) as producer:
        producer.send_dead_letter(
            ev_settings.topic("scores"), 3, 1234, b"b-1", junk, str(info.value)
        )
        producer.send_dead_letter("scores", 1, 7, None, None, "empty record")
    msgs = list(read_to_end(ev_settings, ev_settings.dlq("scores")))
    assert len(msgs) == 2
    first, second = msgs
    assert first.value() == junk and first.key() == b"b-1"
    assert dict(first.headers() or []) == {
        "reason": b"not an Avro single-object record",
        "source.topic": ev_settings.topic("scores").encode(),
        "source.partition": b"3",
        "source.offset": b"1234",
    }
    assert dict(second.headers() or [])["source.topic"] == ev_settings.topic("scores").encode()


def test_failed_delivery_is_raised_on_flush(ev_settings: Settings) -> None:
    # The client allows 2 MB, the broker's default limit is ~1 MB: the broker refuses it.
    producer = LeaderboardProducer(ev_settings, config={"message.max.bytes": 4_000_000})
    producer.publish_raw(ev_settings.topic("scores"), "b", os.urandom(2_000_000))
    with pytest.raises(DeliveryFailed, match="1 record"):
        producer.flush(30)
    producer.close()


def test_unreachable_kafka_is_one_clear_error() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="none-")
    producer = LeaderboardProducer(settings, config={"message.timeout.ms": 1000})
    producer.publish_raw("none-scores", "b", b"x")
    with pytest.raises((DeliveryFailed, ServiceUnavailable), match=r"127\.0\.0\.1:1"):
        producer.flush(5)
    with pytest.raises(ServiceUnavailable, match="Kafka does not answer"):
        list(read_to_end(settings, "none-scores", timeout=2))


async def test_each_submission_is_settled_by_its_own_delivery_future(
    ev_settings: Settings,
) -> None:
    """The gateway's path: no flush; the poll thread settles each record's future on its ack."""
    producer = LeaderboardProducer(ev_settings)
    producer.start_poller()
    try:
        loop = asyncio.get_running_loop()
        settled = [delivery_future(loop) for _ in range(50)]
        ids = [
            producer.submit_score("fut-board", f"p{i}", i, on_delivery=tell)
            for i, (_, tell) in enumerate(settled)
        ]
        await asyncio.wait_for(asyncio.gather(*(fut for fut, _ in settled)), 15)
        # the futures resolve inside the delivery callbacks; librdkafka counts the report
        # they came in until the poll that serves it returns: give that poll a moment
        for _ in range(100):
            if producer.pending() == 0:
                break
            await asyncio.sleep(0.01)
        assert producer.pending() == 0
        got = [
            get_codec(ev_settings).decode_as(m.value() or b"", MatchResultSubmitted).event_id
            for m in read_to_end(ev_settings, ev_settings.topic("scores"))
        ]
        assert set(ids) <= set(got)
    finally:
        producer.close(10)


async def test_a_lost_record_fails_its_own_future_and_not_a_later_flush() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="none-")
    producer = LeaderboardProducer(settings, config={"message.timeout.ms": 1000})
    producer.start_poller()
    fut, tell = delivery_future(asyncio.get_running_loop())
    producer.submit_score("b", "p", 1, on_delivery=tell)
    with pytest.raises(DeliveryFailed, match="none-scores"):
        await asyncio.wait_for(fut, 10)
    producer.flush(1)  # the caller was told: the failure is not reported a second time
    producer.close(1)


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(ev_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("LEADERBOARD_TOPIC_PREFIX", ev_settings.topic_prefix)
    monkeypatch.setenv("LEADERBOARD_KAFKA_BOOTSTRAP", ev_settings.kafka_bootstrap)
    get_settings.cache_clear()
    yield ev_settings
    get_settings.cache_clear()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    from processors.cli import cli

    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        if isinstance(result.exception, LeaderboardError):
            return 1, f"{result.output}error: {result.exception}"
        raise result.exception
    return result.exit_code, result.output


def test_cli_boards_produce_file_and_dlq(cli_env: Settings, tmp_path: Path) -> None:
    code, out = run("boards", "create", "arena", "--sort", "desc", "--top-n", "5")
    assert code == 0, out
    assert "created board arena" in out
    code, out = run("boards", "create", "arena", "--sort", "asc")
    assert code == 2 and "fixed at creation" in out
    code, out = run("boards", "list")
    assert "arena" in out

    good = {"leaderboard_id": "arena", "entries": [{"participant_id": "p", "score": 1}]}
    lines = [json.dumps(good), json.dumps({**good, "extra": 1}), "{", json.dumps(good)]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out = run("produce", "--file", str(path))
    assert code == 1
    assert "line 2: extra: unknown field" in out and "line 3: not valid JSON" in out
    assert "nothing was sent" in out
    assert list(read_to_end(cli_env, cli_env.topic("scores"))) == []

    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    code, out = run("produce", "--file", str(path))
    assert code == 0 and "sent 2 match results (2 entries)" in out
    code, out = run("produce", "--board", "ghost", "--participant", "p", "--score", "1")
    assert code == 1 and "unknown leaderboard(s) ghost" in out
    assert len(list(read_to_end(cli_env, cli_env.topic("scores")))) == 2

    with LeaderboardProducer(cli_env) as producer:
        producer.send_dead_letter(
            "scores", 2, 99, "arena", b"junk", "unknown schema fingerprint 0x1"
        )
        for i in range(3):
            producer.send_dead_letter("scores", 2, 100 + i, "arena", b"junk", f"later {i}")
    code, out = run("dlq", "list")
    assert code == 0
    assert "unknown schema fingerprint 0x1" in out and "@99" in out and "4 dead letter" in out
    code, out = run("dlq", "list", "--limit", "2")  # the newest two
    assert code == 0 and "later 1" in out and "later 2" in out and "later 0" not in out
    assert "2 dead letter(s)" in out and "(the newest 2)" in out
    code, out = run("dlq", "list", "--limit", "1", "--oldest")
    assert code == 0 and "@99" in out and "later" not in out

    # a close cannot reach back over scores already applied, and is final
    code, out = run("boards", "close", "arena", "--at", "2026-01-01T00:00:00Z")
    assert code == 2 and "at least 2 s ahead" in out
    code, out = run("boards", "close", "arena")
    assert code == 0 and "closed board arena" in out
    assert read_boards(cli_env)["arena"].status is BoardStatus.CLOSED
    code, out = run("boards", "close", "arena")
    assert code == 1 and "already closed" in out


def test_cli_simulate_reaches_a_small_rate(cli_env: Settings) -> None:
    code, out = run("simulate", "--rate", "2000", "--duration", "2", "--boards", "5", "--seed", "1")
    assert code == 0, out
    assert "reached the asked rate" in out
    boards = read_boards(cli_env)
    assert sorted(boards) == [f"sim-{i:03d}" for i in range(5)]
    assert {cfg.operator for cfg in boards.values()} >= {Operator.BEST, Operator.INCR}
    records = list(read_to_end(cli_env, cli_env.topic("scores")))
    codec = get_codec(cli_env)
    entries = sum(
        len(codec.decode_as(m.value() or b"", MatchResultSubmitted).entries) for m in records
    )
    assert 3000 <= entries <= 4200


# --- Faust --------------------------------------------------------------------------------


async def test_faust_agent_receives_typed_events(ev_settings: Settings) -> None:
    """Records produced by the SDK reach a Faust agent as typed events via the Avro codec."""
    import asyncio

    import faust
    from faust.serializers import codecs

    from processors.bootstrap import faust_codec

    codecs.register("leaderboard_avro_test", faust_codec(get_codec(ev_settings)))
    app = faust.App(
        f"t-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{ev_settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(
        ev_settings.topic("scores"),
        value_serializer="leaderboard_avro_test",
        key_serializer="raw",
        partitions=ev_settings.partitions,
    )
    sent = [match("b-faust", n) for n in range(5)]
    got: list[MatchResultSubmitted] = []
    done = asyncio.Event()

    @app.agent(topic)
    async def collect(stream: faust.StreamT[MatchResultSubmitted]) -> None:
        async for event in stream:
            got.append(event)
            if len(got) >= len(sent):
                done.set()

    with LeaderboardProducer(ev_settings) as producer:
        for event in sent:
            producer.submit(event)
    app.finalize()
    await app.start()
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await app.stop()
    assert got == sent


def test_kafka_tools_run_against_the_configured_cluster(ev_settings: Settings) -> None:
    """`leaderboard stack kafka TOOL`: Kafka's own tools, with the bootstrap servers filled in."""
    env = {**os.environ, "LEADERBOARD_KAFKA_BOOTSTRAP": ev_settings.kafka_bootstrap}
    out = subprocess.run(
        [sys.executable, "-m", "processors", "stack", "kafka", "topics", "--list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    assert ev_settings.topic("scores") in out.stdout.split()
    assert "INFO" not in out.stderr
