"""Pure parts of the benchmarks: statistics, formatting, targets and the Markdown table."""

from __future__ import annotations

import math
import random

import pytest

from benchmarks.figures import Figure, Report, Target
from benchmarks.params import Params
from benchmarks.report import render_markdown, render_misses, render_table, report_from_json
from benchmarks.stats import fmt_range, fmt_value, percentile, ratio_runs, summary
from benchmarks.workload import match_stream


def test_percentile_interpolates_and_handles_edges() -> None:
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 5.0
    assert percentile(xs, 25) == 2.0
    assert percentile([10.0, 20.0], 50) == 15.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_percentile_ignores_input_order() -> None:
    xs = [float(i) for i in range(1000)]
    shuffled = xs[:]
    random.Random(1).shuffle(shuffled)
    assert percentile(shuffled, 99) == pytest.approx(989.01)


def test_summary_is_median_min_max() -> None:
    assert summary([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    assert summary([4.0, 1.0]) == (2.5, 1.0, 4.0)
    assert all(math.isnan(v) for v in summary([]))


def test_fmt_value_and_range() -> None:
    assert fmt_value(12345.6) == "12,346"
    assert fmt_value(12.345) == "12.3"
    assert fmt_value(1.2345) == "1.23"
    assert fmt_value(float("nan")) == "\u2013"
    assert fmt_value(12.34, "\u00d7") == "12.3\u00d7"
    assert fmt_value(0.0312, "\u00d7") == "0.031\u00d7"
    assert fmt_range([3.0, 1000.0, 20.0]) == "3.00\u20131,000"
    assert fmt_range([5.0]) == "5.00"
    assert fmt_range([]) == "\u2013"


def test_ratio_runs_median_then_extremes() -> None:
    assert ratio_runs([20.0, 30.0, 40.0], [1.0, 2.0, 4.0]) == [15.0, 5.0, 40.0]
    assert ratio_runs([], [1.0]) == []
    assert ratio_runs([1.0], [0.0]) == []


def test_target_floor_and_ceiling() -> None:
    floor = Target(20_000, True, ">= 20,000")
    assert floor.met(20_000)
    assert not floor.met(5_000)
    assert floor.gap(5_000) == "missed by 75% (25% of it)"
    ceiling = Target(500, False, "<= 500 ms")
    assert ceiling.met(499)
    assert ceiling.gap(1000) == "missed: 2.00\u00d7 the ceiling"
    assert ceiling.gap(float("nan")) == "not measured"


def _figures() -> list[Figure]:
    return [
        Figure(
            "1 ingest",
            "e2e",
            "entries/s",
            [5000.0, 6000.0, 7000.0],
            "p",
            Target(20_000, True, ">= 20k"),
        ),
        Figure(
            "3 queries", "top 100, p99", "ms", [1.0, 2.0, 3.0], "p", Target(5, False, "<= 5 ms")
        ),
        Figure("3 queries", "HTTP top 100", "ms", [], "p", note="not run: gateway missing"),
        Figure("2 ratio", "e2e / naive", "\u00d7", ratio_runs([6000.0], [1000.0]), ratio=True),
    ]


def test_render_table_rows_and_status() -> None:
    table = render_table(_figures()).splitlines()
    assert table[0].startswith("| Scenario | Figure | Median")
    assert len(table) == 2 + 4
    assert "| 6,000 entries/s | 5,000\u20137,000 | 3 | \u274c >= 20k |" in table[2]
    assert "| 2.00 ms | 1.00\u20133.00 | 3 | \u2705 <= 5 ms |" in table[3]
    assert "| \u2013 | \u2013 | 0 | not run: gateway missing |" in table[4]
    assert "| 6.0\u00d7 |" in table[5]
    assert "| ratio |" in table[5]


def test_render_misses_names_missed_and_unmeasured_targets() -> None:
    figs = _figures()
    figs.append(Figure("1 latency", "p99", "ms", [], target=Target(500, False, "<= 500 ms")))
    lines = render_misses(figs)
    assert len(lines) == 2
    assert "e2e" in lines[0] and "missed" in lines[0]
    assert "not run" in lines[1]


def test_render_markdown_has_table_parameters_and_profiles() -> None:
    report = Report(Params.quick(), "2026-01-01 00:00:00", "2 cores")
    for f in _figures():
        report.add(f)
    report.profiles["Projector.process"] = "1.0 process"
    report.seconds = 90
    text = render_markdown(report, "## Analysis\n\nwhy")
    assert text.startswith("# Benchmarks")
    assert "`leaderboard bench --quick`" in text
    assert "## Targets missed" in text
    assert "## Parameters" in text and "**ingest**" in text
    assert "## Profile: Projector.process" in text
    assert text.rstrip().endswith("why")
    assert report.to_json()["figures"][2]["median"] is None


def test_report_get_finds_figure() -> None:
    report = Report(Params.full(), "t", "m")
    fig = report.add(Figure("a", "b", "ms", [1.0]))
    assert report.get("a", "b") is fig
    assert report.get("a", "c") is None


def test_match_stream_is_deterministic_with_distinct_players() -> None:
    a = list(match_stream(random.Random(3), ["x", "y"], 50, 20, 10, 1000))
    b = list(match_stream(random.Random(3), ["x", "y"], 50, 20, 10, 1000))
    assert [[e.participant_id for e in m.entries] for m in a] == [
        [e.participant_id for e in m.entries] for m in b
    ]
    for m in a:
        assert len({e.participant_id for e in m.entries}) == 10
        assert m.leaderboard_id in ("x", "y")
        assert m.occurred_at == 1000
    assert len({m.event_id for m in a}) == 20


def test_full_and_quick_presets_differ_in_size_only() -> None:
    full, quick = Params.full(), Params.quick()
    assert full.big_board == 1_000_000
    assert quick.big_board < full.big_board
    assert full.latency_rate == quick.latency_rate == 10_000
    assert full.reps >= 3


def test_target_parse_reads_the_rendered_text() -> None:
    floor = Target.parse("\u2265 20,000 entries/s")
    assert floor is not None and floor.at_least and floor.value == 20_000
    ceiling = Target.parse("\u2264 5 ms")
    assert ceiling is not None and not ceiling.at_least and ceiling.value == 5
    assert Target.parse("fast") is None


def test_report_round_trips_through_json() -> None:
    report = Report(Params.quick(), "t", "m")
    for f in _figures():
        f.target = (
            Target.parse(f.target.text.replace(">=", "\u2265").replace("<=", "\u2264"))
            if f.target
            else None
        )
        report.add(f)
    report.details["code"] = "commit x"
    again = report_from_json(report.to_json())
    assert render_markdown(again) == render_markdown(report)
