"""Pure parts of the sinks: months to partition and migration discovery (no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sinks.audit import months_of
from sinks.migrate import MIGRATIONS_DIR, discover
from streams.errors import ValidationError


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_months_of_names_each_month_and_the_next() -> None:
    assert months_of([ms(2026, 11, 30, 23), ms(2027, 2, 1), ms(2026, 11, 1)]) == [
        (2026, 11),
        (2026, 12),
        (2027, 2),
        (2027, 3),
    ]


def test_months_of_last_millisecond_of_month() -> None:
    assert months_of([ms(2026, 10, 31, 23, 59, 59) + 999]) == [(2026, 10), (2026, 11)]


def test_months_of_far_apart_times_is_not_a_span() -> None:
    """A stray old time next to a current one creates 4 partitions, not 680."""
    assert len(months_of([ms(1970, 1, 21), ms(2026, 11, 26)])) == 4


def test_discover_orders_by_version(tmp_path: Path) -> None:
    (tmp_path / "0002_b.sql").write_text("SELECT 2")
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    assert [(m.version, m.name) for m in discover(tmp_path)] == [("0001", "a"), ("0002", "b")]


@pytest.mark.parametrize("names", [["bad.sql"], ["0001_a.sql", "0001_b.sql"]])
def test_discover_rejects_bad_names(tmp_path: Path, names: list[str]) -> None:
    for n in names:
        (tmp_path / n).write_text("SELECT 1")
    with pytest.raises(ValidationError):
        discover(tmp_path)


def test_shipped_migrations_are_well_formed() -> None:
    found = discover(MIGRATIONS_DIR)
    assert found and found[0].version == "0001"
