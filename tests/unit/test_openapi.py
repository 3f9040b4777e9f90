"""The OpenAPI document describes every route of the gateway: summary, description, a named
response model for each answer with a JSON body, errors, ETag headers and the WebSockets."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from processors.gateway.app import create_app
from streams.settings import Settings


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(Settings())


def _routes(app: Any) -> list[Any]:
    """Every HTTP and WebSocket route of the app, through included routers (no prefixes)."""
    found: list[Any] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)
        if included is not None:
            pending.extend(included.routes)
        elif isinstance(route, APIRoute | APIWebSocketRoute):
            found.append(route)
    return found


def test_every_route_has_a_summary_a_description_and_named_response_models(app: Any) -> None:
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    gaps: list[str] = []
    documented = 0
    for route in _routes(app):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods):
            where = f"{method} {route.path_format}"
            op = doc["paths"][route.path_format][method.lower()]
            documented += 1
            if not op.get("summary") or not (op.get("description") or "").strip():
                gaps.append(f"{where}: no summary or description (a docstring)")
            responses = op["responses"]
            if not any(code.startswith("2") for code in responses):
                gaps.append(f"{where}: no success response")
            for code, answer in responses.items():
                content = answer.get("content", {})
                if "application/json" not in content:
                    if code.startswith("2") and not content:
                        gaps.append(f"{where} {code}: no body described")
                    continue
                schema = content["application/json"]["schema"]
                refs = [s.get("$ref", "") for s in schema.get("anyOf", [schema])]
                if not all(ref.startswith("#/components/schemas/") for ref in refs):
                    gaps.append(f"{where} {code}: body without a named response model: {schema}")
                for ref in refs:
                    if ref.rsplit("/", 1)[-1] not in schemas:
                        gaps.append(f"{where} {code}: {ref} is not in the components")
            if "400" not in responses:
                gaps.append(f"{where}: the 400 answer (ErrorOut) is not described")
            if "422" in responses and "HTTPValidationError" in str(responses["422"]):
                gaps.append(f"{where}: FastAPI's 422 body, but the gateway answers 400")
    assert not gaps, "\n".join(gaps)
    assert documented >= 17


def test_every_websocket_is_described_under_its_tag(app: Any) -> None:
    doc = app.openapi()
    text = " ".join(t["description"] for t in doc.get("tags", []))
    sockets = [r.path_format for r in _routes(app) if isinstance(r, APIWebSocketRoute)]
    assert len(sockets) >= 2
    for path in sockets:
        shown = path.replace("{participant:path}", "{participant}")
        assert f"`{shown}" in text, f"WebSocket {path} is not in the OpenAPI document"


def test_conditional_reads_document_their_etag_and_304(app: Any) -> None:
    op = app.openapi()["paths"]["/v1/leaderboards/{board}/rankings"]["get"]
    assert "ETag" in op["responses"]["200"]["headers"]
    assert "ETag" in op["responses"]["304"]["headers"]
    params = {p["name"]: p for p in op["parameters"]}
    assert {"cursor", "participants", "limit", "offset", "around"} <= set(params)
    assert params["cursor"]["description"]
