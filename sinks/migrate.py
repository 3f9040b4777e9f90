"""Versioned plain-SQL migrations under infra/migrations, applied once each and recorded."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from streams.errors import ValidationError
from streams.settings import PROJECT_ROOT

__all__ = ["MIGRATIONS_DIR", "Migration", "applied_versions", "migrate", "pending_migrations"]

log = logging.getLogger(__name__)

#: Folder of the ``NNNN_name.sql`` files.
MIGRATIONS_DIR = PROJECT_ROOT / "infra" / "migrations"

#: Key of the session advisory lock that serialises concurrent migrators.
_LOCK_KEY = 0x1EAD_B0A2D

_FILE = re.compile(r"^(\d{4,})_([A-Za-z0-9_\-]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: its version (the number prefix), name and path."""

    version: str
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in ``directory``, in version order."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if m is None:
            raise ValidationError(
                f"migration file {path.name!r} is not named NNNN_name.sql; rename it"
            )
        found.append(Migration(m.group(1), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValidationError(f"duplicate migration versions in {directory}; renumber them")
    return found


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    """Versions recorded in schema_migrations (empty if the table does not exist yet)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return set()
    return {str(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}


def pending_migrations(
    conn: psycopg.Connection[tuple[object, ...]], directory: Path = MIGRATIONS_DIR
) -> list[Migration]:
    """Migrations not applied yet to the database behind ``conn``."""
    done = applied_versions(conn)
    return [m for m in discover(directory) if m.version not in done]


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return their versions.

    Idempotent and safe under concurrent callers: a session advisory lock serialises them,
    and the applied set is read after the lock is held. ``conn`` must be in autocommit mode.
    """
    migrations = discover(directory)
    applied: list[str] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(_CREATE_TABLE)
        done = applied_versions(conn)
        for mig in migrations:
            if mig.version in done:
                continue
            sql = mig.path.read_text(encoding="utf-8")
            log.info("applying migration %s_%s", mig.version, mig.name)
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (mig.version, mig.name),
                )
            applied.append(mig.version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
