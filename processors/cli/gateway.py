"""``leaderboard gateway``: the HTTP/WebSocket gateway under uvicorn, with PostgreSQL history."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from typing import Any, cast

import click
import uvicorn

from processors import logs, scrape_targets, telemetry
from processors.bootstrap import pg_connect
from processors.gateway.app import HistoryReader, PlacementsReader, create_app
from processors.gateway.routes.live import close_subscribers
from streams import rules
from streams.settings import Settings, get_settings

log = logging.getLogger(__name__)


def pg_history_reader(settings: Settings) -> HistoryReader | None:
    """History of closed periods from sinks.history (None if the sinks package is absent)."""
    try:
        from sinks import history as pg
    except ImportError as exc:  # pragma: no cover - depends on the installed packages
        log.warning("history disabled: %s", exc)
        return None

    def read(board: str, period: str | None, limit: int, offset: int) -> dict[str, Any] | None:
        with pg_connect(settings, connect_timeout=5) as conn:
            if period is None:
                closed = pg.closed_periods(conn, board)
                found = closed[0] if closed else None
            else:
                found = pg.closed_period(conn, board, period)
            if found is None:
                return None
            rows = pg.period_standings(conn, board, found.period, limit, offset)
        return {
            "period": found.period,
            "period_start": found.period_start.isoformat(),
            "period_end": found.period_end.isoformat(),
            "participant_count": found.participant_count,
            "checksum": found.checksum,
            "version": found.version,
            "closed_at": found.closed_at.isoformat(),
            "offset": offset,
            "entries": [dataclasses.asdict(r) for r in rows],
        }

    async def reader(
        board: str, period: str | None, limit: int, offset: int
    ) -> dict[str, Any] | None:
        return await asyncio.get_running_loop().run_in_executor(
            None, read, board, period, limit, offset
        )

    return reader


def pg_placements_reader(settings: Settings) -> PlacementsReader | None:
    """Placements of participants from sinks.history (None if the sinks package is absent)."""
    try:
        from sinks import history as pg
    except ImportError as exc:  # pragma: no cover - depends on the installed packages
        log.warning("placements disabled: %s", exc)
        return None

    def read(participant: str, limit: int) -> list[dict[str, Any]]:
        with pg_connect(settings, connect_timeout=5) as conn:
            found = pg.placements(conn, participant, limit)
        return [
            {
                **dataclasses.asdict(p),
                "period_start": p.period_start.isoformat(),
                "closed_at": p.closed_at.isoformat(),
                "percentile": rules.percentile(p.rank, p.participant_count),
            }
            for p in found
        ]

    async def reader(participant: str, limit: int) -> list[dict[str, Any]]:
        return await asyncio.get_running_loop().run_in_executor(None, read, participant, limit)

    return reader


@click.command()
@click.option("--host", default=None, help="Listen address (default LEADERBOARD_GATEWAY_HOST).")
@click.option("--port", default=None, type=int, help="Port (default LEADERBOARD_GATEWAY_PORT).")
@click.option("--submit-rate", default=5.0, show_default=True, help="Scores/s per participant.")
@click.option("--submit-burst", default=10, show_default=True, help="Burst per participant.")
@click.option(
    "--key-rate", default=500.0, show_default=True, help="Write/admin requests/s per API key."
)
@click.option("--key-burst", default=1000, show_default=True, help="Burst per API key.")
@click.option(
    "--open",
    "open_",
    is_flag=True,
    help="With no API key configured, accept writes and admin calls from anyone (demo only).",
)
@click.option(
    "--cors-origin",
    "cors",
    multiple=True,
    help="Origin allowed by CORS; repeatable (default LEADERBOARD_CORS_ORIGINS: none).",
)
@click.option(
    "--client-rate",
    type=click.FloatRange(0),
    default=None,
    help="Write calls/s per client address (default LEADERBOARD_RATE_PER_CLIENT; 0 = no limit).",
)
@click.option(
    "--client-burst",
    type=click.IntRange(0),
    default=None,
    help="Burst per client address (default LEADERBOARD_RATE_PER_CLIENT_BURST or 2x the rate).",
)
@click.option(
    "--coalesce-max",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    help="Most concurrent submissions to one board sent as one Kafka record (1 = one each).",
)
@click.option(
    "--coalesce-window-ms",
    type=click.FloatRange(0, 100),
    default=2.0,
    show_default=True,
    help="Longest a submission waits behind its board's record in flight (none when idle).",
)
@click.option(
    "--coalesce-in-flight",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Records of one board awaiting Kafka before new submissions wait to be coalesced.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=1,
    show_default=True,
    help="Gateway processes sharing the port (SO_REUSEPORT); each has its own coalescer, "
    "rank feed (every change reaches every process) and metrics endpoint.",
)
@click.option(
    "--access-log", is_flag=True, help="Log one line per HTTP request (with its request id)."
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="Log level (the format follows LEADERBOARD_LOG_FORMAT: text or json).",
)
def gateway(
    host: str | None,
    port: int | None,
    submit_rate: float,
    submit_burst: int,
    key_rate: float,
    key_burst: int,
    open_: bool,
    cors: tuple[str, ...],
    client_rate: float | None,
    client_burst: int | None,
    coalesce_max: int,
    coalesce_window_ms: float,
    coalesce_in_flight: int,
    workers: int,
    access_log: bool,
    log_level: str,
) -> None:
    """Run the HTTP + WebSocket gateway (live page at /, API docs at /docs and /redoc)."""
    settings = get_settings()
    if open_:
        settings = settings.model_copy(update={"gateway_open": True})
    host = host or settings.gateway_host
    port = port or settings.gateway_port
    tokens = bool(
        settings.jwt_secret.get_secret_value() or settings.jwt_public_key or settings.jwt_jwks_file
    )
    if not (settings.api_keys or settings.admin_keys or settings.gateway_open):
        log.warning(
            "no API keys configured: %s admin calls will be refused "
            "(set LEADERBOARD_API_KEYS, or pass --open on a laptop)",
            "only player tokens may write, and" if tokens else "writes and",
        )
    options = dict(
        submit_rate=submit_rate,
        submit_burst=submit_burst,
        key_rate=key_rate,
        key_burst=key_burst,
        cors_origins=list(cors) or None,
        client_rate=client_rate,
        client_burst=client_burst,
        access_log=access_log,
        coalesce_max=coalesce_max,
        coalesce_window_s=coalesce_window_ms / 1000,
        coalesce_in_flight=coalesce_in_flight,
        freeze_heap=True,  # a server process: its start-up heap is never garbage
    )
    if workers == 1:
        serve(settings, host, port, log_level, options, shared=False)
    else:
        sys.exit(supervise(settings, host, port, log_level, options, workers))


def serve(
    settings: Settings,
    host: str,
    port: int,
    log_level: str,
    options: dict[str, Any],
    *,
    shared: bool,
) -> None:
    """Serve the gateway in this process until SIGTERM or Ctrl-C.

    ``shared``: one of several processes on ``host:port`` (SO_REUSEPORT; the kernel spreads
    the connections); this process also listens on a port of its own, announced as its
    metrics target, so that Prometheus scrapes every process, not whichever answers.
    """
    app = create_app(
        settings,
        history=pg_history_reader(settings),
        placements=pg_placements_reader(settings),
        **options,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=logs.dict_config(settings, log_level),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        # permessage-deflate (offered by browsers and most clients) compresses every push
        # once per connection, each with its own zlib context: the fan-out's main CPU cost
        # for deltas of a few hundred bytes. Off: a view's frame costs a socket write each.
        ws_per_message_deflate=False,
        access_log=False,  # ours (--access-log) carries the request id
        # SIGTERM: open WebSocket subscriptions must not hold the process for long (viewers
        # reconnect to another instance and resume with since_version)
        timeout_graceful_shutdown=5,
    )
    sockets: list[socket.socket] | None = None
    own_port = port
    if shared:
        sockets = [_listen(host, port, reuse_port=True), _listen(host, 0, reuse_port=False)]
        own_port = sockets[1].getsockname()[1]
        log.warning(
            "gateway process %d on http://%s:%d/ (shared; its own metrics: port %d)",
            os.getpid(),
            host,
            port,
            own_port,
        )
    else:
        log.warning("gateway on http://%s:%d/  (API docs: /docs, /redoc)", host, port)
    telemetry.setup(settings, "leaderboard-gateway")  # traces, when configured
    target = scrape_targets.register(settings, "gateway", own_port, host)  # Prometheus, /ops
    # uvicorn re-raises SIGTERM after its graceful shutdown: leave through Python's exit, so
    # that the announcement above is withdrawn and Prometheus sees no dead target
    signal.signal(signal.SIGTERM, lambda sig, _: sys.exit(128 + sig))
    try:
        GatewayServer(config).run(sockets=sockets)
    finally:
        target.unlink(missing_ok=True)  # a forked worker leaves without running atexit


def _listen(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` (uvicorn listens on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def supervise(
    settings: Settings,
    host: str,
    port: int,
    log_level: str,
    options: dict[str, Any],
    workers: int,
) -> int:
    """Run ``workers`` gateway processes on one port; the exit code of the first that ends.

    Each process is a whole gateway (its own Kafka producer and coalescer, rank feed with a
    consumer group of its own, page cache, metrics). SIGTERM or SIGINT is passed on to every
    process; when one ends on its own, the others are stopped too, so that a supervisor
    (systemd, Kubernetes) restarts a whole gateway rather than keep a part of it.
    """
    _listen(host, port, reuse_port=True).close()  # a clear error before any process starts
    ctx = multiprocessing.get_context("fork")  # nothing opened yet: no thread, no client
    procs = [
        ctx.Process(
            target=serve,
            args=(settings, host, port, log_level, options),
            kwargs={"shared": True},
            name=f"gateway-{i}",
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    log.warning("gateway on http://%s:%d/ with %d processes", host, port, workers)

    def stop(sig: int, _: Any) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sentinels = {proc.sentinel: proc for proc in procs}
    first = procs[0]
    while sentinels:
        ready = multiprocessing.connection.wait(list(sentinels))
        for s in ready:
            ended = sentinels.pop(cast(int, s))
            ended.join()
            if len(sentinels) == len(procs) - 1:
                first = ended
                stop(signal.SIGTERM, None)
    code = first.exitcode or 0
    return code if code >= 0 else 128 - code


class GatewayServer(uvicorn.Server):
    """uvicorn's server, closing live subscriptions with 1001 ("going away") on shutdown.

    uvicorn itself would close them with 1012; 1001 tells viewers to reconnect elsewhere.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the subscriptions (at most 2 s), then shut down as uvicorn does."""
        left = await close_subscribers(self.config.app, timeout_s=2.0)
        if left:
            log.warning("%d subscription(s) did not close within 2 s", left)
        await super().shutdown(sockets)


COMMANDS = [gateway]
