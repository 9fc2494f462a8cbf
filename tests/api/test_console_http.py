"""The console at ``/ui``, in process (httpx over ASGI): who may see it, its cookies and headers, its forms.

One gateway for the module (SQLite, ``TRUSTED_PROXIES=127.0.0.1``, which is httpx's default client address
over ASGI); each test signs in with its own client. The browser journey is in ``tests/browser/``.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select, update

from llm_gateway.app import create_app
from llm_gateway.console.security import CONTENT_SECURITY_POLICY
from llm_gateway.settings import load_settings
from llm_gateway.store.db import Database
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
from llm_gateway.store.tables import ConsoleSession
from tests.console_support import csrf_of, page_csrf, sign_in
from tests.identity_support import ADMIN_API_KEY, sqlite_url

pytestmark = pytest.mark.asyncio(loop_scope="module")
PAGES = ("/ui", "/ui?period=30d", "/ui/keys", "/ui/users", "/ui/teams", "/ui/usage", "/ui/requests")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FastAPI]:
    env = {
        "GATEWAY_CONFIG": "",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": sqlite_url(tmp_path_factory.mktemp("console")),
        "ADMIN_API_KEY": ADMIN_API_KEY,
        "OPENAI_API_KEY": "sk-test",  # no request reaches it: the console reads the ledger only
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    app = create_app(load_settings(env))
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, *, peer: str = "127.0.0.1", base_url: str = "http://gateway") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url=base_url)


@pytest_asyncio.fixture(loop_scope="module")
async def signed_in(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        response = await sign_in(client, ADMIN_API_KEY)
        assert (response.status_code, response.headers["location"]) == (303, "/ui")
        yield client


async def written(ledger: UsageLedger) -> None:
    """Wait for the ledger's own writer (every 0.25 s) to write what is queued: a flush of our own would race it.
    Rows leave the queue once inserted, so an empty queue means written."""
    for _ in range(100):
        if ledger.queued == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the ledger did not write its rows")


def database(app: FastAPI) -> Database:
    found: Database = app.state.database
    return found


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the ``Set-Cookie`` for ``name``, lower-cased (flags map to '')."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            parts = [part.strip() for part in header.split(";")]
            attributes = {"value": parts[0].partition("=")[2]}
            for part in parts[1:]:
                key, _, value = part.partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


async def test_without_an_admin_key_there_is_no_console(tmp_path: Path) -> None:
    app = create_app(load_settings({"GATEWAY_CONFIG": "", "DATABASE_URL": sqlite_url(tmp_path)}))
    async with app.router.lifespan_context(app), client_for(app) as client:
        for path in ("/ui", "/ui/", "/ui/sign-in", "/ui/keys", "/ui/static/x/console.css"):
            response = await client.get(path)
            assert response.status_code == 404, (path, response.text)
            assert "content-security-policy" not in response.headers
        refused = await client.post("/ui/sign-in", data={"admin_key": "anything"})
        assert refused.status_code == 415  # not a console: forms are not taken


async def test_pages_need_a_session(app: FastAPI) -> None:
    async with client_for(app) as client:
        for path in PAGES:
            response = await client.get(path)
            assert (response.status_code, response.headers["location"]) == (303, "/ui/sign-in"), path
        posted = await client.post("/ui/keys", data={"user_id": "mallory"})
        assert posted.status_code == 403 and "sign in again" in posted.text


async def test_sign_in_sets_a_strict_session_cookie_and_stores_only_its_hash(app: FastAPI) -> None:
    async with client_for(app) as client:
        form = await client.get("/ui/sign-in")
        assert cookie_attributes(form, "llmgw_console_signin") | {"value": ""} == {
            "value": "",
            "httponly": "",
            "max-age": "3600",
            "path": "/ui",
            "samesite": "strict",
        }
        response = await client.post("/ui/sign-in", data={"csrf": csrf_of(form.text), "admin_key": ADMIN_API_KEY})
    assert (response.status_code, response.headers["location"]) == (303, "/ui")
    session = cookie_attributes(response, "llmgw_console")
    session_id = session.pop("value")
    assert session == {"httponly": "", "max-age": str(8 * 3600), "path": "/ui", "samesite": "strict"}
    assert cookie_attributes(response, "llmgw_console_signin")["max-age"] == "0"  # the sign-in token is spent
    async with database(app).sessions() as db:
        hashes = list((await db.scalars(select(ConsoleSession.id_hash))).all())
    assert session_id not in hashes and len(session_id) >= 40
    assert hashlib.sha256(session_id.encode()).hexdigest() in hashes


@pytest.mark.parametrize(
    ("peer", "base_url", "headers", "secure"),
    [
        ("127.0.0.1", "http://gateway", {}, False),
        ("127.0.0.1", "https://gateway", {}, True),  # https straight to the gateway
        ("127.0.0.1", "http://gateway", {"x-forwarded-proto": "https"}, True),  # a trusted proxy says https
        ("192.0.2.9", "http://gateway", {"x-forwarded-proto": "https"}, False),  # anyone else is not believed
    ],
)
async def test_cookies_are_secure_behind_https(
    app: FastAPI, peer: str, base_url: str, headers: dict[str, str], secure: bool
) -> None:
    # Cookies are sent by hand: httpx, like a browser, keeps a Secure cookie from a plain-http URL.
    async with client_for(app, peer=peer, base_url=base_url) as client:
        form = await client.get("/ui/sign-in", headers=headers)
        sign_in_cookie = cookie_attributes(form, "llmgw_console_signin")
        assert ("secure" in sign_in_cookie) is secure
        client.cookies.clear()
        response = await client.post(
            "/ui/sign-in",
            data={"csrf": csrf_of(form.text), "admin_key": ADMIN_API_KEY},
            headers={**headers, "cookie": f"llmgw_console_signin={sign_in_cookie['value']}"},
        )
        assert response.status_code == 303
        session_cookie = cookie_attributes(response, "llmgw_console")
        assert ("secure" in session_cookie) is secure
        client.cookies.clear()
        session = {**headers, "cookie": f"llmgw_console={session_cookie['value']}"}
        token = csrf_of((await client.get("/ui/keys", headers=session)).text)
        signed_out = await client.post("/ui/sign-out", data={"csrf": token}, headers=session)
        assert ("secure" in cookie_attributes(signed_out, "llmgw_console")) is secure


async def test_a_wrong_key_is_refused_and_failures_are_rate_limited_per_client(app: FastAPI) -> None:
    # From behind the trusted proxy (127.0.0.1): each X-Forwarded-For address is its own client.
    async with client_for(app) as client:
        attacker = {"x-forwarded-for": "198.51.100.7"}
        for _ in range(10):
            wrong = await sign_in(client, "not-the-admin-key-at-all", headers=attacker)
            assert wrong.status_code == 401 and "That is not the admin key." in wrong.text
            assert "llmgw_console=" not in wrong.headers.get("set-cookie", "")
        limited = await sign_in(client, ADMIN_API_KEY, headers=attacker)  # even the right key, for now
        assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        someone_else = await sign_in(client, ADMIN_API_KEY, headers={"x-forwarded-for": "198.51.100.8"})
        assert someone_else.status_code == 303


async def test_sign_in_without_its_form_token_is_refused(app: FastAPI) -> None:
    async with client_for(app) as client:
        response = await client.post("/ui/sign-in", data={"admin_key": ADMIN_API_KEY})
        assert response.status_code == 403
        await client.get("/ui/sign-in")
        forged = await client.post("/ui/sign-in", data={"csrf": "forged", "admin_key": ADMIN_API_KEY})
        assert forged.status_code == 403 and "llmgw_console=" not in forged.headers.get("set-cookie", "")


async def test_a_post_without_the_sessions_csrf_token_is_403(app: FastAPI, signed_in: httpx.AsyncClient) -> None:
    async with client_for(app) as other:
        await sign_in(other, ADMIN_API_KEY)
        other_token = await page_csrf(other)
    for fields in ({}, {"csrf": ""}, {"csrf": "wrong"}, {"csrf": other_token}):
        response = await signed_in.post("/ui/keys", data={**fields, "user_id": "csrf-victim"})
        assert response.status_code == 403, fields
        assert "security token is missing or wrong" in response.text
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    for path in ("/ui/sign-out", "/ui/teams", "/ui/users/edit"):
        assert (await signed_in.post(path, data={"team_id": "x", "user_id": "x"})).status_code == 403
    listing = await signed_in.get("/ui/keys?user=csrf-victim")
    assert "No keys for csrf-victim yet." in listing.text
    assert (await signed_in.get("/ui")).status_code == 200  # still signed in: sign-out was refused too


async def test_every_page_carries_the_content_security_policy(signed_in: httpx.AsyncClient) -> None:
    for path in (*PAGES, "/ui/sign-in", "/ui/no-such-page"):
        response = await signed_in.get(path)
        assert response.status_code in (200, 303, 404), path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        if response.status_code == 200:
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert "<script>" not in response.text and " style=" not in response.text and "onclick" not in response.text


async def test_static_files_are_served_with_their_digest_and_cached_for_good(signed_in: httpx.AsyncClient) -> None:
    overview = (await signed_in.get("/ui")).text
    urls = re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', overview)
    assert {url.rsplit("/", 1)[-1] for url in urls} >= {
        "console.css",
        "console.js",
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "LICENSE",
    }
    for url in urls:
        response = await signed_in.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    licence = await signed_in.get(next(url for url in urls if url.endswith("LICENSE")))
    assert "MIT License" in licence.text and licence.headers["content-type"] == "text/plain; charset=utf-8"
    stale = await signed_in.get(urls[0].replace(urls[0].split("/")[3], "0123456789ab"))
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    assert (await signed_in.get("/ui/static/0123456789ab/nothing.js")).status_code == 404


async def test_an_expired_session_signs_out_and_its_row_is_purged(app: FastAPI, signed_in: httpx.AsyncClient) -> None:
    session_id = signed_in.cookies["llmgw_console"]
    id_hash = hashlib.sha256(session_id.encode()).hexdigest()
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with database(app).sessions.begin() as db:
        await db.execute(update(ConsoleSession).where(ConsoleSession.id_hash == id_hash).values(expires_at=past))
    response = await signed_in.get("/ui/keys")
    assert (response.status_code, response.headers["location"]) == (303, "/ui/sign-in")
    async with database(app).sessions() as db:
        assert await db.get(ConsoleSession, id_hash) is None


async def test_sign_out_ends_the_session_for_good(app: FastAPI, signed_in: httpx.AsyncClient) -> None:
    old_cookie = signed_in.cookies["llmgw_console"]
    response = await signed_in.post("/ui/sign-out", data={"csrf": await page_csrf(signed_in)})
    assert (response.status_code, response.headers["location"]) == (303, "/ui/sign-in")
    assert cookie_attributes(response, "llmgw_console")["max-age"] == "0"
    async with client_for(app) as replay:
        replay.cookies.set("llmgw_console", old_cookie, domain="gateway", path="/ui")
        again = await replay.get("/ui")
    assert (again.status_code, again.headers["location"]) == (303, "/ui/sign-in")


async def test_a_new_keys_secret_is_shown_once_and_never_again(app: FastAPI, signed_in: httpx.AsyncClient) -> None:
    token = await page_csrf(signed_in)
    created = await signed_in.post(
        "/ui/keys",
        data={
            "csrf": token,
            "user_id": "secret-keeper",
            "name": "laptop",
            "models": "gpt-4o-mini, gpt-4o",
            "monthly_token_budget": "5000",
            "monthly_budget_usd": "12.50",
            "rpm": "30",
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert created.status_code == 200, created.text
    assert "location" not in created.headers and "set-cookie" not in created.headers
    secret = re.search(r'id="new-key" type="text" value="(sk-gw-[^"]+)"', created.text)
    assert secret, created.text
    key = secret.group(1)
    key_id = key.split("-")[2]
    assert created.text.count(key) == 1
    later = [
        "/ui/keys",
        "/ui/keys?user=secret-keeper",
        f"/ui/keys/{key_id}",
        f"/ui/keys/{key_id}/revoke",
        "/ui/users/edit?id=secret-keeper",
        "/ui",
        "/ui/requests",
        "/ui/usage",
    ]
    for path in later:
        page = await signed_in.get(path)
        assert page.status_code == 200, path
        assert key not in page.text and key.rsplit("-", 1)[1] not in page.text, path
    listing = (await signed_in.get("/ui/keys?user=secret-keeper")).text
    assert f"sk-gw-{key_id}" in listing and "laptop" in listing and "gpt-4o-mini, gpt-4o" in listing
    assert "5,000 tokens" in listing and "$12.50" in listing and "30/min" in listing
    async with database(app).sessions() as db:
        rows = (await db.execute(select(ConsoleSession.csrf_token))).scalars().all()
    assert all(key not in value for value in rows)


async def test_a_form_with_a_bad_value_comes_back_with_the_reason(signed_in: httpx.AsyncClient) -> None:
    token = await page_csrf(signed_in)
    response = await signed_in.post("/ui/keys", data={"csrf": token, "user_id": "bob", "rpm": "lots"})
    assert response.status_code == 400
    assert "Requests per minute: a whole number, or empty." in response.text
    assert 'value="bob"' in response.text  # what was typed is kept
    no_user = await signed_in.post("/ui/keys", data={"csrf": token, "user_id": ""})
    assert no_user.status_code == 400 and "User:" in no_user.text
    usd = await signed_in.post("/ui/keys", data={"csrf": token, "user_id": "bob", "monthly_budget_usd": "1.1234567"})
    assert usd.status_code == 400 and "Monthly budget in US dollars:" in usd.text


async def test_revoking_takes_a_confirmation_then_a_post(signed_in: httpx.AsyncClient) -> None:
    token = await page_csrf(signed_in)
    created = await signed_in.post("/ui/keys", data={"csrf": token, "user_id": "revokee"})
    key_id = re.search(r'value="sk-gw-([A-Za-z0-9]+)-', created.text).group(1)  # type: ignore[union-attr]
    confirm = await signed_in.get(f"/ui/keys/{key_id}/revoke")
    assert "Revoke the key" in confirm.text and f'action="/ui/keys/{key_id}/revoke"' in confirm.text
    assert "Revoked" not in (await signed_in.get("/ui/keys?user=revokee")).text  # the GET changed nothing
    done = await signed_in.post(f"/ui/keys/{key_id}/revoke", data={"csrf": token})
    assert (done.status_code, done.headers["location"]) == (303, f"/ui/keys?revoked={key_id}")
    listing = await signed_in.get(done.headers["location"])
    assert f"Key {key_id} is revoked" in listing.text and "Revoked" in listing.text
    assert (await signed_in.get("/ui/keys/nope/revoke")).status_code == 404


async def test_teams_and_users_are_created_and_edited(signed_in: httpx.AsyncClient) -> None:
    token = await page_csrf(signed_in)
    created = await signed_in.post(
        "/ui/teams", data={"csrf": token, "team_id": "research", "monthly_budget_usd": "250", "rpm": "90"}
    )
    assert (created.status_code, created.headers["location"]) == (303, "/ui/teams/edit?id=research&saved=1")
    again = await signed_in.post("/ui/teams", data={"csrf": token, "team_id": "research"})
    assert again.status_code == 400 and "exists already" in again.text
    joined = await signed_in.post(
        "/ui/users/edit",
        data={"csrf": token, "user_id": "ada@example.com", "monthly_token_budget": "777", "team_id": "research"},
    )
    assert (joined.status_code, joined.headers["location"]) == (303, "/ui/users/edit?id=ada%40example.com&saved=1")
    user_page = (await signed_in.get(joined.headers["location"])).text
    assert "Saved" in user_page and 'value="777"' in user_page and '<option value="research" selected>' in user_page
    unknown = await signed_in.post("/ui/users/edit", data={"csrf": token, "user_id": "ada@example.com", "team_id": "x"})
    assert unknown.status_code == 400 and "No team &#39;x&#39;" in unknown.text
    teams = (await signed_in.get("/ui/teams")).text
    assert "research" in teams and "$250.00" in teams and "<meter" in teams
    users = (await signed_in.get("/ui/users")).text
    assert "ada@example.com" in users and "0 of 777" in users
    changed = await signed_in.post(
        "/ui/teams/edit", data={"csrf": token, "team_id": "research", "monthly_token_budget": "5000"}
    )
    assert changed.status_code == 303
    team_page = (await signed_in.get("/ui/teams/edit?id=research")).text
    assert 'value="5000"' in team_page and "Members</dt><dd>1" in team_page


async def test_usage_downloads_as_csv(app: FastAPI, signed_in: httpx.AsyncClient) -> None:
    ledger: UsageLedger = app.state.ledger
    when = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    for user, group, cost, cached in (
        ("csv-ann", "gpt-4o-mini", "0.000150", False),
        ("csv-ann", "gpt-4o-mini", "0.000150", True),
        ("=HYPERLINK()", "gpt-4o", "0.002500", False),
    ):
        ledger.record(
            UsageRow(
                request_id=f"csv-{user}-{cached}",
                user_id=user,
                month="2026-03",
                model_group=group,
                prompt_tokens=100,
                completion_tokens=20,
                cached=cached,
                created_at=when,
                cost_usd=Decimal(cost),
            )
        )
    await written(ledger)
    response = await signed_in.get("/ui/usage.csv?month=2026-03")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="usage-2026-03.csv"'
    assert list(csv.reader(io.StringIO(response.text))) == [
        ["day", "user_id", "model_group", "requests", "prompt_tokens", "completion_tokens", "spend_usd"],
        ["2026-03-04", "'=HYPERLINK()", "gpt-4o", "1", "100", "20", "0.002500"],
        ["2026-03-04", "csv-ann", "gpt-4o-mini", "2", "100", "20", "0.000150"],
    ]
    one = await signed_in.get("/ui/usage.csv?month=2026-03&user=csv-ann")
    assert len(one.text.splitlines()) == 2
    page = (await signed_in.get("/ui/usage?month=2026-03")).text
    assert "csv-ann" in page and "$0.00265" in page and 'href="/ui/usage.csv?month=2026-03"' in page
    bad = await signed_in.get("/ui/usage?month=March")
    assert bad.status_code == 400 and "YYYY-MM" in bad.text


async def test_requests_are_filtered_and_paged(app: FastAPI, signed_in: httpx.AsyncClient) -> None:
    ledger: UsageLedger = app.state.ledger
    start = datetime.now(UTC) - timedelta(minutes=10)
    for index in range(55):
        ledger.record(
            UsageRow(
                request_id=f"page-{index:02d}",
                user_id="pager",
                month=start.strftime("%Y-%m"),
                model_group="gpt-4o-mini",
                provider="openai",
                status=502 if index == 7 else 200,
                created_at=start + timedelta(seconds=index),
            )
        )
    await written(ledger)
    first = await signed_in.get("/ui/requests?user=pager")
    assert first.text.count('data-request-id="page-') == 50
    assert first.text.index("page-54") < first.text.index("page-05")  # newest first
    next_url = re.search(r'href="(/ui/requests\?[^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    second = await signed_in.get(next_url)
    assert re.findall(r'data-request-id="(page-\d+)"', second.text) == [f"page-{i:02d}" for i in range(4, -1, -1)]
    failed = await signed_in.get("/ui/requests?user=pager&status=502")
    assert re.findall(r'data-request-id="(page-\d+)"', failed.text) == ["page-07"]
    bad = await signed_in.get("/ui/requests?status=abc")
    assert bad.status_code == 400 and "Status: an HTTP status" in bad.text
    stale = await signed_in.get("/ui/requests?cursor=not-a-cursor")
    assert stale.status_code == 400 and "That page link is not valid" in stale.text
