"""Fuzz the gateway's OpenAPI document with schemathesis: no input may cause a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.e2e.test_gateway import ADMIN, Gateway, gateway  # noqa: F401  (module fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_no_server_errors(gateway: Gateway) -> None:  # noqa: F811
    """Every operation, 30 generated cases each; half carry the admin key to pass auth."""
    board = gateway.create_board()
    gateway.submit(board, "fuzzer", 1)
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            nonlocal checked
            if case.path_parameters and "board" in case.path_parameters and checked % 3 == 0:
                case.path_parameters["board"] = board  # reach Redis, not only the 404 path
            headers = {"X-API-Key": ADMIN} if checked % 2 else {}
            checked += 1
            response = case.call(headers=headers, timeout=20)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message"}

        run()
    assert checked > 100
