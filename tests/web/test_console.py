"""The web console in Debian's chromium (Playwright), on the demo data set.

One demo file (600 users, 30 days) is generated per test session and served by a real server on a
random port; the admin signs in once. The numbers the pages render are read back from the DOM
and compared with what ``/api/query`` and the people API answer for the same question (with the
project's secret key), and some with counts computed here directly from the store.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn

from tests.conftest import free_port
from userloop.web.console.i18n import parse_number

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright  # noqa: E402

from userloop.backend import LocalBackend  # noqa: E402
from userloop.store.duckdb import Project, Store  # noqa: E402
from userloop.web.app import create_app  # noqa: E402
from userloop.web.console import auth  # noqa: E402

ADMIN_PASSWORD = "correct horse battery"
VIEWER, ANALYST, OUTSIDER = "vera", "anna", "otto"
USER_PASSWORD = "member-password-1"


@dataclass
class Console:
    url: str
    store: Store
    project: Project
    other: Project  # a second project: vera is not a member

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        key = self.store.project(self.project.id).secret_key  # current, also after a rotation
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw)

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.api("POST", "/api/query", json={"project": self.project.id, **body})
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def page_url(self, path: str) -> str:
        return f"{self.url}/console/p/{self.project.id}{path}"

    @property
    def today(self) -> date:
        return datetime.now(ZoneInfo(self.project.timezone)).date()


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo data set, generated once per test session (about 2 s)."""
    from userloop.demo import load_demo

    path = tmp_path_factory.mktemp("console") / "demo.duckdb"
    backend = LocalBackend(path)
    try:
        load_demo(backend, users=600, days=30, seed=7)
    finally:
        backend.close()
    return path


@pytest.fixture(scope="module")
def console(demo_file: Path) -> Iterator[Console]:
    store = Store(demo_file)
    project = store.project_by_name("demo")
    assert project is not None
    other = store.create_project("other", "UTC")
    store.set_admin_password("admin", ADMIN_PASSWORD)
    auth.add_member(store, project.id, VIEWER, "viewer", USER_PASSWORD)
    auth.add_member(store, project.id, ANALYST, "analyst", USER_PASSWORD)
    auth.add_member(store, other.id, OUTSIDER, "admin", USER_PASSWORD)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield Console(f"http://127.0.0.1:{port}", store, project, other)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def sign_in(browser: Browser, console: Console, user: str, password: str, locale: str = "en-US") -> BrowserContext:
    context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(console.url + "/console/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login-submit")
    page.wait_for_url("**/console/p/*/overview")
    page.close()
    return context


@pytest.fixture(scope="module")
def admin(browser: Browser, console: Console) -> Iterator[BrowserContext]:
    context = sign_in(browser, console, "admin", ADMIN_PASSWORD)
    yield context
    context.close()


@pytest.fixture
def page(admin: BrowserContext) -> Iterator[Page]:
    p = admin.new_page()
    yield p
    p.close()


def number(page: Page, selector: str) -> float:
    return parse_number(page.locator(selector).inner_text())


def column(page: Page, table: str, key: str) -> list[str]:
    return page.locator(f"#table-{table} tbody td[data-key='{key}']").all_inner_texts()


def custom_range(console: Console, days: int = 30) -> tuple[str, str]:
    return (console.today - timedelta(days=days - 1)).isoformat(), console.today.isoformat()


