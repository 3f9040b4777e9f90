"""``leaderboard bench``: run the benchmarks and write BENCHMARKS.md + a JSON of the figures."""

from __future__ import annotations

import json
from pathlib import Path

import click

import benchmarks as bench
from infra import stack as local_stack
from streams.settings import get_settings

_SCENARIO_HELP = "\n\n".join(f"\b\n{name}: {text}." for name, text in bench.SCENARIOS.items())


@click.command(
    help=(
        "Run the benchmarks against the local stack and write BENCHMARKS.md plus a "
        "JSON of every figure. Brings the stack up if needed. Full run ≤ 30 min: 3 runs per "
        "figure, 500,000-entry ingest backlog, 1,000,000-entry board; --quick ≤ 5 min: "
        "2 runs, 100,000-entry ingest backlog and board.\n\nScenarios and their parameters:\n\n"
        + _SCENARIO_HELP
    )
)
@click.option("--quick", is_flag=True, help="Smaller sizes and 2 runs per figure (≤ 5 min).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=bench.DEFAULT_MARKDOWN,
    show_default=True,
    help="Markdown report to write.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=bench.DEFAULT_JSON,
    show_default=True,
    help="Machine-readable results to write.",
)
@click.option(
    "--only",
    type=click.Choice(list(bench.SCENARIOS)),
    multiple=True,
    help="Run only this scenario (repeatable). Ratios need ingest and baselines together.",
)
@click.option("--no-stack", is_flag=True, help="Do not try to bring the local stack up.")
@click.option(
    "--shared-redis",
    is_flag=True,
    help="Use the stack's Redis instead of a private redis-server started for the run "
    "(configured like the stack's: AOF everysec).",
)
@click.option(
    "--render-only",
    is_flag=True,
    help="Measure nothing: re-render --output from the results in --json.",
)
def bench_command(
    quick: bool,
    output: Path,
    json_path: Path,
    only: tuple[str, ...],
    no_stack: bool,
    shared_redis: bool,
    render_only: bool,
) -> None:
    """Entry point of ``leaderboard bench``."""
    if render_only:
        try:
            data = json.loads(json_path.read_text())
            report = bench.report_from_json(data)
        except (OSError, ValueError, KeyError) as exc:
            raise click.ClickException(f"cannot read {json_path}: {exc}") from exc
        bench.write_outputs(report, output, None)
        click.echo(f"wrote {output} from {json_path}")
        return
    settings = get_settings()
    if not no_stack:
        local_stack.up(settings, lambda line: click.echo(f"stack: {line}", err=True))
    params = bench.Params.quick() if quick else bench.Params.full()
    report = bench.run_bench(
        settings,
        params,
        only=only,
        say=lambda line: click.echo(line, err=True),
        shared_redis=shared_redis,
    )
    bench.write_outputs(report, output, json_path)
    click.echo(bench.render_table(report.figures))
    click.echo(f"wrote {output} and {json_path} ({report.seconds / 60:.1f} min)")


bench_command.name = "bench"

COMMANDS = [bench_command]
