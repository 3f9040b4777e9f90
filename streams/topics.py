"""Topic definitions: names, partition counts and configs of every topic (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.settings import Settings

__all__ = ["TopicSpec", "all_topics", "input_topics"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as it should exist on the broker."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    key: str = "leaderboard_id"
    schema: str = ""
    purpose: str = ""

    @property
    def retention(self) -> str:
        """Human-readable retention: infinite, compacted, or the broker default."""
        if self.config.get("cleanup.policy") == "compact":
            return "compacted"
        ms = self.config.get("retention.ms")
        if ms == "-1":
            return "infinite"
        return f"{int(ms) // 3_600_000} h" if ms else "broker default"


def input_topics(settings: Settings) -> list[str]:
    """Logical names of the topics that get a dead-letter topic beside them."""
    return [
        settings.scores_topic,
        settings.config_topic,
        settings.rank_changes_topic,
        settings.participants_topic,
    ]


#: Dead letters are kept four weeks: long enough to inspect and replay by hand.
_DLQ_RETENTION_MS = str(28 * 24 * 3600 * 1000)


def all_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic of the service, with the prefix of ``settings`` applied."""
    n = settings.partitions
    specs = [
        TopicSpec(
            settings.topic(settings.scores_topic),
            n,
            # The broker stamps each record with its append time: the time the workers
            # trust (a claimed event time may not run ahead of it), kept in the log for replay.
            {
                "retention.ms": "-1",
                "retention.bytes": "-1",
                "message.timestamp.type": "LogAppendTime",
            },
            schema="MatchResultSubmitted | ScoresSubmitted",
            purpose="match results from producers; the log is the source of truth",
        ),
        TopicSpec(
            settings.topic(settings.config_topic),
            1,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            schema="LeaderboardConfigured",
            purpose="leaderboard configuration; the latest record per board wins",
        ),
        TopicSpec(
            settings.topic(settings.rank_changes_topic),
            n,
            schema="RankChanged",
            purpose="versioned rank deltas per board (gateway, analytics)",
        ),
        TopicSpec(
            settings.topic(settings.notifications_topic),
            n,
            schema="ParticipantsNotified",
            purpose="overtaken / entered_top_n / left_top_n notices",
        ),
        TopicSpec(
            settings.topic(settings.periods_topic),
            n,
            schema="PeriodClosed",
            purpose="a period's final standings were written to PostgreSQL",
        ),
        TopicSpec(
            settings.topic(settings.participants_topic),
            n,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            key="participant_id",
            schema="ParticipantProfileUpdated",
            purpose="participant profiles; the latest record per participant wins",
        ),
    ]
    for name in input_topics(settings):
        specs.append(
            TopicSpec(
                settings.dlq(name),
                1,
                {"retention.ms": _DLQ_RETENTION_MS},
                key="source key",
                schema="original bytes",
                purpose=f"dead letters of {settings.topic(name)}; reason and position in headers",
            )
        )
    return specs
