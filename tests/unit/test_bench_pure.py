"""Pure parts of the benchmarks: statistics, formatting, targets and the Markdown table."""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from benchmarks.analysis import analysis
from benchmarks.figures import KEY_DOCS, KEY_PATTERN, Figure, Report, Target, key_doc
from benchmarks.params import Params
from benchmarks.report import (
    DEFAULT_JSON,
    render_markdown,
    render_misses,
    render_table,
    report_from_json,
)
from benchmarks.scenarios.http import query_slug
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
            key="ingest.e2e_entries_per_s",
        ),
        Figure(
            "3 queries",
            "top 100, p99",
            "ms",
            [1.0, 2.0, 3.0],
            "p",
            Target(5, False, "<= 5 ms"),
            key="redis.top100_p99",
        ),
        Figure(
            "3 queries",
            "HTTP top 100",
            "ms",
            [],
            "p",
            note="not run: gateway missing",
            key="http.top100_p99",
        ),
        Figure(
            "2 ratio",
            "e2e / naive",
            "\u00d7",
            ratio_runs([6000.0], [1000.0]),
            ratio=True,
            key="ratio.e2e_vs_naive",
        ),
    ]


def test_render_table_rows_and_status() -> None:
    table = render_table(_figures()).splitlines()
    assert table[0].startswith("| Scenario | Figure | Key | Median")
    assert len(table) == 2 + 4
    assert table[2].startswith("| 1 ingest | e2e | `ingest.e2e_entries_per_s` | ")
    assert "| 6,000 entries/s | 5,000\u20137,000 | 3 | \u274c >= 20k |" in table[2]
    assert "| 2.00 ms | 1.00\u20133.00 | 3 | \u2705 <= 5 ms |" in table[3]
    assert "| \u2013 | \u2013 | 0 | not run: gateway missing |" in table[4]
    assert "| 6.0\u00d7 |" in table[5]
    assert "| ratio |" in table[5]


def test_render_misses_names_missed_and_unmeasured_targets() -> None:
    figs = _figures()
    figs.append(
        Figure(
            "1 latency",
            "p99",
            "ms",
            [],
            target=Target(500, False, "<= 500 ms"),
            key="latency.headline.redis_p99",
        )
    )
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


def test_report_get_finds_figure_by_key() -> None:
    report = Report(Params.full(), "t", "m")
    fig = report.add(Figure("a", "b", "ms", [1.0], key="a.b"))
    assert report.get("a.b") is fig
    assert report.get("a.c") is None


def test_report_alias_publishes_a_figure_under_a_second_key() -> None:
    report = Report(Params.full(), "t", "m")
    report.add(Figure("1 ingest", "e2e", "entries/s", [3.0, 1.0, 2.0], key="ingest.e2e_rate"))
    alias = report.alias("ingest.e2e", "ingest.e2e_rate", Target(30, True, "≥ 30"))
    assert alias is not None and report.get("ingest.e2e") is alias
    assert report.get("ingest.e2e_rate") is not None  # the old key stays
    assert alias.runs == [3.0, 1.0, 2.0] and alias.median == 2.0
    assert alias.name == "e2e (= `ingest.e2e_rate`)" and alias.status() == "❌ ≥ 30"
    assert report.alias("ratio.naive", "ratio.absent", None) is None


def test_every_figure_key_is_documented() -> None:
    keys = [f["key"] for f in json.loads(DEFAULT_JSON.read_text())["figures"]]
    keys += ["ingest.e2e", "ratio.naive", "ws.p99_10k", "ws.viewers", "ws.viewers_fanout"]
    keys += ["ws.viewers_top_p99", "ws.viewers_client_cpu", "ws.viewers_gateway_cpu"]
    keys += ["ws.viewers_gateway_us_per_push"]
    # the machine's CPU split (benchmarks/machine_cpu.py), by group, ingest and latency
    split = ("kafka", "redis", "postgres", "machine", "other")
    keys += [f"ingest.{g}_cpu_us_per_entry" for g in split]
    keys += ["ingest.produce_client_cpu_us_per_entry", "ingest.produce_kafka_cpu_us_per_entry"]
    keys += [f"latency.headline.{g}_cpu_us_per_entry" for g in (*split, "gateway", "bench")]
    keys += ["ws.viewers_top_fanout_p99", "ws.viewers_top_upstream_p99", "rebuild.all"]
    assert [k for k in keys if key_doc(k) is None] == []
    assert key_doc("ratio.e2e_vs_zadd") == KEY_DOCS["ratio.e2e_vs_*"]
    assert key_doc("nothing.here") is None


