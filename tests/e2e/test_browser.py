"""The live page in Debian's headless chromium (Playwright): rows, a new leader, no reload,
names and digits, paging, past periods and the rank chart, polling when WebSocket fails."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.test_gateway import WRITER, A, Gateway, W, gateway  # noqa: F401  (module fixture)
from tests.integration.conftest import ARTIFACTS, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (CI runs as root)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(
            [apt, "install", "-y", "-qq", "chromium"], check=False, env=env, capture_output=True
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium driven by Playwright (no `playwright install`: Debian's binary)."""
    path = ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_profile(gw: Gateway, pid: str) -> None:
    """Wait until the sinks worker has projected ``pid``'s profile."""

    def found() -> bool:
        with gw.client() as c:
            return c.get(f"/v1/participants/{pid}/profile").status_code == 200

    wait_until(found, timeout=30)


def test_live_page_follows_a_new_leader(gateway: Gateway, browser: Any) -> None:  # noqa: F811
    board = gateway.create_board()
    for i in range(5):
        gateway.submit(board, f"b{i}", 10 * (i + 1))
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(gateway.url + "/")
        page.wait_for_selector(f'li[data-board="{board}"] a', timeout=10_000)
        page.click(f'li[data-board="{board}"] a')
        page.wait_for_url(f"**/boards/{board}")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 5")
        ranks = page.eval_on_selector_all(
            "#rows tr", "rows => rows.map(r => [r.dataset.rank, r.dataset.pid])"
        )
        assert ranks == [["1", "b4"], ["2", "b3"], ["3", "b2"], ["4", "b1"], ["5", "b0"]]
        assert page.text_content("#status") == "live"
        page.evaluate("window.__sameDocument = true")

        page.fill("#track-pid", "b4")
        page.click("#track-form button")
        page.wait_for_function(
            "document.querySelector('#track-out').textContent.includes('rank 1')"
        )

        # a profile set now shows in the next message (the delta of the new leader below)
        with gateway.client() as c:
            r = c.put(
                "/v1/participants/challenger/profile",
                json={"display_name": "The Challenger", "country": "NO"},
                headers={"X-API-Key": WRITER},
            )
            assert r.status_code == 202, r.text
        wait_profile(gateway, "challenger")
        page.fill("#score-pid", "challenger")
        page.fill("#score-value", "999")
        page.fill("#score-key", WRITER)
        page.click("#score-submit")
        page.wait_for_function(
            "document.querySelector('#rows tr')?.dataset.pid === 'challenger'", timeout=10_000
        )
        page.wait_for_function(
            "document.querySelector('#track-out').textContent.includes('rank 2')"
        )
        page.wait_for_function("document.querySelector('#score-out').dataset.status === '200'")
        assert page.evaluate("window.__sameDocument") is True  # updated without a reload
        rows = page.eval_on_selector_all(
            "#rows tr", "rows => rows.map(r => [r.dataset.rank, r.dataset.pid])"
        )
        assert rows[:2] == [["1", "challenger"], ["2", "b4"]]
        assert "▼" in (page.text_content('#rows tr[data-pid="b4"] .move') or "")
        assert "new" in (page.text_content('#rows tr[data-pid="challenger"] .move') or "")
        assert page.text_content('#rows tr[data-pid="challenger"] .name') == "The Challenger"
        assert page.text_content('#rows tr[data-pid="challenger"] .country') == " NO"
        assert page.text_content('#rows tr[data-pid="b4"] .pid') == "b4"  # no profile: the id
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-live-board.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()


def test_live_page_fills_the_row_that_enters_the_top(gateway: Gateway, browser: Any) -> None:  # noqa: F811
    """A leader falling out of the top n on a ``set`` board: the page shows the row that
    enters at rank n (the delta's fill) without a reload."""
    board = gateway.create_board(operator="set")
    for i in range(4):
        gateway.submit(board, f"f{i}", 10 * (i + 1))
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{gateway.url}/boards/{board}?n=2")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 2")
        gateway.submit(board, "f3", 1)  # the leader falls to rank 4
        page.wait_for_function(
            "[...document.querySelectorAll('#rows tr')].map(r => r.dataset.pid).join() === 'f2,f1'",
            timeout=10_000,
        )
        assert not errors, errors
    finally:
        page.close()


def test_live_page_says_an_unknown_board_is_unknown_and_stops(
    gateway: Gateway,  # noqa: F811
    browser: Any,
) -> None:
    """An unknown board: one connection, a clear message, no reconnecting every second."""
    page = browser.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(f"{gateway.url}/boards/no-such-board-here")
        page.wait_for_selector('#status[data-final="4404"]', timeout=10_000)
        assert "no-such-board-here" in (page.text_content("#status") or "")
        page.wait_for_timeout(2500)  # the old page reconnected every second
        assert len(sockets) == 1, sockets
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-unknown-board.png"), full_page=True)
    finally:
        page.close()


