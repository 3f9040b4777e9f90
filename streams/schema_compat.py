"""Avro schema compatibility by the specification's resolution rules (pure: no I/O).

A reader can read a writer's records when every rule of "Schema Resolution" in the Avro
specification holds; *full* compatibility is that both ways, so old and new code can read each
other's records. Logical types are ignored (the underlying type is what is encoded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastavro.schema import expand_schema, parse_schema

__all__ = ["full_name", "full_problems", "read_problems"]

#: Writer type -> the reader types it is promoted to.
_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "double": {"double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
    "null": {"null"},
    "boolean": {"boolean"},
}
_NAMED = ("record", "error", "enum", "fixed")


def _expanded(schema: Any) -> Any:
    """The schema parsed, named references replaced by their definitions."""
    return expand_schema(parse_schema(schema, _write_hint=False))


def full_name(schema: Mapping[str, Any]) -> str:
    """The full name (``namespace.name``) of a named schema, as written in an .avsc."""
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(name: str) -> str:
    """The unqualified name: the specification matches named types by it."""
    return name.rsplit(".", 1)[-1]


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if kind in _NAMED:
        return f"{kind} {schema['name']}"
    if kind == "union":
        return "union [" + ", ".join(_describe(s) for s in schema) + "]"
    return kind


def _problems(reader: Any, writer: Any, at: str) -> list[str]:
    rk, wk = _kind(reader), _kind(writer)
    if wk == "union":
        # every branch the writer may have written must be readable
        out = []
        for branch in writer:
            out += _problems(reader, branch, at)
        return out
    if rk == "union":
        if any(not _problems(branch, writer, at) for branch in reader):
            return []
        return [f"{at}: {_describe(writer)} written, reader's {_describe(reader)} has no match"]
    if rk in _NAMED or wk in _NAMED:
        if rk != wk and not ({rk, wk} <= {"record", "error"}):
            return [f"{at}: type changed from {_describe(writer)} to {_describe(reader)}"]
        names = {_short(n) for n in (reader["name"], *reader.get("aliases", ()))}
        if _short(writer["name"]) not in names:
            return [f"{at}: name changed from {writer['name']} to {reader['name']}"]
        if rk == "fixed":
            if reader["size"] != writer["size"]:
                return [f"{at}: fixed size changed from {writer['size']} to {reader['size']}"]
            return []
        if rk == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [f"{at}: enum symbol(s) {', '.join(missing)} unknown to the reader"]
            return []
        return _record_problems(reader, writer, at)
    if rk in ("array", "map") or wk in ("array", "map"):
        if rk != wk:
            return [f"{at}: type changed from {wk} to {rk}"]
        part = "items" if rk == "array" else "values"
        return _problems(reader[part], writer[part], f"{at}[]")
    if rk not in _PROMOTIONS.get(wk, {wk}):
        return [f"{at}: type changed from {wk} to {rk}"]
    return []


def _record_problems(reader: Mapping[str, Any], writer: Mapping[str, Any], at: str) -> list[str]:
    written = {f["name"]: f for f in writer["fields"]}
    out = []
    for field in reader["fields"]:
        where = f"{at}.{field['name']}"
        source = next(
            (
                written[name]
                for name in (field["name"], *field.get("aliases", ()))
                if name in written
            ),
            None,
        )
        if source is not None:
            out += _problems(field["type"], source["type"], where)
        elif "default" not in field:
            out.append(f"{where}: field not written and has no default")
    return out


def read_problems(reader: Any, writer: Any) -> list[str]:
    """Why records written with ``writer`` cannot be read with ``reader`` (empty: they can)."""
    r, w = _expanded(reader), _expanded(writer)
    return _problems(r, w, str(r.get("name", "")) if isinstance(r, dict) else "")


def full_problems(new: Any, old: Any) -> list[str]:
    """Why ``new`` and ``old`` are not fully compatible: backward (new code reads old records),
    then forward (old code reads new records). Empty when both ways work."""
    backward = [f"backward: {p}" for p in read_problems(new, old)]
    forward = [f"forward: {p}" for p in read_problems(old, new)]
    return backward + forward
