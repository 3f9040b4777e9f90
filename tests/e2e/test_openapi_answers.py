"""Real answers of a running gateway fit the response models its OpenAPI document names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from processors.gateway import responses as out
from tests.e2e.test_gateway import ADMIN, WRITER, Gateway, gateway  # noqa: F401  (fixture)
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def fits(model: type[BaseModel], body: Any) -> BaseModel:
    """``body`` validated by ``model`` (every documented field present, of its type)."""
    return model.model_validate(body)


def test_answers_fit_their_documented_models(gateway: Gateway) -> None:  # noqa: F811
    board = gateway.create_board()
    applied = gateway.submit(board, "ann", 30, metadata={"name": "Ann"})
    fits(out.AppliedOut, applied)
    gateway.submit(board, "bob", 20)
    w, a = {"X-API-Key": WRITER}, {"X-API-Key": ADMIN}
    with gateway.client() as c:
        fits(out.HealthOut, c.get("/health").json())
        fits(out.BoardsOut, c.get("/v1/leaderboards").json())
        fits(out.BoardStateOut, c.get(f"/v1/leaderboards/{board}").json())
        patched = c.patch(f"/v1/leaderboards/{board}", json={"watch_top_n": 5}, headers=a)
        fits(out.BoardOut, patched.json())
        page = c.get(f"/v1/leaderboards/{board}/rankings", params={"limit": 1})
        assert page.headers["etag"]
        assert fits(out.RankingsOut, page.json()).next_cursor  # type: ignore[attr-defined]
        fits(out.RankingsOut, c.get(page.request.url, params={"around": "bob"}).json())
        listed = c.get(f"/v1/leaderboards/{board}/rankings", params={"participants": "bob,x"})
        fits(out.ListedOut, listed.json())
        fits(
            out.ListedOut,
            c.post(
                f"/v1/leaderboards/{board}/rankings/participants", json={"participants": ["ann"]}
            ).json(),
        )
        fits(out.ParticipantOut, c.get(f"/v1/leaderboards/{board}/participants/bob").json())
        fits(out.PlacementsOut, c.get("/v1/participants/ann/placements").json())
        sent = c.post(
            f"/v1/leaderboards/{board}/scores", json={"participant_id": "cy", "score": 1}, headers=w
        )
        assert sent.status_code == 202
        fits(out.SubmittedOut, sent.json())
        prof = c.put("/v1/participants/ann/profile", json={"display_name": "Ann"}, headers=w)
        assert prof.status_code == 202
        fits(out.ProfileSetOut, prof.json())
        shown = wait_until(
            lambda: (r := c.get("/v1/participants/ann/profile")).status_code == 200 and r, 30
        )
        fits(out.ProfileOut, shown.json())
        for bad in (
            c.get(f"/v1/leaderboards/{board}/rankings", params={"limit": 0}),
            c.get("/v1/leaderboards/no-such-board"),
        ):
            assert bad.status_code in (400, 404)
            fits(out.ErrorOut, bad.json())
