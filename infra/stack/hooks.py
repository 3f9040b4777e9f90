"""What ``up`` does once the services answer: database migrations, then the Kafka topics.

Both are idempotent; the topic creation and the migrations themselves live in
``processors.kafka.admin`` and ``sinks.migrate`` (wired by ``processors.bootstrap``).
"""

from __future__ import annotations

from infra.stack.base import Progress, noop
from processors.bootstrap import migrate_database
from processors.kafka.admin import create_topics
from processors.workers.epoch import group_has_committed
from streams.errors import LeaderboardError
from streams.settings import Settings


def run_setup_hooks(settings: Settings, progress: Progress = noop) -> None:
    """Apply database migrations and create topics."""
    progress("postgres: applying migrations")
    try:
        applied = migrate_database(settings)
    except LeaderboardError:
        raise
    except Exception as exc:
        raise LeaderboardError(f"database migrations failed: {exc}") from exc
    for name in applied or []:
        progress(f"postgres: applied migration {name}")
    progress("kafka: creating topics")
    try:
        create_topics(settings)
    except LeaderboardError:
        raise
    except Exception as exc:
        raise LeaderboardError(f"creating topics failed: {exc}") from exc
    # a new broker answers NOT_COORDINATOR until its group coordinator is loaded: the stack is
    # usable (the demo and the workers read committed offsets) only once it answers
    progress("kafka: waiting for the group coordinator")
    group_has_committed(settings)
