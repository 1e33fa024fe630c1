"""The web tracker (/static/userloop.js) in Debian's chromium, from a page on another site.

The collector runs on 127.0.0.1:PORT_A (``live_server``); the pages that load the tracker are
served from ``localhost:PORT_B``, a different origin and a different site, so the browser applies
real CORS rules. What the tracker sent is read back through ``/api/events`` and
``/api/persons/{id}`` with the secret key.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.conftest import LiveServer, free_port
from userloop.store.duckdb import Store
from userloop.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright  # noqa: E402

UTM = "utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&utm_term=python&utm_content=banner"
REFERRER = "https://www.baidu.com/s?wd=userloop"
SCREEN = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Site:
    """A second web server (the customer's site) on localhost, serving pages written by the test."""

    def __init__(self, root: Path):
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, name: str, server: LiveServer, options: dict[str, Any], body: str = "") -> str:
        """Write a page that loads the tracker from the userloop server and initialises it."""
        opts = json.dumps({"host": server.url, **options})
        (self.root / name).write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>Spring sale</title>"
            f"<script src='{server.url}/static/userloop.js'></script>"
            f"<script>userloop.init({json.dumps(server.project.write_key)}, {opts});</script>"
            f"</head><body>{body}</body></html>"
        )
        return f"{self.url}/{name}"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    root.mkdir()
    (root / "other.html").write_text("<!doctype html><title>Other</title><p>no tracker here")
    s = Site(root)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1200, "height": 700}, screen=SCREEN)
    yield ctx
    ctx.close()


def flush(page: Page) -> bool:
    """Send what the tracker queued; True once the collector acknowledged it (stored)."""
    return bool(page.evaluate("() => new Promise(done => userloop.flush(done))"))


def by_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: e["original_timestamp"])


def pick(event: dict[str, Any], keys: str) -> dict[str, Any]:
    return {k: event[k] for k in keys.split()}


COLUMNS = (
    "event type distinct_id anonymous_id user_id url path referrer referring_domain utm_source utm_medium "
    "utm_campaign utm_content utm_term channel os browser device_type lib source"
)


def test_page_view_with_utm_sent_across_origins(context: BrowserContext, site: Site, live_server: LiveServer) -> None:
    url = site.page("landing.html", live_server, {"flushInterval": 100}) + "?" + UTM
    page = context.new_page()
    before = datetime.now(UTC)
    page.goto(url, referer=REFERRER)
    assert flush(page) is True
    after = datetime.now(UTC)
    anon = page.evaluate("userloop.getAnonymousId()")
    ua = page.evaluate("navigator.userAgent")
    # what the server reads from this user agent: a desktop Linux Chrome
    assert "X11; Linux x86_64" in ua and "Chrome/" in ua and "Mobile" not in ua
    assert len(anon) == 36 and anon[14] == "4"  # a random (version 4) UUID
    assert page.evaluate("localStorage.getItem('userloop_anonymous_id')") == anon

    [pv] = live_server.events()
    assert pick(pv, COLUMNS) == {
        "event": "$pageview", "type": "page", "distinct_id": anon, "anonymous_id": anon, "user_id": None,
        "url": url, "path": "/landing.html", "referrer": REFERRER, "referring_domain": "www.baidu.com",
        "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring_sale",
        "utm_content": "banner", "utm_term": "python", "channel": "email",
        "os": "Linux", "browser": "Chrome", "device_type": "Desktop", "lib": "web/0.1.0", "source": "segment",
    }
    assert pv["properties"] == {
        "url": url, "path": "/landing.html", "referrer": REFERRER, "title": "Spring sale", "search": "?" + UTM,
        "screen_width": 1440, "screen_height": 900,
    }
    sent = datetime.fromisoformat(pv["original_timestamp"])
    assert before - timedelta(seconds=1) <= sent <= after

    # a single-page app navigates with the history API: another page view, the previous URL as referrer
    page.evaluate("history.pushState({}, '', '/courses/42?tab=intro')")
    assert flush(page) is True
    second = by_time(live_server.events())[1]
    assert pick(second, "event distinct_id url path referrer utm_source utm_medium") == {
        "event": "$pageview", "distinct_id": anon, "url": f"{site.url}/courses/42?tab=intro",
        "path": "/courses/42", "referrer": url, "utm_source": None, "utm_medium": None,
    }
    assert second["properties"]["title"] == "Spring sale"


