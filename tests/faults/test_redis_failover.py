"""Redis failover under load: SIGKILL the primary of ``stack up --ha`` while scores stream in.

The projector, the sinks worker and every check reach Redis through the Sentinels. Each
scenario ends with the common verdict (0 lost, 0 duplicated, live standings equal to a clean
pass of the log, every version published) and records the time to recover: until the
Sentinels named the new primary, and until the live boards moved again.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.faults.conftest import (
    SIZES,
    Monitor,
    Stream,
    configure,
    figures_of,
    finish,
    make_boards,
    verdict,
)
from tests.faults.test_faults import Supervisor, _tag, _tail, _wait_flowing
from tests.integration.conftest import ARTIFACTS, Pipeline, wait_until
from tests.integration.ha import (
    kill_primary,
    replication_cut,
    wait_new_primary,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

#: What the projector logs after re-applying records its new primary lacked.
REAPPLIED = re.compile(rb"re-applied (\d+) records of partition")


def reapplied(p: Pipeline) -> int:
    """Records the pipeline's projectors re-applied from Kafka (from their logs)."""
    total = 0
    for path in ARTIFACTS.glob(f"{p.tag}-projector-*.log"):
        total += sum(int(m.group(1)) for m in REAPPLIED.finditer(path.read_bytes()))
    return total


def _failover(p: Pipeline, scenario: str, how: str, *, replica_behind: bool) -> None:
    cfgs = make_boards(_tag())
    configure(p, cfgs)
    projector = Supervisor(p, "projector")
    sinks = Supervisor(p, "sinks")
    mon = Monitor(p, [c.leaderboard_id for c in cfgs])
    mon.start()
    stream = Stream(p, cfgs, seed=7, rate=SIZES.rate)
    stream.start()
    _wait_flowing(mon)
    time.sleep(2.0)
    if replica_behind:
        # the primary goes on applying (and the projector publishing and committing) for 2 s
        # that never reach the replica: the promoted replica is behind the committed offsets
        with replication_cut(p.settings):
            time.sleep(2.0)
            old, killed_at = kill_primary(p.settings)
            failover_s = wait_new_primary(p.settings, old, killed_at)
    else:
        old, killed_at = kill_primary(p.settings)
        failover_s = wait_new_primary(p.settings, old, killed_at)
    wait_until(lambda: mon.resumed_after(killed_at) is not None, timeout=90)
    resumed_s = mon.resumed_after(killed_at)
    _tail(stream, projector, sinks)
    mon.stop()
    v = verdict(p, cfgs)
    again = reapplied(p)
    figures = figures_of(
        v,
        stream,
        p,
        failover_s=failover_s,
        recovery_s=resumed_s,
        reapplied_records=again,
        worker_restarts_unplanned=projector.restarts + sinks.restarts,
    )
    print(f"{scenario}: {figures}")
    finish(scenario, how, v, figures)
    if replica_behind:
        assert again > 0, "the promoted replica was not behind: the scenario tested nothing"


def test_redis_primary_sigkill_under_load(ha_pipeline: Pipeline) -> None:
    """SIGKILL the Redis primary mid-stream; the Sentinels promote the replica."""
    _failover(
        ha_pipeline,
        "redis_failover_sigkill_primary",
        "SIGKILL the Redis primary (stack up --ha: primary, replica, three Sentinels) during a "
        "stream; the Sentinels promote the replica and every client follows through them.",
        replica_behind=False,
    )


def test_redis_primary_sigkill_replica_behind(ha_pipeline: Pipeline) -> None:
    """The replica misses the primary's last 2 s of applies, then the primary is SIGKILLed."""
    _failover(
        ha_pipeline,
        "redis_failover_replica_behind",
        "Cut the replica off the primary for 2 s of a stream (the projector goes on applying, "
        "publishing and committing), then SIGKILL the primary: the promoted replica is behind "
        "the committed offsets and the projector re-applies what it lacks from Kafka.",
        replica_behind=True,
    )
