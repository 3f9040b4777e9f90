"""Full Avro compatibility (``streams.schema_compat``) and ``leaderboard schemas check``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from processors.cli import cli
from streams.codec import SCHEMA_DIR
from streams.schema_compat import full_problems, read_problems

CURRENT = json.loads((SCHEMA_DIR / "MatchResultSubmitted.avsc").read_text())


def _record(*fields: dict[str, Any], name: str = "T") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields)}


def _check(schema: dict[str, Any], tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "new.avsc"
    path.write_text(json.dumps(schema))
    result = CliRunner().invoke(cli, ["schemas", "check", str(path)])
    return result.exit_code, result.output


def test_a_new_optional_field_with_a_default_is_compatible_with_every_version(
    tmp_path: Path,
) -> None:
    new = copy.deepcopy(CURRENT)
    new["fields"].append(
        {"name": "region", "type": ["null", "string"], "default": None, "doc": "where"}
    )
    code, out = _check(new, tmp_path)
    assert code == 0, out
    assert "schemas/MatchResultSubmitted.avsc: compatible" in out
    assert "schemas/history/MatchResultSubmitted.v1.avsc: compatible" in out
    assert "fully compatible with all 2 version(s)" in out


def test_a_removed_field_without_default_breaks_forward_on_every_version(
    tmp_path: Path,
) -> None:
    new = copy.deepcopy(CURRENT)
    new["fields"] = [f for f in new["fields"] if f["name"] != "match_id"]
    code, out = _check(new, tmp_path)
    assert code == 1, out
    lines = [ln for ln in out.splitlines() if "INCOMPATIBLE" in ln]
    assert len(lines) == 2, out
    for line in lines:
        assert "forward: io.leaderboard.events.MatchResultSubmitted.match_id: field not " in line
        assert "backward" not in line  # new code simply ignores the old field
    assert "incompatible with 2 of 2 version(s)" in out


def test_a_type_change_breaks_both_ways(tmp_path: Path) -> None:
    new = copy.deepcopy(CURRENT)
    entry = new["fields"][4]["type"]["items"]
    next(f for f in entry["fields"] if f["name"] == "score")["type"] = "string"
    code, out = _check(new, tmp_path)
    assert code == 1, out
    at = "io.leaderboard.events.MatchResultSubmitted.entries[].score"
    assert f"backward: {at}: type changed from long to string" in out, out
    assert f"forward: {at}: type changed from string to long" in out, out


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.avsc"
    path.write_text("{not json")
    result = CliRunner().invoke(cli, ["schemas", "check", str(path)])
    assert result.exit_code == 2 and "not a readable JSON file" in result.output
    code, out = _check({"type": "record", "name": "T", "fields": [{"name": "a"}]}, tmp_path)
    assert code == 0 and "a new record, nothing to check" in out, out
    code, out = _check({**CURRENT, "fields": [{"name": "a", "type": "nope"}]}, tmp_path)
    assert code == 2 and "not a valid Avro schema" in out, out


@pytest.mark.parametrize(
    ("reader", "writer", "problem"),
    [
        ("long", "int", None),  # promotion
        ("int", "long", "type changed from long to int"),
        ("bytes", "string", None),
        (["null", "string"], "string", None),
        ("string", ["null", "string"], "type changed from null to string"),
        ({"type": "array", "items": "long"}, {"type": "array", "items": "int"}, None),
        ({"type": "map", "values": "int"}, {"type": "map", "values": "long"}, "from long to int"),
        (
            {"type": "enum", "name": "E", "symbols": ["a"]},
            {"type": "enum", "name": "E", "symbols": ["a", "b"]},
            "enum symbol(s) b unknown",
        ),
        (
            {"type": "enum", "name": "E", "symbols": ["a"], "default": "a"},
            {"type": "enum", "name": "E", "symbols": ["a", "b"]},
            None,
        ),
        (
            {"type": "fixed", "name": "F", "size": 4},
            {"type": "fixed", "name": "F", "size": 8},
            "fixed size changed from 8 to 4",
        ),
        (
            {"type": "enum", "name": "E", "symbols": ["a"]},
            {"type": "enum", "name": "G", "symbols": ["a"]},
            "name changed from t.G to t.E",
        ),
    ],
)
def test_resolution_rules(reader: Any, writer: Any, problem: str | None) -> None:
    got = read_problems(
        _record({"name": "f", "type": reader}), _record({"name": "f", "type": writer})
    )
    if problem is None:
        assert got == []
    else:
        assert len(got) == 1 and problem in got[0] and got[0].startswith("t.T.f"), got


def test_aliases_and_defaults() -> None:
    old = _record({"name": "a", "type": "string"})
    renamed = _record({"name": "b", "type": "string", "aliases": ["a"]})
    assert read_problems(renamed, old) == []
    assert read_problems(old, renamed) == ["t.T.a: field not written and has no default"]
    added = _record({"name": "a", "type": "string"}, {"name": "n", "type": "int"})
    assert full_problems(added, old) == ["backward: t.T.n: field not written and has no default"]