def post_all(gw: Gateway, board: str, scores: dict[str, int]) -> None:
    """Submit every score (202, no wait) and wait until the board holds them all."""
    with gw.client() as c:
        for pid, score in scores.items():
            r = c.post(
                f"/v1/leaderboards/{board}/scores",
                json={"participant_id": pid, "score": score},
                headers=W,
            )
            assert r.status_code == 202, r.text

        def applied() -> bool:
            body = c.get(f"/v1/leaderboards/{board}/rankings", params={"limit": 1}).json()
            return bool(body.get("count") == len(scores))

        wait_until(applied, timeout=30)


def http_rows(gw: Gateway, board: str, limit: int, offset: int = 0) -> list[list[str]]:
    """[rank, participant] of a page of the rankings, as the page's rows show them."""
    with gw.client() as c:
        body = c.get(
            f"/v1/leaderboards/{board}/rankings", params={"limit": limit, "offset": offset}
        ).json()
    return [[str(e["rank"]), e["participant_id"]] for e in body["entries"]]


def settle(page: Any, predicate: Callable[[], Any], timeout: float = 20) -> None:
    """Wait for ``predicate`` while Playwright delivers the page's events (a plain sleep
    would not: its event handlers run only inside Playwright calls)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        page.wait_for_timeout(200)


def page_rows(page: Any) -> list[list[str]]:
    return list(
        page.eval_on_selector_all(
            "#rows tr", "rows => rows.map(r => [r.dataset.rank, r.dataset.pid])"
        )
    )


LONG_ID = "player-" + "x" * 120


def test_live_page_names_digits_long_ids_and_pages_beyond_the_top(
    gateway: Gateway,  # noqa: F811
    browser: Any,
) -> None:
    """Display names, grouped digits and cut long ids in the live top 10; the next pages
    (ranks 11-20, 21-25) are read over HTTP with If-None-Match and follow the board."""
    board = gateway.create_board()
    scores = {f"p{i:02d}": 100 * (i + 1) for i in range(23)}
    scores["whale"] = 1_234_567
    scores[LONG_ID] = 50_000
    with gateway.client() as c:
        r = c.put("/v1/participants/whale/profile", json={"display_name": "Moby"}, headers=W)
        assert r.status_code == 202, r.text
    wait_profile(gateway, "whale")
    post_all(gateway, board, scores)
    context = browser.new_context(locale="en-US", viewport={"width": 1000, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    answers: list[int] = []
    page.on("response", lambda res: answers.append(res.status) if "/rankings" in res.url else None)
    try:
        page.goto(f"{gateway.url}/boards/{board}")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 10")
        assert page_rows(page) == http_rows(gateway, board, 10)
        whale = '#rows tr[data-pid="whale"]'
        assert page.text_content(f"{whale} .score") == "1,234,567"
        assert page.text_content(f"{whale} .name") == "Moby"
        assert page.text_content("#count") == "25"
        cut = page.eval_on_selector(
            f'#rows tr[data-pid="{LONG_ID}"] .pid',
            "td => { const id = td.querySelector('.id'); "
            "return [td.title, id.scrollWidth > id.clientWidth,"
            " id.getBoundingClientRect().width] }",
        )
        assert cut[0] == LONG_ID and cut[1] is True, cut  # cut with an ellipsis, whole in title
        assert cut[2] < 400, cut  # at most 22em: the table keeps its shape
        assert page.is_hidden("#prev")
        assert page.text_content("#next") == "ranks 11\u201320 \u2192"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-names-digits.png"), full_page=True)

        page.click("#next")
        page.wait_for_url(f"**/boards/{board}?offset=10")
        page.wait_for_function("document.querySelector('#rows tr')?.dataset.rank === '11'")
        assert page_rows(page) == http_rows(gateway, board, 10, 10)
        assert page.get_attribute("#status", "data-mode") == "polling"
        assert "refreshed every 2 s" in (page.text_content("#status") or "")
        assert not page.is_hidden("#prev") and not page.is_hidden("#next")
        # an unchanged board answers 304 to the page's If-None-Match ...
        settle(page, lambda: 304 in answers)
        # ... and a new row at rank 11 shows without a reload
        page.evaluate("window.__sameDocument = true")
        gateway.submit(board, "newcomer", 1150)  # rank 15: between p11 (1200) and p10 (1100)
        page.wait_for_function(
            "document.querySelector('#rows tr[data-pid=\"newcomer\"]')?.dataset.rank === '15'",
            timeout=15_000,
        )
        assert page.evaluate("window.__sameDocument") is True
        assert page_rows(page) == http_rows(gateway, board, 10, 10)
        page.screenshot(path=str(ARTIFACTS / "browser-page-2.png"), full_page=True)

        page.click("#next")
        page.wait_for_url(f"**/boards/{board}?offset=20")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 6")
        assert page_rows(page) == http_rows(gateway, board, 10, 20)
        assert page.is_hidden("#next")
        assert page.text_content("#prev") == "\u2190 ranks 11\u201320"
        assert not errors, errors
    finally:
        context.close()


# A WebSocket that never connects (a proxy that blocks upgrades): each attempt fails at once
# and is recorded, so the page's reconnect schedule can be read.
BLOCKED_WEBSOCKET = """
window.__wsAttempts = [];
window.WebSocket = class {
  constructor(url) {
    window.__wsAttempts.push(performance.now());
    setTimeout(() => {
      if (this.onerror) this.onerror(new Event("error"));
      if (this.onclose) this.onclose({ code: 1006, reason: "", wasClean: false });
    }, 5);
  }
  send() {}
  close() {}
};
"""


def test_live_page_polls_with_etags_when_websocket_is_blocked(
    gateway: Gateway,  # noqa: F811
    browser: Any,
) -> None:
    """No WebSocket: the page backs off (1 s, 2 s, … ±25 %), shows the top n from HTTP
    polling with If-None-Match meanwhile, and follows a new leader without a reload."""
    board = gateway.create_board()
    post_all(gateway, board, {f"q{i}": 10 * (i + 1) for i in range(4)})
    context = browser.new_context(locale="en-US")
    context.add_init_script(BLOCKED_WEBSOCKET)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    answers: list[Any] = []
    page.on("response", lambda res: answers.append(res) if "/rankings" in res.url else None)
    try:
        page.goto(f"{gateway.url}/boards/{board}")
        page.wait_for_selector('#status[data-mode="polling"]', timeout=10_000)
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 4")
        assert page_rows(page) == http_rows(gateway, board, 10)
        assert "polling" in (page.text_content("#status") or "")
        settle(page, lambda: any(r.status == 304 for r in answers))
        asked = [r.request.all_headers().get("if-none-match") for r in answers if r.status == 304]
        assert all(tag and tag.startswith('W/"') for tag in asked), asked  # the page's ETag
        page.evaluate("window.__sameDocument = true")
        gateway.submit(board, "leader", 1_000_000)
        page.wait_for_function(
            "document.querySelector('#rows tr')?.dataset.pid === 'leader'", timeout=15_000
        )
        assert page.text_content('#rows tr[data-pid="leader"] .score') == "1,000,000"
        assert page.evaluate("window.__sameDocument") is True
        # the reconnect schedule: timers never fire early, so these lower bounds hold
        # however loaded the machine is (1 s and 2 s, less 25 % jitter)
        deadline = time.monotonic() + 30
        while len(page.evaluate("window.__wsAttempts")) < 3 and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        at = page.evaluate("window.__wsAttempts")
        assert len(at) >= 3, at
        gaps = [b - a for a, b in itertools.pairwise(at)]
        assert gaps[0] >= 740 and gaps[1] >= 1490, gaps
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-polling-fallback.png"), full_page=True)
        assert not errors, errors
    finally:
        context.close()


def test_live_page_links_past_periods_and_charts_the_tracked_rank(
    gateway: Gateway,  # noqa: F811
    browser: Any,
) -> None:
    """A closed period is one click away (its final standings from PostgreSQL); tracking a
    participant draws its final rank there, then every rank it takes while the page is open."""
    closed = gateway.create_board()
    post_all(gateway, closed, {"ann": 30, "bob": 20, "cid": 10})
    with gateway.client() as c:
        r = c.patch(f"/v1/leaderboards/{closed}", json={"status": "closed"}, headers=A)
        assert r.status_code == 200, r.text

        def final() -> dict[str, Any] | None:
            r = c.get(f"/v1/leaderboards/{closed}/history")
            return r.json() if r.status_code == 200 else None

        hist = wait_until(final, timeout=60, every=0.5)
    period = hist["period"]
    page = browser.new_page(locale="en-US")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{gateway.url}/boards/{closed}")
        page.wait_for_selector("#past", timeout=10_000)
        assert page.text_content("#past") == f"past periods: {period}"
        page.click("#past")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 3")
        assert page_rows(page) == [["1", "ann"], ["2", "bob"], ["3", "cid"]]
        assert f"final standings of period {period}" in (page.text_content("#status") or "")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-past-period.png"), full_page=True)

        # the same participant on a live board: its closed period's final rank (2), then live
        page.goto(f"{gateway.url}/boards/{closed}")
        page.fill("#track-pid", "bob")
        page.click("#track-form button")
        page.wait_for_function("document.querySelector('#chart').dataset.ranks?.startsWith('2')")
        assert page.get_attribute("#chart circle", "class") == "past"
        assert page.is_visible("#chart circle")
        assert page.get_attribute("#chart a", "href") == f"/boards/{closed}?period={period}"

        live = gateway.create_board()
        post_all(gateway, live, {"bob": 5, "eve": 50, "fay": 40})
        page.goto(f"{gateway.url}/boards/{live}")
        page.fill("#track-pid", "bob")
        page.click("#track-form button")
        page.wait_for_function("document.querySelector('#chart').dataset.ranks === '3'")
        gateway.submit(live, "bob", 45)
        page.wait_for_function("document.querySelector('#chart').dataset.ranks === '3,2'")
        gateway.submit(live, "bob", 99)
        page.wait_for_function("document.querySelector('#chart').dataset.ranks === '3,2,1'")
        assert page.eval_on_selector_all("#chart circle", "cs => cs.length") == 3
        assert page.is_visible("#chart") and page.is_visible("#chart polyline")
        assert page.text_content("#track-out") == "bob: rank 1, score 99"
        page.screenshot(path=str(ARTIFACTS / "browser-rank-chart.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()
