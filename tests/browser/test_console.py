"""The console in a real browser: Debian's ``chromium``, headless, driven by Playwright (never a browser download).

One gateway for the module (a real server on loopback, fake OpenAI and Anthropic upstreams, SQLite). The
journey: sign in by keyboard, create a key (its secret shown once, a copy button that copies), chat with it,
find the request in the log and in the overview's numbers and charts, revoke it (confirmed), see 401, sign
out (the old cookie no longer works). Every page is checked for console errors, CSP violations and page
errors, for horizontal scroll at 360 px, and saved as a screenshot under the test's temporary folder (with
``CONSOLE_SCREENSHOTS=docs``, the overview also goes to ``docs/console-overview.png`` for the README).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.console_support import seed_ledger, traffic
from tests.fakes import FakeProvider
from tests.fakes.behaviours import Fail
from tests.harness import GatewayServer
from tests.identity_support import ADMIN_API_KEY, gateway_env, sqlite_url

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console-overview.png"
# Reported by the page itself (an init script runs before any of the page's own): CSP violations, by event.
WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


@dataclass
class Problems:
    """What went wrong in the browser, per page: console errors (CSP violations among them) and page errors."""

    found: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.found.append(f"{page.url}: page error: {error}"))
        return page

    def forgive(self, path: str, text: str) -> None:
        self.found = [problem for problem in self.found if not (path in problem and text in problem)]

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.found.append(f"{message.page.url if message.page else '?'}: {message.type}: {message.text}")


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FakeProvider]]:
    with FakeProvider("openai") as openai, FakeProvider("anthropic") as anthropic:
        yield {"openai": openai, "anthropic": anthropic}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_url(tmp_path_factory.mktemp("console-browser"))


@pytest.fixture(scope="module")
def gateway(upstreams: dict[str, FakeProvider], database_url: str) -> Iterator[GatewayServer]:
    provider_env = {**upstreams["openai"].env, **upstreams["anthropic"].env}
    with GatewayServer(gateway_env(provider_env, database_url)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # never a skip: the console's proof is these tests
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def new_context(browser: Browser, gateway: GatewayServer, **options: object) -> BrowserContext:
    context = browser.new_context(base_url=gateway.base_url, **options)  # type: ignore[arg-type]
    context.add_init_script(WATCH_CSP)
    return context


def sign_in_by_keyboard(page: Page) -> None:
    """Tab to the admin key field, type the key, press Enter: no mouse."""
    page.goto("/ui")
    assert page.url.endswith("/ui/sign-in")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "admin_key":
            break
    else:
        raise AssertionError("Tab never reached the admin key field")
    page.keyboard.type(ADMIN_API_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui")
    assert page.locator("h1").inner_text() == "Overview"


def chat(gateway: GatewayServer, key: str, content: str = "hello from the console test") -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
        timeout=10,
    )


def wait_for_row(page: Page, path: str, selector: str, attempts: int = 40) -> None:
    """Reload until the ledger's batch writer has written the row (every 0.25 s)."""
    for _ in range(attempts):
        page.goto(path)
        if page.locator(selector).count():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"{selector} never appeared on {path}")


def chart_sum(page: Page, chart_id: str, series: int = 0) -> float:
    spec = json.loads(page.locator(f"script#{chart_id}").text_content() or "{}")
    return float(sum(value or 0 for value in spec["series"][series]["values"]))


