"""PostgreSQL for the local stack, from Debian's packages: its own cluster made by initdb.

The server runs as the ``postgres`` OS user (it refuses root); data and socket live under the
stack dir when that user can reach it, else under ``/var/tmp``. After the first start the role
and database named by ``LEADERBOARD_POSTGRES_DSN`` are created.
"""

from __future__ import annotations

import glob
import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.stack.base import (
    LOCAL_HOSTS,
    POSTGRES_START_TIMEOUT,
    Progress,
    Service,
    display,
    is_root,
    pid_alive,
    port_open,
    read_pid,
)
from processors.bootstrap import pg_connect
from streams.errors import ServiceUnavailable
from streams.settings import Settings


class Postgres(Service):
    """PostgreSQL from Debian's packages: own cluster (initdb), run as the ``postgres`` user."""

    name = "postgres"
    marker = "postgres"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._base: Path | None = None

    # -- configuration ---------------------------------------------------------------
    def _dsn(self) -> dict[str, Any]:
        return dict(conninfo_to_dict(self.settings.postgres_dsn))

    def where(self) -> str:
        d = self._dsn()
        return f"postgresql://{d.get('host', '')}:{d.get('port', 5432)}/{d.get('dbname', '')}"

    def port(self) -> int:
        return self.settings.postgres_port

    def managed(self) -> bool:
        d = self._dsn()
        return str(d.get("host", "")) in LOCAL_HOSTS and str(d.get("port", "5432")) == str(
            self.settings.postgres_port
        )

    def _bin(self, tool: str) -> str:
        candidates = sorted(
            glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
            key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
        )
        if candidates:
            return candidates[-1]
        return shutil.which(tool) or tool

    def missing_packages(self) -> list[str]:
        return [] if glob.glob("/usr/lib/postgresql/*/bin/initdb") else ["postgresql"]

    def _as_postgres(self) -> list[str]:
        """Prefix that runs a command as the ``postgres`` OS user (the server refuses root)."""
        return ["runuser", "-u", "postgres", "--"] if is_root() else []

    @property
    def base(self) -> Path:
        """Folder holding data and socket: in the stack dir when the server's user can reach it."""
        if self._base is None:
            self._base = self._choose_base()
        return self._base

    def _fallback_base(self) -> Path:
        digest = hashlib.sha256(str(self.stack_dir).encode()).hexdigest()[:12]
        # Used when the postgres user cannot reach the stack dir (e.g. a clone under /root).
        return Path("/var/tmp") / f"leaderboard-stack-{digest}" / "postgres"  # noqa: S108

    def _choose_base(self) -> Path:
        local = self.stack_dir / "postgres"
        if not is_root():
            return local
        if (local / "data" / "PG_VERSION").is_file():
            return local
        fallback = self._fallback_base()
        if (fallback / "data" / "PG_VERSION").is_file():
            return fallback
        if len(str(local / "run" / ".s.PGSQL.65535")) < 100:
            local.mkdir(parents=True, exist_ok=True)
            shutil.chown(local, "postgres", "postgres")
            ok = subprocess.run(  # noqa: S603
                [*self._as_postgres(), "test", "-w", str(local), "-a", "-x", str(local)],
                cwd="/",
                check=False,
            )
            if ok.returncode == 0:
                return local
            shutil.rmtree(local, ignore_errors=True)
        return fallback

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"

    # -- probing ---------------------------------------------------------------------
    def answers(self) -> bool:
        try:
            with pg_connect(self.settings.postgres_dsn, connect_timeout=3) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except Exception:
            return False

    def our_pid(self) -> int | None:
        # The data dir may be unreadable for a non-root user; only ours can be read.
        try:
            pid = read_pid(self.pid_file)
        except PermissionError:
            return None
        return pid if pid is not None and pid_alive(pid, self.marker) else None

    # -- lifecycle -------------------------------------------------------------------
    def _prepare_dir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if is_root():
            shutil.chown(path, "postgres", "postgres")
            for parent in path.parents:
                if parent in (Path("/var/tmp"), self.stack_dir):  # noqa: S108
                    break
                shutil.chown(parent, "postgres", "postgres")

    def start(self, progress: Progress) -> None:
        if self._check_not_elsewhere():
            return
        if port_open("127.0.0.1", self.settings.postgres_port):
            raise ServiceUnavailable(
                f"postgres: port {self.settings.postgres_port} is taken by a server that does "
                "not accept LEADERBOARD_POSTGRES_DSN; free it or set LEADERBOARD_POSTGRES_PORT "
                "and LEADERBOARD_POSTGRES_DSN"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        self._prepare_dir(self.base)
        self._prepare_dir(self.socket_dir)
        if not (self.data / "PG_VERSION").is_file():
            progress("postgres: initdb (first run only)")
            self._prepare_dir(self.data)
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ],
                "initdb",
            )
        progress("postgres: starting")
        self._record_port()
        options = " ".join(
            [
                f"-p {self.settings.postgres_port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={shlex.quote(str(self.socket_dir))}",
            ]
        )
        self._run(
            [
                self._bin("pg_ctl"),
                "start",
                "-w",
                "-t",
                str(int(POSTGRES_START_TIMEOUT)),
                "-D",
                str(self.data),
                "-o",
                options,
            ],
            "pg_ctl start",
        )

    def _run(self, cmd: list[str], what: str) -> None:
        with self.log_path.open("a") as out:
            done = subprocess.run(  # noqa: S603
                [*self._as_postgres(), *cmd],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                cwd=self.base,
                start_new_session=True,
                check=False,
            )
        if done.returncode != 0:
            raise ServiceUnavailable(f"postgres: {what} failed; read {display(self.log_path)}")

    def after_start(self, progress: Progress) -> None:
        """Create the role and database named by the DSN (idempotent), as the superuser."""
        d = self._dsn()
        user = str(d.get("user") or "leaderboard")
        password = str(d.get("password") or "leaderboard")
        dbname = str(d.get("dbname") or user)
        progress("postgres: ensuring role and database")
        superuser = make_conninfo(
            host=str(self.socket_dir),
            port=self.settings.postgres_port,
            user="postgres",
            dbname="postgres",
        )
        with pg_connect(superuser, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(dbname), sql.Identifier(user)
                    )
                )

    def stop(self) -> None:
        if self.our_pid() is None:
            return
        self._run(
            [self._bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)],
            "pg_ctl stop",
        )
        self.port_file.unlink(missing_ok=True)

    def purge(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self._fallback_base().parent, ignore_errors=True)
