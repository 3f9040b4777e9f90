"""Coalescing of concurrent score submissions to one board into one Kafka record.

Every Kafka record costs the pipeline about the same whatever it carries (the projector's
per-event work, Avro, one apply result), so the gateway packs the submissions to one board that
arrive together into one ``ScoresSubmitted`` record; each keeps its own event id, time and
outcome (docs/scaling.md, "Coalescing").

When to send, per board (Nagle-like, no fixed delay when idle):

- fewer than ``max_in_flight`` records of the board in flight (produced, not yet acknowledged
  by Kafka): at the end of the current event-loop turn, so the submissions parsed in the same
  turn go together and a lone submission waits for nothing;
- else: when one of them is acknowledged, or once the oldest buffered submission is
  ``window_s`` old, whichever is first;
- ``max_submissions`` buffered: at once.

A record not acknowledged within ``timeout_s`` fails its submissions (one timer per record,
not one per submission).

A record with one submission is sent as an ordinary one-entry ``MatchResultSubmitted``, so an
idle gateway writes exactly what it wrote before coalescing existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from processors.kafka.producer import DeliveryFailed, LeaderboardProducer
from streams.errors import LeaderboardError
from streams.events import MAX_SUBMISSIONS, MatchResultSubmitted
from streams.validation import check_match

__all__ = ["PUBLISH_TIMEOUT_S", "SubmitCoalescer"]

#: How long a submission waits for Kafka's acknowledgement before it fails (the gateway
#: answers 503).
PUBLISH_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Board:
    """One board's buffered submissions and its record in flight."""

    pending: list[tuple[MatchResultSubmitted, asyncio.Future[None]]] = field(default_factory=list)
    in_flight: int = 0
    handle: asyncio.Handle | asyncio.TimerHandle | None = None


class SubmitCoalescer:
    """Packs concurrent one-entry submissions per board into one record (one event loop)."""

    def __init__(
        self,
        producer: LeaderboardProducer,
        *,
        max_submissions: int = 64,
        window_s: float = 0.002,
        max_in_flight: int = 1,
        timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        """``max_submissions`` per record (1 = no coalescing); ``window_s`` the longest a
        submission waits while ``max_in_flight`` records of its board await Kafka;
        ``timeout_s`` the longest a record may wait for Kafka's acknowledgement."""
        if not 1 <= max_submissions <= MAX_SUBMISSIONS:
            raise LeaderboardError(
                f"coalesce max must be 1 to {MAX_SUBMISSIONS} (got {max_submissions})"
            )
        self.producer = producer
        self.max_submissions = max_submissions
        self.window_s = window_s
        self.max_in_flight = max(1, max_in_flight)
        self.timeout_s = timeout_s
        self._boards: dict[str, _Board] = {}
        #: records sent and submissions they carried (for metrics and tests)
        self.records = 0
        self.submissions = 0

    def submit(self, match: MatchResultSubmitted) -> asyncio.Future[None]:
        """Queue one one-entry match; the future ends when Kafka has its record (or fails
        with DeliveryFailed: refused, or not acknowledged within ``timeout_s``).

        The match is checked here (ValidationError), so that a bad one never joins a record.
        """
        check_match(match, now_ms=int(time.time() * 1000))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        board_id = match.leaderboard_id
        board = self._boards.get(board_id)
        if board is None:
            board = self._boards[board_id] = _Board()
        board.pending.append((match, fut))
        if len(board.pending) >= self.max_submissions:
            self._send(board_id)
        elif board.handle is None:
            if board.in_flight < self.max_in_flight:
                board.handle = loop.call_soon(self._send, board_id)
            else:
                board.handle = loop.call_later(self.window_s, self._send, board_id)
        return fut

    def _send(self, board_id: str) -> None:
        """Produce the board's buffered submissions as one record."""
        board = self._boards[board_id]
        if board.handle is not None:
            board.handle.cancel()
            board.handle = None
        items, board.pending = board.pending, []
        if not items:
            return
        loop = asyncio.get_running_loop()
        futs = [f for _, f in items]

        def expire() -> None:
            for f in futs:
                if not f.done():
                    f.set_exception(
                        DeliveryFailed(f"not acknowledged by Kafka within {self.timeout_s:g}s")
                    )

        expiry = loop.call_later(self.timeout_s, expire)

        def settle(error: str | None) -> None:
            expiry.cancel()
            board.in_flight -= 1
            for f in futs:
                if f.done():
                    continue
                if error is None:
                    f.set_result(None)
                else:
                    f.set_exception(DeliveryFailed(f"record not delivered to Kafka: {error}"))
            if board.pending and board.in_flight < self.max_in_flight:
                self._send(board_id)
            elif not board.pending and board.in_flight == 0 and board.handle is None:
                self._boards.pop(board_id, None)

        def tell(error: str | None) -> None:  # the producer's poll thread
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(settle, error)

        board.in_flight += 1
        matches = [m for m, _ in items]
        try:
            if len(matches) == 1:
                self.producer.submit(matches[0], on_delivery=tell)
            else:
                self.producer.submit_scores(board_id, matches, on_delivery=tell)
        except LeaderboardError as exc:
            log.warning("coalesced submissions to %s not produced: %s", board_id, exc)
            expiry.cancel()
            board.in_flight -= 1
            for f in futs:
                if not f.done():
                    f.set_exception(exc)
            return
        self.records += 1
        self.submissions += len(matches)
