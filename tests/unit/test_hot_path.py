"""The hot-board benchmark's pure part: the wrk report parser."""

from __future__ import annotations

import pytest

from benchmarks.scenarios.hot import parse_wrk

WRK_OUT = """\
Running 6s test @ http://127.0.0.1:4000/v1/leaderboards/b/scores
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    30.11ms   20.05ms 250.00ms   80.00%
    Req/Sec   250.00     40.00   350.00     70.00%
  Latency Distribution
     50%   27.90ms
     75%   35.00ms
     90%   50.00ms
     99%    1.01s{pad}
  2982 requests in 6.01s, 700.00KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:    496.17
Transfer/sec:    116.00KB
""".format(pad=" ")  # wrk pads a time in seconds with a trailing space


def test_parse_wrk_reads_counts_percentiles_and_errors() -> None:
    r = parse_wrk(WRK_OUT, client_cpu_s=0.12)
    assert (r.requests, r.bad, r.errors, r.ok) == (2982, 4, 3, 2978)
    assert r.seconds == pytest.approx(6.01)
    assert r.p50_ms == pytest.approx(27.9)
    assert r.p99_ms == pytest.approx(1010.0)  # wrk pads seconds with a trailing space
    assert r.rate == pytest.approx(2982 / 6.01)


def test_parse_wrk_refuses_output_without_a_latency_distribution() -> None:
    with pytest.raises(ValueError, match="latency distribution"):
        parse_wrk(WRK_OUT.replace("99%", "98%"), client_cpu_s=0.0)