def test_track_identify_merge_and_reset(context: BrowserContext, site: Site, live_server: LiveServer) -> None:
    body = ("<button id='buy' class='cta primary'>Buy <b>now</b></button>"
            "<a id='docs' href='/other.html' data-userloop-event='docs_click'>Read the docs</a>"
            "<input id='email' name='email' value='secret@example.com'>")
    url = site.page("shop.html", live_server, {"flushInterval": 100, "autocapture": True}, body)
    page = context.new_page()
    page.goto(url)
    anon = page.evaluate("userloop.getAnonymousId()")
    page.evaluate("userloop.track('view_course', {course_id: 'c1', price: 99})")
    page.click("#buy")
    page.click("#email")  # a form field: not captured, its value never read
    assert flush(page) is True
    page.evaluate("userloop.identify('u-42', {email: 'ann@example.com', plan: 'free'})")
    page.evaluate("userloop.track('purchase', {revenue: 99, course_id: 'c1'})")
    page.evaluate("userloop.setPersonProperties({plan: 'pro'})")
    assert flush(page) is True
    assert page.evaluate("[userloop.getUserId(), localStorage.getItem('userloop_user_id')]") == ["u-42", "u-42"]

    events = by_time(live_server.events())
    assert [(e["event"], e["type"], e["distinct_id"], e["anonymous_id"], e["user_id"]) for e in events] == [
        ("$pageview", "page", anon, anon, None),
        ("view_course", "track", anon, anon, None),
        ("$click", "track", anon, anon, None),
        ("$identify", "identify", "u-42", anon, "u-42"),
        ("purchase", "track", "u-42", anon, "u-42"),
        ("$identify", "identify", "u-42", anon, "u-42"),
    ]
    assert [e["properties"] for e in events[1:]] == [
        {"course_id": "c1", "price": 99},
        {"tag": "button", "text": "Buy now", "id": "buy", "classes": "cta primary"},
        {"$set": {"email": "ann@example.com", "plan": "free"}},
        {"revenue": 99, "course_id": "c1"},
        {"$set": {"plan": "pro"}},
    ]
    assert all(e["url"] == url and e["path"] == "/shop.html" for e in events)
    # the anonymous visitor and the known user are one person now
    assert len({e["person_id"] for e in events}) == 1
    person = live_server.person("u-42")
    assert sorted(person["distinct_ids"]) == sorted([anon, "u-42"])
    assert person["person_id"] == events[0]["person_id"]
    assert person["properties"] == {"email": "ann@example.com", "plan": "pro"}
    assert person["event_count"] == 6
    assert live_server.person(anon)["person_id"] == person["person_id"]

    # a reload keeps both ids (first-party storage)
    page.reload()
    assert flush(page) is True
    assert pick(by_time(live_server.events())[-1], "event distinct_id anonymous_id user_id") == {
        "event": "$pageview", "distinct_id": "u-42", "anonymous_id": anon, "user_id": "u-42"}

    # a named click leaves the page: it is still delivered, by the beacon on page hide
    page.click("#docs")
    page.wait_for_url(f"{site.url}/other.html")
    docs = wait_for(live_server, lambda es: [e for e in es if e["event"] == "docs_click"])
    assert docs[0]["properties"] == {"tag": "a", "text": "Read the docs", "id": "docs", "href": f"{site.url}/other.html"}
    assert docs[0]["user_id"] == "u-42"

    # reset (log out): a new anonymous id, a new person, nothing merged into u-42
    page.goto(url)
    page.evaluate("userloop.reset()")
    new_anon = page.evaluate("userloop.getAnonymousId()")
    assert new_anon != anon and page.evaluate("userloop.getUserId()") is None
    page.evaluate("userloop.track('view_course', {course_id: 'c2'})")
    assert flush(page) is True
    last = by_time(live_server.events())[-1]
    assert pick(last, "event distinct_id anonymous_id user_id") == {
        "event": "view_course", "distinct_id": new_anon, "anonymous_id": new_anon, "user_id": None}
    assert last["person_id"] != person["person_id"]
    assert sorted(live_server.person("u-42")["distinct_ids"]) == sorted([anon, "u-42"])


