"""The Recommendations page's offline metrics in Debian's chromium (Playwright), on the demo data set.

The fixtures of ``test_console.py`` (a demo file, a real server, the signed-in admin) are reused. The
numbers the page renders are read back from the DOM and from the ECharts instance and compared with
``GET /api/recommend/evaluations``; times with the stored ``evaluated_at`` in the project's zone.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, Page, expect

from tests.web import test_console as shared
from tests.web.test_console import USER_PASSWORD, VIEWER, Console, sign_in
from userloop.web.console.i18n import parse_number

# the fixtures of test_console.py: its demo file, server, browser and signed-in admin
demo_file, console, browser, admin, page = shared.demo_file, shared.console, shared.browser, shared.admin, shared.page


def evaluations(console: Console, split: str) -> dict[str, Any]:
    resp = console.api("GET", "/api/recommend/evaluations", params={"split": split})
    assert resp.status_code == 200, resp.text
    (e,) = resp.json()["evaluations"]
    return e  # type: ignore[no-any-return]


def stored_at(console: Console, split: str) -> list[datetime]:
    rows = console.store.query("SELECT evaluated_at FROM recommend_evaluations WHERE project_id = ? AND split = ? "
                               "ORDER BY evaluated_at", [console.project.id, split])  # fmt: skip
    return [r["evaluated_at"] for r in rows]


def shown(page: Page, split: str, key: str) -> dict[str, float]:
    rows = page.locator(f"#table-offline-{split} tbody tr")
    return {r.get_attribute("data-recommender") or "": parse_number(r.locator(f"td[data-key='{key}']").inner_text())
            for r in rows.all()}  # fmt: skip


def check_split(page: Page, console: Console, split: str) -> None:
    e = evaluations(console, split)
    assert shown(page, split, "ndcg@10") == {r["recommender"]: r["ndcg@10"] for r in e["rows"]}
    assert shown(page, split, "hr@10") == {r["recommender"]: r["hr@10"] for r in e["rows"]}
    assert len(e["rows"]) == 10 and max(r["ndcg@10"] for r in e["rows"]) > 0
    best = max(e["rows"], key=lambda r: r["ndcg@10"])["recommender"]
    assert e["best"] == best
    expect(page.locator(f"#table-offline-{split} tr.best")).to_have_attribute("data-recommender", best)
    (when,) = stored_at(console, split)
    local = when.astimezone(ZoneInfo(console.project.timezone)).strftime("%Y-%m-%d %H:%M:%S")
    assert page.locator(f"#offline-{split} .evaluated-at").inner_text() == local
    # the bar chart: one bar per recommender, NDCG@10, as ECharts holds it
    page.wait_for_function(f"document.querySelector('#chart-ndcg-{split} canvas') !== null")
    option = page.evaluate(f"JSON.stringify(echarts.getInstanceByDom(document.getElementById('chart-ndcg-{split}')).getOption())")
    opt = json.loads(option)
    assert opt["xAxis"][0]["data"] == [r["recommender"] for r in e["rows"]]
    assert [d["value"] for d in opt["series"][0]["data"]] == [r["ndcg@10"] for r in e["rows"]]


def test_offline_metrics_and_running_an_evaluation(page: Page, console: Console) -> None:
    page.goto(console.page_url("/recommendations"))
    expect(page.locator("#offline-none")).to_contain_text("No offline evaluation yet")
    expect(page.locator("#run-evaluation button")).to_have_text("Run evaluation")
    ran = console.api("POST", "/api/recommend/evaluate", json={"split": "loo", "tune": False})
    assert ran.status_code == 200, ran.text
    page.reload()
    expect(page.locator("#offline-none")).to_have_count(0)
    check_split(page, console, "loo")
    assert shown(page, "loo", "ndcg@10") == {r["recommender"]: r["ndcg@10"] for r in ran.json()["rows"]}
    # the button: the time split, not tuned; the page comes back with both splits
    page.select_option("#run-evaluation select[name=split]", "time")
    page.uncheck("#run-evaluation input[name=tune]")
    page.click("#run-evaluation button")
    page.wait_for_url("**/recommendations?evaluated=time*")
    expect(page.locator("#notice")).to_have_text("Evaluation finished: Time split (time).")
    assert len(stored_at(console, "time")) == 1
    check_split(page, console, "time")
    check_split(page, console, "loo")
    # a project without item interactions: the error is shown on the page, nothing is stored
    page.goto(f"{console.url}/console/p/{console.other.id}/recommendations")
    page.click("#run-evaluation button")
    expect(page.locator("#evaluation-error")).to_have_text("the project has no item interactions to evaluate")
    expect(page.locator("#offline-none")).to_have_count(1)


def test_viewers_see_the_metrics_but_cannot_run_an_evaluation(browser: Browser, console: Console) -> None:
    before = stored_at(console, "loo") + stored_at(console, "time")
    viewer = sign_in(browser, console, VIEWER, USER_PASSWORD, locale="zh-CN")
    try:
        page = viewer.new_page()
        page.goto(console.page_url("/recommendations"))
        expect(page.locator("#offline h2").first).to_have_text("各推荐器离线指标")
        expect(page.locator("#run-evaluation")).to_have_count(0)
        csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
        denied = viewer.request.post(console.page_url("/recommendations/evaluate"),
                                     form={"split": "loo", "csrf_token": csrf or ""})  # fmt: skip
        assert denied.status == 403
        assert stored_at(console, "loo") + stored_at(console, "time") == before
    finally:
        viewer.close()
