"""Redis key layout: every key of one board shares the hash tag ``{<board>}``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BoardKeys:
    """Names of one board's keys under a prefix (``lb`` live, ``lbs`` shadow rebuilds).

    The hash tag keeps every key of a board in one Redis Cluster slot, so the apply
    script and the swap (RENAME in MULTI) work unchanged on a cluster.
    """

    board: str
    prefix: str = "lb"

    @property
    def base(self) -> str:
        """Common prefix of every key of the board."""
        return f"{self.prefix}:{{{self.board}}}"

    @property
    def state(self) -> str:
        """Hash: ``ver`` (board version), ``maxt`` (max event time), ``wm:<partition>``."""
        return f"{self.base}:s"

    @property
    def outbox(self) -> str:
        """Hash: offset → apply result not yet published."""
        return f"{self.base}:ob"

    @property
    def events(self) -> str:
        """Set of applied event ids (duplicate detection)."""
        return f"{self.base}:ev"

    @property
    def open_periods(self) -> str:
        """Hash: open period → event time from which it is final."""
        return f"{self.base}:po"

    @property
    def ended_periods(self) -> str:
        """Hash: ended period → board version when it ended."""
        return f"{self.base}:pe"

    @property
    def metadata(self) -> str:
        """Hash: participant → metadata JSON."""
        return f"{self.base}:pm"

    def zset(self, period: str) -> str:
        """Sorted set of one period's standings (ascending = best first)."""
        return f"{self.base}:z:{period}"

    def members(self, period: str) -> str:
        """Hash: participant → sorted-set member of one period."""
        return f"{self.base}:m:{period}"

    def directory(self, period: str) -> str:
        """Hash of a range shard: participant → ``score<TAB>member`` for every participant."""
        return f"{self.base}:a:{period}"

    @property
    def banned(self) -> str:
        """Hash: banned participant → the ban's event id (lua/rules.lua ``bn``)."""
        return f"{self.base}:bn"

    @property
    def matches(self) -> str:
        """Hash of a retain_entries board: match event id → its period and members (``mx``)."""
        return f"{self.base}:mx"

    def attempts(self, period: str) -> str:
        """Hash of a board with tournament limits: participant → matches applied in ``period``."""
        return f"{self.base}:at:{period}"

    def history(self, period: str) -> str:
        """Hash of a retain_entries board: participant → its applied entries in ``period``."""
        return f"{self.base}:h:{period}"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key of the board."""
        return f"{self.prefix}:{{{_escape_glob(self.board)}}}:*"


def _escape_glob(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