def test_the_operators_journey(browser: Browser, gateway: GatewayServer, tmp_path: Path) -> None:
    problems = Problems()
    context = new_context(browser, gateway)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.base_url)
    page = problems.watch(context.new_page())

    sign_in_by_keyboard(page)

    # Create a key: the secret is on this one page, with a copy button that copies it.
    page.goto("/ui/keys")
    page.get_by_label("User", exact=True).fill("journey@example.com")
    page.get_by_label("Name").fill("browser")
    page.get_by_label("Monthly token budget").fill("100000")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_selector("h1:text('Key created')")
    secret = page.locator("#new-key").input_value()
    assert re.fullmatch(r"sk-gw-[A-Za-z0-9]+-[A-Za-z0-9]+", secret), secret
    key_id = secret.split("-")[2]
    copy = page.get_by_role("button", name="Copy")
    assert copy.is_visible()
    copy.click()
    page.wait_for_selector("#copied:text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.screenshot(path=tmp_path / "key-created.png", full_page=True)

    # Use it, then find the request in the log and in the overview.
    answered = chat(gateway, secret)
    assert answered.status_code == 200, answered.text
    request_id = answered.headers["x-request-id"]
    wait_for_row(page, "/ui/requests", f'tr[data-request-id="{request_id}"]')
    page.get_by_label("User").fill("journey@example.com")
    page.get_by_label("User").press("Enter")
    page.wait_for_url("**/ui/requests?user=journey%40example.com*")
    row = page.locator(f'tr[data-request-id="{request_id}"]')
    assert row.count() == 1
    cells = row.inner_text()
    assert "gpt-4o-mini" in cells and "200" in cells and "openai" in cells and key_id[:8] in cells
    assert "hello from the console test" not in page.content()  # never a prompt
    page.screenshot(path=tmp_path / "requests.png", full_page=True)

    page.goto("/ui")
    assert int(page.locator('[data-total="requests"]').inner_text().replace(",", "")) >= 1
    assert chart_sum(page, "chart-requests-24h") >= 1
    page.wait_for_selector('[data-chart="chart-requests-24h"] .uplot canvas')
    assert page.locator(".chart-area .uplot").count() == 4
    assert "journey@example.com" in page.locator("section", has=page.locator("#top-users-heading")).inner_text()
    page.screenshot(path=tmp_path / "overview-journey.png", full_page=True)

    # Revoke it (a confirmation step, then the POST), and the next chat is refused.
    page.goto("/ui/keys")
    page.locator(f'tr[data-key-id="{key_id}"]').get_by_role("link", name=re.compile("^Revoke")).click()
    page.wait_for_selector("h1:text('Revoke key')")
    page.screenshot(path=tmp_path / "key-revoke.png", full_page=True)
    page.get_by_role("button", name="Revoke the key").click()
    page.wait_for_selector(".notice")
    assert f"Key {key_id} is revoked" in page.locator(".notice").inner_text()
    assert "Revoked" in page.locator(f'tr[data-key-id="{key_id}"]').inner_text()
    assert secret not in page.content()
    refused = chat(gateway, secret)
    assert refused.status_code == 401, refused.text

    # Sign out: the old session cookie no longer opens anything.
    old_cookie = next(c for c in context.cookies() if c["name"] == "llmgw_console")
    assert old_cookie["httpOnly"] and old_cookie["sameSite"] == "Strict" and old_cookie["path"] == "/ui"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/sign-in")
    replay = httpx.get(
        f"{gateway.base_url}/ui/keys", cookies={"llmgw_console": old_cookie["value"]}, follow_redirects=False
    )
    assert (replay.status_code, replay.headers["location"]) == (303, "/ui/sign-in")
    context.close()
    assert problems.found == []


def test_a_post_without_the_csrf_token_is_refused(browser: Browser, gateway: GatewayServer) -> None:
    context = new_context(browser, gateway)
    page = context.new_page()
    sign_in_by_keyboard(page)
    response = context.request.post("/ui/keys", form={"user_id": "forged@example.com"}, max_redirects=0)
    assert response.status == 403 and "security token is missing or wrong" in response.text()
    page.goto("/ui/keys?user=forged%40example.com")
    assert "No keys for forged@example.com yet." in page.content()
    context.close()


def test_the_forms_work_without_javascript(browser: Browser, gateway: GatewayServer) -> None:
    context = new_context(browser, gateway, java_script_enabled=False)
    page = context.new_page()
    sign_in_by_keyboard(page)
    page.goto("/ui/teams")
    page.get_by_label("Team id").fill("no-script")
    page.get_by_label("Monthly budget in US dollars").fill("40")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_selector(".notice")
    assert page.locator("h1").inner_text() == "Team no-script"
    page.goto("/ui/keys")
    page.get_by_label("User", exact=True).fill("no-script@example.com")
    page.get_by_role("button", name="Create key").click()
    assert page.locator("#new-key").input_value().startswith("sk-gw-")
    assert not page.get_by_role("button", name="Copy").is_visible()  # no script: no button that cannot work
    context.close()


def make_history(gateway: GatewayServer, upstreams: dict[str, FakeProvider], database_url: str) -> str:
    """A month of traffic, a team and a user in it, fallbacks and a deployment cooling down; a key's id."""
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, seed_ledger(database_url, traffic(datetime.now(UTC)))).result()
    admin = {"authorization": f"Bearer {ADMIN_API_KEY}"}
    httpx.put(
        f"{gateway.base_url}/admin/teams/research", headers=admin, json={"monthly_budget_usd": "40"}
    ).raise_for_status()
    httpx.put(
        f"{gateway.base_url}/admin/users/ada@example.com",
        headers=admin,
        json={"team_id": "research", "monthly_budget_usd": "25"},
    ).raise_for_status()
    created = httpx.post(
        f"{gateway.base_url}/admin/keys", headers=admin, json={"user_id": "ada@example.com", "name": "notebook"}
    )
    key = created.json()["key"]
    upstreams["openai"].push(Fail(500), Fail(500), Fail(500))  # each falls back to Anthropic; then a cool-down
    for turn in range(4):  # each its own question: a cache hit would reach no upstream
        answered = chat(gateway, key, f"question {turn}")
        assert answered.status_code == 200, answered.text
    return str(created.json()["id"])


