"""The result model: a target, a figure (the runs of one measurement) and the run's report.

Every figure carries a stable ``key`` (dotted snake_case, e.g. ``replay.kafka``): its name is
prose that may be reworded, the key is what issues, the analysis and tools refer to.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from benchmarks.params import Params
from benchmarks.stats import fmt_range, summary


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for a figure: ``value`` is a floor (``at_least``) or a ceiling."""

    value: float
    at_least: bool
    text: str

    def met(self, figure: float) -> bool:
        """True if ``figure`` satisfies the target."""
        return figure >= self.value if self.at_least else figure <= self.value

    def gap(self, figure: float) -> str:
        """How far ``figure`` is from the target, in words."""
        if figure != figure:
            return "not measured"
        if self.met(figure):
            return "met"
        if self.at_least:
            return f"missed by {1 - figure / self.value:.0%} ({figure / self.value:.0%} of it)"
        return f"missed: {figure / self.value:.2f}\u00d7 the ceiling"

    @classmethod
    def parse(cls, text: str) -> Target | None:
        """Rebuild a target from its text ('≥ 20,000 entries/s', '≤ 5 ms'); None if unknown."""
        m = re.match(r"\s*([\u2265\u2264])\s*([0-9][0-9,.]*)", text)
        if m is None:
            return None
        return cls(float(m.group(2).replace(",", "")), m.group(1) == "\u2265", text)


#: A figure key: two or more dot-separated snake_case parts ("ingest.e2e_entries_per_s").
KEY_PATTERN: Final = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


@dataclass(slots=True)
class Figure:
    """One row of the table: the runs of one measurement and what they mean.

    ``key`` is the figure's stable id (keyword-only, required): unlike ``name`` it is not
    reworded, so results can be compared and referred to across runs.
    """

    scenario: str
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    params: str = ""
    target: Target | None = None
    note: str = ""
    ratio: bool = False
    key: str = field(kw_only=True)

    def __post_init__(self) -> None:
        if not KEY_PATTERN.match(self.key):
            raise ValueError(
                f"figure {self.scenario} / {self.name}: key {self.key!r} is not dotted "
                f"snake_case ({KEY_PATTERN.pattern})"
            )

    @property
    def median(self) -> float:
        """Median of the runs (for ratios: the ratio of the medians)."""
        if self.ratio:
            return self.runs[0] if self.runs else float("nan")
        return summary(self.runs)[0]

    def range_text(self) -> str:
        """min-max text (for ratios: from the extreme pairs)."""
        return fmt_range(self.runs[1:] if self.ratio else self.runs, self.unit)

    def status(self) -> str:
        """Target text with met/missed, or the note when the figure was not measured."""
        if not self.runs:
            return self.note or "not run"
        if self.target is None:
            return ""
        mark = "✅" if self.target.met(self.median) else "❌"
        return f"{mark} {self.target.text}"


@dataclass(slots=True)
class Report:
    """Everything one run produced: figures, parameters, profiles and notes."""

    params: Params
    started: str
    machine: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, figure: Figure) -> Figure:
        """Append ``figure`` and return it; its key must be new to the report."""
        clash = self.get(figure.key)
        if clash is not None:
            raise ValueError(
                f"figure {figure.scenario} / {figure.name}: key {figure.key!r} already used by "
                f"{clash.scenario} / {clash.name}"
            )
        self.figures.append(figure)
        return figure

    def alias(self, key: str, of: str, target: Target | None) -> Figure | None:
        """Publish figure ``of`` again under ``key`` (the name an issue gives it), with
        ``target``; both keys stay, for the tools that read either. None if ``of`` is absent.
        """
        src = self.get(of)
        if src is None:
            return None
        return self.add(
            Figure(
                src.scenario,
                f"{src.name} (= `{of}`)",
                src.unit,
                list(src.runs),
                src.params,
                target,
                src.note,
                src.ratio,
                key=key,
            )
        )

    def get(self, key: str) -> Figure | None:
        """The figure with that key, if any."""
        return next((f for f in self.figures if f.key == key), None)

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (benchmarks/results.json)."""
        return {
            "params": asdict(self.params),
            "started": self.started,
            "machine": self.machine,
            "seconds": round(self.seconds, 1),
            "figures": [
                {
                    "key": f.key,
                    "scenario": f.scenario,
                    "name": f.name,
                    "unit": f.unit,
                    "median": None if f.median != f.median else f.median,
                    "runs": f.runs,
                    "params": f.params,
                    "target": f.target.text if f.target else None,
                    "met": f.target.met(f.median) if f.target and f.runs else None,
                    "note": f.note,
                    "ratio": f.ratio,
                }
                for f in self.figures
            ],
            "details": self.details,
            "profiles": self.profiles,
        }
