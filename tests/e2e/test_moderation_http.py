"""Moderation and tournament limits over HTTP: the admin route and ``?wait=true`` refusals."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_gateway import A, Gateway, W, error_code, gateway  # noqa: F401  (fixture)
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def submit(c: httpx.Client, board: str, pid: str, score: int) -> httpx.Response:
    return c.post(
        f"/v1/leaderboards/{board}/scores?wait=true",
        json={"participant_id": pid, "score": score},
        headers=W,
    )


def ranked(c: httpx.Client, board: str) -> list[str]:
    r = c.get(f"/v1/leaderboards/{board}/rankings?limit=10")
    assert r.status_code == 200, r.text
    return [row["participant_id"] for row in r.json()["entries"]]


def test_moderation_route_scope_errors_and_effects(gateway: Gateway) -> None:  # noqa: F811
    board = gateway.create_board(retain_entries=True)
    plain = gateway.create_board()
    url = f"/v1/leaderboards/{board}/moderation"
    with gateway.client() as c:
        for pid, score in (("ann", 5), ("bob", 9), ("cid", 1)):
            assert submit(c, board, pid, score).status_code == 200
        ban = {"action": "ban", "participant_id": "cid", "reason": "bot"}
        r = c.post(url, json=ban)
        assert r.status_code == 401, r.text
        r = c.post(url, json=ban, headers=W)
        assert r.status_code == 403, r.text
        r = c.post(url, json={"action": "ban", "participant_id": "cid"}, headers=A)
        assert r.status_code == 400 and "reason" in r.text, r.text
        r = c.post(url, json={"action": "void", "participant_id": "cid", "reason": "x"}, headers=A)
        assert r.status_code == 400 and "event_id" in r.text, r.text
        r = c.post("/v1/leaderboards/nope-none/moderation", json=ban, headers=A)
        assert r.status_code == 404, r.text
        void = {"action": "void", "event_id": "e1", "reason": "x"}
        r = c.post(f"/v1/leaderboards/{plain}/moderation", json=void, headers=A)
        assert r.status_code == 422 and "retain_entries" in r.text, r.text

        r = c.post(url, json=ban, headers=A)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["action"] == "participant_banned" and body["target"] == "cid"
        assert body["issued_by"].startswith("key:") and "admin" not in body["issued_by"]
        # the ban is on the log before this score: refused with the reason
        wait_until(lambda: submit(c, board, "cid", 50).status_code == 422, 30)
        r = submit(c, board, "cid", 60)
        assert r.status_code == 422 and error_code(r) == "refused", r.text
        assert "banned: participant cid is banned" in r.text

        remove = {"action": "remove", "participant_id": "bob", "reason": "smurf account"}
        assert c.post(url, json=remove, headers=A).status_code == 202
        wait_until(lambda: ranked(c, board) == ["ann", "cid"], 30)


def test_wait_answers_tournament_limits(gateway: Gateway) -> None:  # noqa: F811
    board = gateway.create_board(reset_period="daily", max_attempts=2, max_participants=2)
    with gateway.client() as c:
        assert submit(c, board, "ann", 1).status_code == 200
        assert submit(c, board, "ann", 2).status_code == 200
        r = submit(c, board, "ann", 3)
        assert r.status_code == 422 and "max_attempts: participant ann" in r.text, r.text
        assert submit(c, board, "bob", 1).status_code == 200
        r = submit(c, board, "cid", 1)
        assert r.status_code == 422 and "max_participants: period" in r.text, r.text
        r = c.get(f"/v1/leaderboards/{board}")
        assert r.json()["max_attempts"] == 2 and r.json()["max_participants"] == 2
        r = c.post(
            "/v1/leaderboards",
            json={"leaderboard_id": board + "x", "max_attempts": 0},
            headers=A,
        )
        assert r.status_code == 400 and "max_attempts" in r.text, r.text
