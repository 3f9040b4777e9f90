"""How a sharded board is split: the ``shards`` setting, parsed into a ShardLayout.

- ``"hash:N"``: participant ``p`` lives in shard ``crc32(p) % N``.
- ``"range:B1,B2,..."``: shard ``i`` holds the scores in ``[B_i, B_{i+1})`` (ascending score
  bands; ``N = len(bounds) + 1``).

Shard ``i`` of board ``b`` is the board ``b#i`` (its own hash tag, so its own cluster slot).
"""

from __future__ import annotations

import bisect
import logging
import zlib
from dataclasses import dataclass

from projections.keys import BoardKeys
from streams import rules
from streams.errors import LeaderboardError
from streams.events import LeaderboardConfigured, SortOrder

log = logging.getLogger(__name__)

#: Configuration metadata key choosing the sharding of a board.
SHARDS_KEY = "shards"


@dataclass(frozen=True, slots=True)
class ShardLayout:
    """How a board is split: ``hash`` by participant or ``range`` by score bands."""

    kind: str
    count: int
    bounds: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ShardLayout:
        """Parse ``hash:N`` or ``range:B1,B2,...`` (ascending integer score boundaries)."""
        kind, _, rest = text.strip().partition(":")
        try:
            if kind == "hash":
                n = int(rest)
                if n < 1:
                    raise ValueError(rest)
                return cls("hash", n)
            if kind == "range":
                bounds = tuple(int(b) for b in rest.split(","))
                if list(bounds) != sorted(set(bounds)):
                    raise ValueError(rest)
                if not all(rules.in_exact_range(b) for b in bounds):
                    raise ValueError(rest)
                return cls("range", len(bounds) + 1, bounds)
        except ValueError:
            pass
        raise LeaderboardError(
            f"bad shards setting {text!r}: use hash:N (N >= 1) or range:B1,B2,... "
            "(strictly ascending integer score boundaries)"
        )

    @property
    def spec(self) -> str:
        """The setting text this layout was parsed from (normalized)."""
        if self.kind == "hash":
            return f"hash:{self.count}"
        return "range:" + ",".join(str(b) for b in self.bounds)

    def shard_ids(self, board: str) -> list[str]:
        """Board ids of the shards: ``board#0`` .. (each its own hash tag)."""
        return [f"{board}#{i}" for i in range(self.count)]

    def home(self, pid: str) -> int:
        """Shard of a participant on a hash-sharded board."""
        return zlib.crc32(pid.encode()) % self.count

    def band(self, score: int) -> int:
        """Shard of a score on a range-sharded board."""
        return bisect.bisect_right(self.bounds, score)

    def best_first(self, sort: SortOrder) -> list[int]:
        """Range shards in standings order (the best band first)."""
        order = list(range(self.count))
        return order[::-1] if sort is SortOrder.DESC else order

    def above(self, band: int, sort: SortOrder) -> range:
        """Range shards whose entries all rank above those of ``band``."""
        return range(band + 1, self.count) if sort is SortOrder.DESC else range(band)


def layout_of(config: LeaderboardConfigured | None) -> ShardLayout | None:
    """The sharding a board's configuration asks for, or None for a plain board.

    An unparsable setting is logged and the board stays plain: a configuration typo must not
    stop the projector (fix the setting before the board's first record to shard it).
    """
    if config is None or SHARDS_KEY not in config.metadata:
        return None
    try:
        return ShardLayout.parse(config.metadata[SHARDS_KEY])
    except LeaderboardError as exc:
        log.error("board %s: %s; treated as unsharded", config.leaderboard_id, exc)
        return None


def directory_key(keys: BoardKeys, period: str) -> str:
    """Hash of a range shard: participant → ``score<TAB>member`` for every participant."""
    return keys.directory(period)


__all__ = ["SHARDS_KEY", "ShardLayout", "directory_key", "layout_of"]
