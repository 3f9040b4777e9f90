"""Domain errors: every failure the project reports derives from LeaderboardError."""

from __future__ import annotations


class LeaderboardError(Exception):
    """Base of every error the project raises on purpose; the message says what to do."""


class ValidationError(LeaderboardError):
    """Input that breaks the contract (bad field, score out of range, unknown operator)."""


class UnknownLeaderboard(LeaderboardError):
    """A record or request names a leaderboard that was never configured."""


class DecodeError(LeaderboardError):
    """A record could not be decoded (bad bytes, unknown schema fingerprint)."""


class ServiceUnavailable(LeaderboardError):
    """A required service (Kafka, Redis, PostgreSQL) does not answer."""