def test_report_rejects_a_repeated_key() -> None:
    report = Report(Params.full(), "t", "m")
    report.add(Figure("a", "b", "ms", [1.0], key="a.b"))
    with pytest.raises(ValueError, match=r"a / c: key 'a.b' already used by a / b"):
        report.add(Figure("a", "c", "ms", [2.0], key="a.b"))


@pytest.mark.parametrize("key", ["", "ingest", "Ingest.e2e", "ingest.e2e-rate", "a..b", ".a.b"])
def test_figure_rejects_a_malformed_key(key: str) -> None:
    with pytest.raises(ValueError, match="not dotted snake_case"):
        Figure("1 ingest", "e2e", "entries/s", key=key)


def test_key_pattern_is_the_documented_rule() -> None:
    assert KEY_PATTERN.pattern == r"^[a-z0-9_]+(\.[a-z0-9_]+)+$"
    for key in ("ingest.e2e_entries_per_s", "replay.kafka", "latency.headline.redis_p99"):
        assert KEY_PATTERN.match(key)


def test_query_slug_names_each_query_kind() -> None:
    assert query_slug("top 100") == "top100"
    assert query_slug("rank + 5 neighbours") == "around"
    assert query_slug("page of 100 at offset 50,000") == "deep_page"
    with pytest.raises(ValueError, match="no figure key"):
        query_slug("something else")


def _committed() -> dict[str, object]:
    data = json.loads(DEFAULT_JSON.read_text())
    assert isinstance(data, dict)
    return data


def test_committed_results_have_unique_well_formed_keys() -> None:
    figures = _committed()["figures"]
    assert isinstance(figures, list) and figures
    missing = [f"{f['scenario']} / {f['name']}" for f in figures if not f.get("key")]
    assert not missing, f"figures without a key: {missing}"
    keys = [f["key"] for f in figures]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert all(re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)+", k) for k in keys), keys
    # Keys that open issues refer to.
    assert {"replay.kafka", "replay.postgres", "memory.per_entry", "http.top100_rps"} <= set(keys)
    assert report_from_json(_committed()).get("replay.kafka") is not None


def test_committed_results_feed_every_quoted_figure() -> None:
    """The closing analysis quotes figures by key: every one it needs is in results.json."""
    text = analysis(report_from_json(_committed()))
    assert "n/a" not in text


def test_report_from_json_requires_a_key() -> None:
    report = Report(Params.quick(), "t", "m")
    for f in _figures():
        report.add(f)
    data = report.to_json()
    assert [f["key"] for f in data["figures"]] == [f.key for f in _figures()]
    del data["figures"][1]["key"]
    with pytest.raises(ValueError, match=r"figure #2 \(3 queries / top 100, p99\) has no 'key'"):
        report_from_json(data)


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


def _readme_figure_rows() -> list[tuple[list[str], list[float], list[int]]]:
    """(keys, shown numbers, decimals of each) of the README's benchmark table, one per row."""
    readme = (DEFAULT_JSON.parent.parent / "README.md").read_text()
    section = readme.split("\n## Benchmarks", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([a-z0-9_.]+)`", cells[0])
        shown = re.findall(r"\d[\d,]*(?:\.\d+)?", cells[2])[: len(keys)]
        numbers = [float(s.replace(",", "")) for s in shown]
        decimals = [len(s.split(".")[1]) if "." in s else 0 for s in shown]
        rows.append((keys, numbers, decimals))
    return rows


def test_the_readme_benchmark_table_shows_the_figures_of_results_json() -> None:
    # The README's table repeats the headline figures; after a full bench they must follow.
    values = {f["key"]: f["median"] for f in _committed()["figures"]}
    rows = _readme_figure_rows()
    assert len(rows) >= 10
    for keys, numbers, decimals in rows:
        assert len(numbers) == len(keys), (keys, numbers)
        for key, shown, places in zip(keys, numbers, decimals, strict=True):
            assert key in values, f"README names {key}, which results.json lacks"
            assert abs(values[key] - shown) <= 0.5 * 10**-places + 1e-9, (key, shown, values[key])
