"""Redis key layout: every key of one board shares the hash tag ``{<board>}``."""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from streams import rules
from streams.rules import TIEBREAK_WIDTH

#: Hex digits of SHA-1(participant id) naming its bucket of a period's participant index.
INDEX_DIGITS = 3
#: Buckets of one period's participant index (16^INDEX_DIGITS). Redis keeps a hash in one
#: compact listpack up to ``hash-max-listpack-entries`` fields (the local stack sets 1024), so
#: periods up to ~3,500,000 participants keep every bucket compact (~30 B per participant
#: instead of ~80 B in one big hash; docs/operations.md "The participant index").
INDEX_BUCKETS = 16**INDEX_DIGITS


def index_bucket(participant_id: str) -> str:
    """Bucket of a participant in a period's index (lua/rules.lua ``index_key`` agrees)."""
    return hashlib.sha1(participant_id.encode(), usedforsecurity=False).hexdigest()[:INDEX_DIGITS]


#: Hex digits of SHA-1(event_key form) naming the bucket of a remembered event id within its
#: day (lua/rules.lua ``ev_bucket``): 256 buckets a day, each a small hash (a listpack up to
#: ``hash-max-listpack-entries`` ids: ~256,000 ids a day stay compact, ~22 B per id instead of
#: ~120 B in one sorted set; docs/operations.md "Remembered event ids").
EVENT_DIGITS = 2


def event_bucket(stored: bytes) -> str:
    """Bucket of a remembered event id (its ``event_key`` form) within its day."""
    return hashlib.sha1(stored, usedforsecurity=False).hexdigest()[:EVENT_DIGITS]


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def event_key(event_id: str) -> bytes:
    """How the event-id set stores an id (lua/rules.lua ``event_key`` agrees).

    A lowercase canonical UUID (what the SDK and the gateway generate) is stored as its 16
    bytes; any other id as its UTF-8 bytes, followed by a NUL when 16 bytes or longer, so no
    two ids share a stored form (duplicate detection stays exact).
    """
    if len(event_id) == 36 and _UUID.match(event_id):
        return bytes.fromhex(event_id.replace("-", ""))
    raw = event_id.encode()
    return raw + b"\0" if len(raw) >= 16 else raw


# The tie-break digits as standard base64's: the index keeps a prefix's 108 bits as bytes.
_TO_B64 = str.maketrans(
    rules.TIEBREAK_DIGITS, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)
_FROM_B64 = {v: k for k, v in _TO_B64.items()}
#: Bytes of a tie-break prefix in the participant index (``index_value``).
INDEX_VALUE_WIDTH = 14


def index_value(prefix: str) -> bytes:
    """How the participant index stores a member's tie-break prefix (lua/rules.lua
    ``pre_bin`` agrees): its 18 base-64 digits' 108 bits, big-endian, then 4 zero bits, in 14
    bytes (4 fewer than the text: ~4 B less per participant in a listpack). The sorted-set
    member stays text, so no reader of members sees these bytes."""
    return binascii.a2b_base64(prefix.translate(_TO_B64) + "AA")[:INDEX_VALUE_WIDTH]


def base_value(base: str) -> bytes:
    """The first 12 bytes of ``index_value`` of every prefix that starts with ``base``, a
    record's ``rules.tiebreak_base`` (16 digits, 96 bits): its entries' values then differ
    only in ``PAIR_VALUES``, so a record's entries share one conversion."""
    return binascii.a2b_base64(base.translate(_TO_B64))


#: The last 2 bytes of ``index_value`` of a prefix ending in ``rules.TIEBREAK_PAIRS[i]`` (its
#: 12 bits and 4 zero bits), for ``base_value(base) + PAIR_VALUES[i]``.
PAIR_VALUES = tuple(index_value("-" * 16 + pair)[12:] for pair in rules.TIEBREAK_PAIRS)


def index_prefix(value: bytes) -> str:
    """The tie-break prefix an index value stores (inverse of ``index_value``)."""
    text = binascii.b2a_base64(value + b"\0", newline=False).decode()
    return text[:TIEBREAK_WIDTH].translate(_FROM_B64)


