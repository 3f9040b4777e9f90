"""Starting a service of the local stack: a process that dies while starting (a port or a
lock still held for a moment) is started once more, and the error names the log's last error."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.stack import lifecycle
from infra.stack.base import Service
from streams.errors import ServiceUnavailable
from streams.settings import Settings


class Flaky(Service):
    """Dies on its first ``fails`` starts (writing an error to its log), answers afterwards."""

    name = "flaky"

    def __init__(self, settings: Settings, fails: int) -> None:
        super().__init__(settings)
        self.fails = fails
        self.starts = 0
        self.alive = False

    def where(self) -> str:
        return "127.0.0.1:1"

    def managed(self) -> bool:
        return True

    def start(self, progress: lifecycle.Progress) -> None:
        self.starts += 1
        self.alive = self.starts > self.fails
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as fh:
            fh.write("level=info msg=starting\n")
            if not self.alive:
                fh.write('level=error msg="listen tcp 127.0.0.1:1: bind: address in use"\n')

    def answers(self) -> bool:
        return self.alive

    def our_pid(self) -> int | None:
        return 4242 if self.alive else None


def test_a_service_that_died_while_starting_is_started_once_more(tmp_path: Path) -> None:
    svc = Flaky(Settings(stack_dir=tmp_path), fails=1)
    svc.start(lifecycle.noop)
    said: list[str] = []
    lifecycle._wait_started(svc, 5, said.append)
    assert svc.starts == 2 and svc.answers()
    assert any("starting it once more" in line and "bind: address in use" in line for line in said)


def test_a_service_that_dies_twice_fails_with_the_logs_last_error(tmp_path: Path) -> None:
    svc = Flaky(Settings(stack_dir=tmp_path), fails=5)
    svc.start(lifecycle.noop)
    with pytest.raises(ServiceUnavailable, match=r"exited while starting: .*bind: address in use"):
        lifecycle._wait_started(svc, 5, lifecycle.noop)
    assert svc.starts == 2