# -- sign-in, CSRF -----------------------------------------------------------------------------------
def test_login_failure_then_success_and_logout(browser: Browser, console: Console) -> None:
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    resp = page.goto(console.page_url("/overview"))  # not signed in: to the login page, coming back after
    assert "/console/login?next=" in page.url
    assert resp is not None and (resp.headers["x-frame-options"], resp.headers["cache-control"]) == ("DENY", "no-store")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
    assert page.context.cookies() and auth.SESSION_COOKIE not in {c["name"] for c in page.context.cookies()}
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(console.page_url("/overview"))
    cookie = next(c for c in context.cookies() if c["name"] == auth.SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain http here
    page.click("#logout")
    page.wait_for_url("**/console/login")
    page.goto(console.page_url("/overview"))
    assert "/console/login" in page.url  # the session is gone
    context.close()


def test_posts_without_the_csrf_token_are_refused(admin: BrowserContext, console: Console) -> None:
    before = console.store.project(console.project.id).timezone
    url = console.page_url("/settings/timezone")
    no_token = admin.request.post(url, form={"timezone": "Europe/Paris"})
    wrong = admin.request.post(url, form={"timezone": "Europe/Paris", "csrf_token": "forged"})
    htmx = admin.request.post(console.page_url("/segments/preview"), data=json.dumps({"rule": {}}),
                              headers={"Content-Type": "application/json"})  # fmt: skip
    assert (no_token.status, wrong.status, htmx.status) == (403, 403, 403)
    assert "security token" in no_token.text()
    assert console.store.project(console.project.id).timezone == before
    # the login form has its own token: a cross-site login attempt without it is refused too
    assert httpx.post(console.url + "/console/login", data={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 403


# -- numbers against the API ------------------------------------------------------------------------
def test_overview_kpis_equal_the_api(page: Page, console: Console) -> None:
    page.goto(console.page_url("/overview?days=7"))
    shown = {k: parse_number(page.locator(f"[data-kpi='kpi.{k}'] .value").inner_text())
             for k in ("pv", "uv", "new_users", "active_users", "registrations", "buyers", "revenue")}  # fmt: skip
    d0, d1 = custom_range(console, 7)
    rng = {"date_from": d0, "date_to": d1}
    totals = {
        (r["event"], r["math"]): r["total"]
        for r in console.query({"kind": "trends", **rng, "series": [
            {"event": "$pageview"}, {"event": "$screen"}, {"event": "sign_up"}, {"event": "purchase", "math": "uv"},
            {"event": "purchase", "math": "sum", "property": "revenue"}]})["results"]
    }  # fmt: skip
    visitors = console.query({"kind": "visitors", **rng})
    dau = visitors["daily"]["dau"]
    expected = {
        "pv": totals["$pageview", "total"] + totals["$screen", "total"],
        "uv": visitors["total"]["active"],
        "new_users": visitors["total"]["new"],
        "active_users": round(sum(dau) / len(dau), 2),
        "registrations": totals["sign_up", "total"],
        "buyers": totals["purchase", "uv"],
        "revenue": round(totals["purchase", "sum"], 2),
    }
    assert shown == expected and expected["pv"] > 0 and expected["buyers"] > 0
    # the change against the previous 7 days, as shown
    p0, p1 = (console.today - timedelta(days=13)).isoformat(), (console.today - timedelta(days=7)).isoformat()
    prev = console.query({"kind": "visitors", "date_from": p0, "date_to": p1})["total"]["active"]
    delta = page.locator("[data-kpi='kpi.uv'] .delta").inner_text()
    assert f"{(expected['uv'] - prev) / prev * 100:+.1f}%" in delta
    # top channels: the first rows are the channels analysis' top values
    channels = console.query({"kind": "channels", **rng, "limit": 5})["results"]
    rows = page.locator("#table-channels tbody tr")
    assert rows.count() == len(channels)
    assert [int(parse_number(x)) for x in column(page, "channels", "visitors")] == [c["visitors"] for c in channels]


def test_trends_numbers_chart_and_csv_equal_the_api(page: Page, console: Console) -> None:
    d0, d1 = custom_range(console)
    page.goto(console.page_url(f"/analysis/trends?range=custom&date_from={d0}&date_to={d1}&e1=$pageview&m1=total"
                               "&e2=purchase&m2=sum&p2=revenue&interval=week"))  # fmt: skip
    api = console.query({"kind": "trends", "date_from": d0, "date_to": d1, "interval": "week", "series": [
        {"event": "$pageview", "math": "total"}, {"event": "purchase", "math": "sum", "property": "revenue"}]})  # fmt: skip
    assert [parse_number(x) for x in column(page, "series", "total")] == [round(r["total"], 2) for r in api["results"]]
    first_week = api["results"][0]["dates"][0]
    assert [parse_number(x) for x in column(page, "series", first_week)] == [round(r["values"][0], 2) for r in api["results"]]
    page.wait_for_function("document.querySelector('#chart-trends canvas') !== null")  # ECharts drew it
    with page.expect_download() as dl:
        page.click("[data-csv='series']")
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8-sig"))))
    assert [float(r["total"]) for r in rows] == [r["total"] for r in api["results"]]
    assert [float(r[first_week]) for r in rows] == [r["values"][0] for r in api["results"]]
    assert json.loads(page.locator("#query-json").text_content() or "")["series"][1] == {
        "event": "purchase", "math": "sum", "property": "revenue"}


def test_funnel_and_retention_equal_the_api(page: Page, console: Console) -> None:
    d0, d1 = custom_range(console)
    page.goto(console.page_url(f"/analysis/funnel?range=custom&date_from={d0}&date_to={d1}"
                               "&s1=view_course&s2=submit_order&s3=purchase&window=86400"))  # fmt: skip
    funnel = console.query({"kind": "funnel", "date_from": d0, "date_to": d1, "window_seconds": 86400,
                            "steps": [{"event": "view_course"}, {"event": "submit_order"}, {"event": "purchase"}]})  # fmt: skip
    counts = [s["count"] for s in funnel["steps"]]
    assert [int(parse_number(x)) for x in column(page, "steps", "count")] == counts and counts[2] > 0
    assert [int(parse_number(x)) for x in column(page, "steps", "dropped")] == [0, counts[0] - counts[1], counts[1] - counts[2]]
    page.goto(console.page_url(f"/analysis/retention?range=custom&date_from={d0}&date_to={d1}"
                               "&start=sign_up&ret=$pageview&interval=week&periods=4"))  # fmt: skip
    ret = console.query({"kind": "retention", "date_from": d0, "date_to": d1, "start_event": "sign_up",
                         "return_event": "$pageview", "interval": "week", "periods": 4})  # fmt: skip
    assert column(page, "cohorts", "start") == [c["start"] for c in ret["cohorts"]]
    assert [int(parse_number(x)) for x in column(page, "cohorts", "size")] == [c["size"] for c in ret["cohorts"]]
    week1 = page.locator("#table-cohorts td[data-key='period_1']").evaluate_all("els => els.map(e => +e.dataset.count)")
    assert week1 == [c["retained"][1] for c in ret["cohorts"]]


def test_funnel_drop_off_becomes_a_segment(page: Page, console: Console) -> None:
    d0, d1 = custom_range(console)
    page.goto(console.page_url(f"/analysis/funnel?range=custom&date_from={d0}&date_to={d1}&s1=view_course&s2=purchase"))
    funnel = console.query({"kind": "funnel", "date_from": d0, "date_to": d1,
                            "steps": [{"event": "view_course"}, {"event": "purchase"}]})  # fmt: skip
    dropped = funnel["steps"][0]["count"] - funnel["steps"][1]["count"]
    form = page.locator("#drop-1")
    form.locator("input[name=name]").fill("course-no-buy")
    form.locator("button").click()
    page.wait_for_url("**/segments/course-no-buy?created=1")
    assert int(page.locator("#member-count").get_attribute("data-count") or -1) == dropped > 0
    got = console.api("GET", "/api/segments/course-no-buy").json()
    assert got["member_count"] == dropped and got["type"] == "static"
    # every analysis can be limited to a saved segment's members
    page.goto(console.page_url(f"/analysis/trends?range=custom&date_from={d0}&date_to={d1}&e1=view_course&m1=uv"
                               "&segment=course-no-buy"))  # fmt: skip
    api = console.query({"kind": "trends", "date_from": d0, "date_to": d1, "segment": "course-no-buy",
                         "series": [{"event": "view_course", "math": "uv"}]})  # fmt: skip
    assert [parse_number(x) for x in column(page, "series", "total")] == [api["results"][0]["total"]]
    assert api["results"][0]["total"] == dropped  # every member viewed a course in the range


def test_segment_builder_live_count_equals_preview(page: Page, console: Console) -> None:
    page.goto(console.page_url("/segments"))
    builder = page.locator("#builder")
    builder.locator("[data-add='person']").click()
    cond = builder.locator(".cond[data-kind='person']")
    cond.locator("[data-field='person_properties']").fill("city")
    cond.locator("[data-field='value']").fill("Beijing")
    count = page.locator("#live-count")
    expect(count).to_have_attribute("data-state", "ok")
    beijing = console.store.query(
        "SELECT count(*) AS n FROM persons WHERE project_id = ? AND json_extract_string(properties, '$.city') = 'Beijing'",
        [console.project.id],
    )[0]["n"]
    expect(count).to_have_attribute("data-count", str(beijing))
    # AND NOT (did purchase at least once in the last 30 days)
    builder.locator("[data-add='event']").last.click()
    ev = builder.locator(".cond[data-kind='event']")
    ev.locator("[data-field='events']").fill("purchase")
    ev.locator("[data-field='not']").check()
    rule = {"and": [{"kind": "person", "property": "city", "operator": "=", "value": "Beijing"},
                    {"not": {"kind": "event", "event": "purchase", "operator": ">=", "times": 1, "last_days": 30}}]}  # fmt: skip
    expect(page.locator("#rule-json")).to_have_value(json.dumps(rule, separators=(",", ":")))
    preview = console.api("POST", "/api/segments/preview", json={"rule": rule, "sample": 0}).json()["count"]
    expect(count).to_have_attribute("data-count", str(preview))
    assert 0 < preview < beijing
    page.fill("input[name=name]", "beijing-no-buy")
    page.click("#save-segment button[type=submit]")
    page.wait_for_url("**/segments/beijing-no-buy?created=1")
    assert int(page.locator("#member-count").get_attribute("data-count") or -1) == preview


def test_dashboard_save_edit_and_csv(page: Page, console: Console) -> None:
    page.goto(console.page_url("/analysis/visitors?range=14d&interval=day"))
    form = page.locator("#save-chart")
    form.locator("input[name=title]").fill("Visitors, 2 weeks")
    form.locator("input[name=new_dashboard]").fill("Weekly review")
    form.locator("button").click()
    page.wait_for_url("**/dashboards/*?saved=1")
    expect(page.locator("#dashboard-name")).to_have_text("Weekly review")
    d0, d1 = custom_range(console, 14)
    api = console.query({"kind": "visitors", "date_from": d0, "date_to": d1})
    active = page.locator(".kpi").filter(has_text="Active").locator(".value").first.inner_text()
    assert parse_number(active) == api["total"]["active"]
    with page.expect_download() as dl:
        page.locator("a[download]").first.click()
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8-sig"))))
    assert [int(r["active"]) for r in rows] == api["active"]
    page.fill("input[name=name]", "Monday review")
    page.click("form:has(input[value=rename]) button")
    expect(page.locator("#dashboard-name")).to_have_text("Monday review")
    page.click("[data-op='remove']")
    expect(page.locator("[data-chart-id]")).to_have_count(0)


# -- roles ------------------------------------------------------------------------------------------
def test_roles(browser: Browser, console: Console) -> None:
    viewer = sign_in(browser, console, VIEWER, USER_PASSWORD)
    page = viewer.new_page()
    page.goto(console.page_url("/settings"))
    expect(page.locator("#timezone-form")).to_have_count(0)
    expect(page.locator("#keys")).to_have_count(0)  # viewers do not see the keys
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    denied = viewer.request.post(console.page_url("/settings/timezone"), form={"timezone": "UTC", "csrf_token": csrf})
    save = viewer.request.post(console.page_url("/dashboards"), form={"name": "mine", "csrf_token": csrf})
    assert (denied.status, save.status) == (403, 403)
    assert console.store.project(console.project.id).timezone == "Asia/Shanghai"
    preview = viewer.request.post(console.page_url("/segments/preview"), headers={"X-CSRF-Token": csrf or ""},
                                  data=json.dumps({"rule": {"kind": "person", "property": "city", "value": "Beijing"}}))  # fmt: skip
    assert preview.status == 200 and preview.json()["count"] > 0  # reading is allowed
    page.goto(f"{console.url}/console/p/{console.other.id}/overview")  # not a member of that project
    assert page.locator("#page-error").get_attribute("data-code") == "project_not_found"
    page.goto(console.page_url("/overview"))
    assert page.locator("#project-switch option").all_inner_texts() == ["demo"]  # only the projects she is in
    viewer.close()
    analyst = sign_in(browser, console, ANALYST, USER_PASSWORD)
    csrf_page = analyst.new_page()
    csrf_page.goto(console.page_url("/settings"))
    token = csrf_page.locator("meta[name=csrf-token]").get_attribute("content")
    rotate = analyst.request.post(console.page_url("/settings/rotate"), form={"which": "secret_key", "csrf_token": token})
    assert rotate.status == 403
    analyst.close()


def test_admin_changes_time_zone_rotates_key_and_adds_a_member(page: Page, console: Console) -> None:
    try:
        settings_round_trip(page, console)
    finally:
        console.store.set_project_timezone(console.project.id, "Asia/Shanghai")


def settings_round_trip(page: Page, console: Console) -> None:
    page.goto(console.page_url("/settings"))
    old_secret = console.store.project(console.project.id).secret_key
    page.fill("#timezone-form input[name=timezone]", "Europe/Paris")
    page.click("#timezone-form button")
    expect(page.locator("#notice")).to_contain_text("Europe/Paris")
    assert console.store.project(console.project.id).timezone == "Europe/Paris"
    page.fill("#timezone-form input[name=timezone]", "Mars/Olympus")
    page.click("#timezone-form button")
    assert page.locator("#page-error").get_attribute("data-code") == "bad_timezone"
    page.goto(console.page_url("/settings"))
    page.once("dialog", lambda d: d.accept())
    page.click("[data-rotate='secret_key']")
    expect(page.locator("#notice")).to_be_visible()
    new_secret = console.store.project(console.project.id).secret_key
    assert new_secret != old_secret and page.locator("#secret_key").inner_text() == new_secret
    assert httpx.get(console.url + "/api/events", headers={"Authorization": f"Bearer {old_secret}"}).status_code == 401
    page.fill("#member-form input[name=username]", "wei")
    page.select_option("#member-form select[name=role]", "analyst")
    page.click("#member-form button")
    password = page.locator("#generated-password code").inner_text()
    assert auth.role_of(console.store, "wei", console.project.id) == "analyst"
    assert console.store.check_admin_password("wei", password)


# -- language, live events -----------------------------------------------------------------------------
def test_chinese_from_accept_language_and_the_switch(browser: Browser, console: Console) -> None:
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(console.url + "/console/login")
    expect(page.locator("#login-submit")).to_have_text("登录")
    context.close()
    context = sign_in(browser, console, "admin", ADMIN_PASSWORD)
    page = context.new_page()
    page.goto(console.page_url("/overview"))
    page.click("[data-lang='zh']")
    expect(page.locator("aside a.on")).to_have_text("概览")
    expect(page.locator("[data-kpi='kpi.uv'] .label")).to_have_text("访客数 UV")
    context.close()


def test_live_events_appear_without_reload(page: Page, console: Console) -> None:
    page.goto(console.page_url("/live"))
    marker = f"console-live-{time.time_ns()}"
    resp = httpx.post(console.url + "/v1/track", auth=(console.project.write_key, ""),
                      json={"event": "live_check", "userId": marker, "properties": {"n": 1}})  # fmt: skip
    assert resp.status_code == 200
    row = page.locator("#live-events tr", has_text=marker)
    expect(row).to_have_count(1, timeout=10_000)  # the 2-second poll brought it
    assert "live_check" in row.inner_text() and "new" in (row.get_attribute("class") or "")