def index_member(value: bytes | None, participant_id: str) -> str | None:
    """The sorted-set member of a participant from its index value (``index_value``)."""
    if value is None:
        return None
    return index_prefix(value) + participant_id


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
    def bases(self) -> str:
        """Hash, on a hash-sharded board's shard 0: offset → the board version before that
        record, kept until the record's results are acknowledged, so that a record applied
        again (redelivered, or after a rebuild applied it) is numbered as it was the first time
        even when other shards have moved on since (``ShardedStore._merge_hash``)."""
        return f"{self.base}:hv"

    @property
    def events(self) -> str:
        """Hash: remembered day of event time (``rules.dedup_day``) → how many ids it holds.

        The ids themselves (``event_key`` forms, empty values) are in the day's bucket hashes
        ``<events>:<day>:<bucket>`` (``event_ids``), read for duplicates and dropped by day.
        """
        return f"{self.base}:ev"

    def event_ids(self, day: int, bucket: str) -> str:
        """Hash of one bucket (``event_bucket``) of the event ids remembered for ``day``."""
        return f"{self.base}:ev:{day}:{bucket}"

    def event_fields(self, ids: Iterable[tuple[str, int]]) -> dict[str, list[bytes]]:
        """(event id, event time) pairs as the id buckets' HSET arguments: bucket name →
        stored id, empty value, stored id, ..."""
        buckets: dict[str, list[bytes]] = {}
        for eid, at in ids:
            stored = event_key(eid)
            name = self.event_ids(rules.dedup_day(at), event_bucket(stored))
            fields = buckets.get(name)
            if fields is None:
                fields = buckets[name] = []
            fields += (stored, b"")
        return buckets

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
        """Name stem of one period's participant index: ``<stem>:<bucket>`` (``index``)."""
        return f"{self.base}:m:{period}"

    def index(self, period: str, participant_id: str) -> str:
        """Hash (listpack-sized bucket): participant → tie-break prefix of its member.

        The member is the prefix then the participant id (``index_member``): the index stores
        only what it cannot rebuild, the prefix in 14 bytes (``index_value``).
        """
        return f"{self.base}:m:{period}:{index_bucket(participant_id)}"

    def index_fields(
        self, period: str, members: Iterable[tuple[str, str]]
    ) -> dict[str, list[str | bytes]]:
        """(participant, member) pairs as the index buckets' HSET arguments: bucket name →
        participant, stored prefix (``index_value``), participant, stored prefix, ..."""
        # the bucket is the digest's first 4 * INDEX_DIGITS bits (``index_bucket``'s hex
        # digits), read from its first two bytes: a quarter less per participant than its hex
        shift = 16 - 4 * INDEX_DIGITS
        pairs = list(members)
        # every prefix packed at once (index_value on the joined digits: each prefix and two
        # zero digits "--" are 20 base-64 digits, 15 bytes, of which the first 14 are its value)
        w, n = TIEBREAK_WIDTH, INDEX_VALUE_WIDTH
        text = "--".join(mem[:w] for _, mem in pairs) + "--"
        raw = binascii.a2b_base64(text.translate(_TO_B64)) if pairs else b""
        buckets: dict[int, list[str | bytes]] = {}
        sha1 = hashlib.sha1
        for i, (pid, _) in enumerate(pairs):
            digest = sha1(pid.encode(), usedforsecurity=False).digest()
            bucket = (digest[0] << 8 | digest[1]) >> shift
            fields = buckets.get(bucket)
            if fields is None:
                fields = buckets[bucket] = []
            fields += (pid, raw[15 * i : 15 * i + n])
        stem = f"{self.base}:m:{period}:"
        return {f"{stem}{b:0{INDEX_DIGITS}x}": f for b, f in buckets.items()}

    def index_names(self, period: str, participants: Iterable[str]) -> set[str]:
        """The index buckets that hold ``participants`` in ``period``."""
        stem = self.members(period)
        return {f"{stem}:{index_bucket(pid)}" for pid in participants}

    def index_keys(self, period: str) -> list[str]:
        """Every bucket name of one period's participant index (most may not exist)."""
        stem = self.members(period)
        return [f"{stem}:{b:0{INDEX_DIGITS}x}" for b in range(INDEX_BUCKETS)]

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