def wait_for(server: LiveServer, found: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = found(server.events())
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


class Recorder:
    """ASGI wrapper keeping the headers of each collector request as the server received them.

    Neither Playwright nor the DevTools protocol reports a beacon sent while a page unloads, so the
    test looks at what arrived: a beacon is a ``no-cors`` request with ``text/plain;charset=UTF-8``.
    """

    def __init__(self, app: Any):
        self.app = app
        self.requests: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.requests.append({"method": scope["method"], "path": scope["path"], **headers})
        await self.app(scope, receive, send)


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[LiveServer, Recorder]]:
    store = Store(tmp_path / "recorded.duckdb")
    project = store.create_project("test", "UTC")
    recorder = Recorder(create_app(store))
    server = uvicorn.Server(uvicorn.Config(recorder, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "test server did not start"
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{server.config.port}", store, project, ""), recorder
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        store.close()


def test_send_beacon_on_page_hide(context: BrowserContext, site: Site, recorded: tuple[LiveServer, Recorder]) -> None:
    live_server, recorder = recorded
    requests = recorder.requests
    # a long flush interval: nothing is sent while the page is open
    url = site.page("article.html", live_server, {"flushInterval": 600000, "batchSize": 100})
    page = context.new_page()
    page.goto(url)
    anon = page.evaluate("userloop.getAnonymousId()")
    page.evaluate("userloop.track('read_article', {article_id: 'a7', seconds: 42})")
    page.wait_for_timeout(200)
    assert requests == [] and live_server.events() == []
    page.goto(f"{site.url}/other.html")  # pagehide + visibilitychange: the tracker hands its queue to sendBeacon
    events = wait_for(live_server, lambda es: es if len(es) == 2 else None)
    assert sorted((e["event"], e["distinct_id"], e["properties"].get("article_id")) for e in events) == [
        ("$pageview", anon, None), ("read_article", anon, "a7")]
    assert [(r["method"], r["path"], r["content-type"], r["sec-fetch-mode"], r["origin"]) for r in requests] == [
        ("POST", "/v1/batch", "text/plain;charset=UTF-8", "no-cors", site.url)]  # one beacon, both events


DNT_ON = "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1', configurable: true})"


def test_do_not_track_respected_when_configured(
    browser: Browser, site: Site, recorded: tuple[LiveServer, Recorder]
) -> None:
    live_server, recorder = recorded
    respectful = site.page("dnt.html", live_server, {"flushInterval": 50, "respectDoNotTrack": True})
    default = site.page("plain.html", live_server, {"flushInterval": 50})
    ctx = browser.new_context()
    ctx.add_init_script(DNT_ON)
    try:
        requests = recorder.requests
        page = ctx.new_page()
        page.goto(respectful)
        assert page.evaluate("navigator.doNotTrack") == "1"
        page.evaluate("userloop.track('view_course'); userloop.identify('u-dnt', {plan: 'x'})")
        assert flush(page) is True
        assert page.evaluate("[userloop.isEnabled(), userloop.getAnonymousId(), localStorage.length]") == [
            False, None, 0]
        page.goto(f"{site.url}/other.html")  # page hide sends nothing either
        page.wait_for_timeout(300)
        assert requests == [] and live_server.events() == []

        # without respectDoNotTrack the same browser is tracked
        page.goto(default)
        page.evaluate("userloop.track('view_course')")
        assert flush(page) is True
        assert sorted(e["event"] for e in live_server.events()) == ["$pageview", "view_course"]
    finally:
        ctx.close()


def test_collector_answers_a_preflighted_cross_origin_post(
    context: BrowserContext, site: Site, live_server: LiveServer
) -> None:
    """A JSON POST with Authorization needs a CORS preflight; the response must be readable."""
    page = context.new_page()
    page.goto(f"{site.url}/other.html")
    answer = page.evaluate(
        """([host, key]) => fetch(host + '/v1/track', {method: 'POST', body: JSON.stringify(
               {userId: 'u-cors', event: 'signup', messageId: 'cors-1', properties: {plan: 'free'}}),
             headers: {'Content-Type': 'application/json', 'Authorization': 'Basic ' + btoa(key + ':')}})
             .then(r => r.json())""",
        [live_server.url, live_server.project.write_key],
    )
    assert answer == {"accepted": 1, "rejected": []}
    [event] = live_server.events()
    assert pick(event, "message_id event distinct_id properties") == {
        "message_id": "cors-1", "event": "signup", "distinct_id": "u-cors", "properties": {"plan": "free"}}


def test_demo_page(context: BrowserContext, live_server: LiveServer) -> None:
    page = context.new_page()
    page.goto(f"{live_server.url}/static/tracker-demo.html?key={live_server.project.write_key}")
    anon = page.text_content("#anonymous-id")
    assert anon == page.evaluate("userloop.getAnonymousId()") and len(anon or "") == 36
    page.fill("#event", "demo_click")
    page.fill("#properties", '{"button": "track"}')
    page.click("#track")
    page.fill("#identify-id", "demo-user-7")
    page.fill("#traits", '{"plan": "trial"}')
    page.click("#identify")
    assert page.text_content("#user-id") == "demo-user-7"
    page.wait_for_function("document.getElementById('log').textContent.split('sent').length > 2")
    events = by_time(live_server.events())
    assert [(e["event"], e["distinct_id"], e["properties"]) for e in events] == [
        ("$pageview", anon, events[0]["properties"]),
        ("demo_click", anon, {"button": "track"}),
        ("$identify", "demo-user-7", {"$set": {"plan": "trial"}}),
    ]
    assert events[0]["path"] == "/static/tracker-demo.html"
    assert live_server.person("demo-user-7")["properties"] == {"plan": "trial"}
    page.click("#reset")
    assert page.text_content("#user-id") == "(anonymous)"
    assert page.text_content("#anonymous-id") not in (anon, "")


NO_LOCAL_STORAGE = ("Object.defineProperty(window, 'localStorage', "
                    "{get() { throw new DOMException('storage is disabled', 'SecurityError'); }})")


def test_one_script_tag_and_cookie_fallback(browser: Browser, site: Site, live_server: LiveServer) -> None:
    """``<script src=... data-write-key=...>`` alone tracks, sending to the server the script came
    from; with localStorage blocked the anonymous id lives in a first-party cookie."""
    key = live_server.project.write_key
    (site.root / "tag.html").write_text(
        "<!doctype html><title>One tag</title>"
        f"<script src='{live_server.url}/static/userloop.js' data-write-key='{key}'></script>")
    ctx = browser.new_context()
    ctx.add_init_script(NO_LOCAL_STORAGE)
    try:
        page = ctx.new_page()
        page.goto(f"{site.url}/tag.html")
        assert flush(page) is True
        anon = page.evaluate("userloop.getAnonymousId()")
        assert page.evaluate("userloop.options().host") == live_server.url
        cookies = {c["name"]: c for c in ctx.cookies(site.url)}
        assert set(cookies) == {"userloop_anonymous_id"}  # never the queue
        assert (cookies["userloop_anonymous_id"]["value"], cookies["userloop_anonymous_id"]["sameSite"]) == (
            anon, "Lax")
        page.reload()
        assert flush(page) is True
        assert page.evaluate("userloop.getAnonymousId()") == anon
        events = live_server.events()
        assert [(e["event"], e["distinct_id"], e["path"]) for e in events] == [
            ("$pageview", anon, "/tag.html"), ("$pageview", anon, "/tag.html")]
    finally:
        ctx.close()