def test_every_page_is_clean_and_fits_a_phone(
    browser: Browser, gateway: GatewayServer, upstreams: dict[str, FakeProvider], database_url: str, tmp_path: Path
) -> None:
    key_id = make_history(gateway, upstreams, database_url)
    pages = {
        "overview": "/ui",
        "overview-30d": "/ui?period=30d",
        "keys": "/ui/keys",
        "key": f"/ui/keys/{key_id}",
        "key-revoke": f"/ui/keys/{key_id}/revoke",
        "users": "/ui/users",
        "user": "/ui/users/edit?id=ada%40example.com",
        "teams": "/ui/teams",
        "team": "/ui/teams/edit?id=research",
        "usage": "/ui/usage",
        "requests": "/ui/requests",
        "not-found": "/ui/no-such-page",
    }
    problems = Problems()
    for width, height, suffix in ((1280, 900, "desktop"), (360, 740, "phone")):
        context = new_context(browser, gateway, viewport={"width": width, "height": height})
        page = problems.watch(context.new_page())
        page.goto("/ui/sign-in")
        page.screenshot(path=tmp_path / f"sign-in-{suffix}.png", full_page=True)
        sign_in_by_keyboard(page)
        for name, path in pages.items():
            response = page.goto(path)
            assert response is not None and response.status == (404 if name == "not-found" else 200), path
            if name.startswith("overview"):
                page.wait_for_selector(".chart-area .uplot canvas")
            page.screenshot(path=tmp_path / f"{name}-{suffix}.png", full_page=True)
            if name == "not-found":  # the browser reports the page's own 404: expected here, and only here
                problems.forgive(path, "the server responded with a status of 404")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
        if suffix == "desktop":
            page.goto("/ui")
            assert "Cooling down" in page.locator("#deployments").inner_text()
            assert page.locator(".chart-area .uplot").count() == 4
            page.wait_for_timeout(200)  # the charts' first paint
            page.screenshot(path=tmp_path / "overview.png", full_page=True)
            if os.environ.get("CONSOLE_SCREENSHOTS") == "docs":
                shutil.copyfile(tmp_path / "overview.png", DOCS_SCREENSHOT)
        context.close()
    assert problems.found == []
