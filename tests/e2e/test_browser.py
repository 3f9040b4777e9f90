"""The live page in Debian's headless chromium (Playwright): rows, a new leader, no reload."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_gateway import WRITER, Gateway, gateway  # noqa: F401  (module fixture)
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
