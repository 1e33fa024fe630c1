"""Screenshots of the console's main pages for the docs: ``docs/screenshots/*.png``.

Builds the demo data set in a temporary directory (3,000 users, 60 days), adds what the people
pages show (RFM and lifecycle layers computed at three dates, two tags, a segment, a dashboard)
and what the recommendations page shows (a trained model, the offline evaluation of the
leave-last-out split), serves it on a free port and photographs the pages in Debian's chromium
(headless)::

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--users 3000] [--days 60] [--only NAME ...]

``--only`` takes screenshot names (``recommendations``, ``portrait``, ...): the demo data follow
today's date, so regenerating every screenshot changes them all.

Chinese text needs a CJK font (``apt-get install fonts-wqy-microhei``); the screenshots use
Liberation Sans for Latin text (``fonts-liberation``; without it chromium falls back to DejaVu Sans).
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import uvicorn
from playwright.sync_api import Page, sync_playwright

from userloop.actions import ActionContext, run_action
from userloop.backend import LocalBackend
from userloop.demo import load_demo
from userloop.store.duckdb import Store
from userloop.web.app import create_app

PASSWORD = "screenshots-only"
WIDTH, MAX_HEIGHT = 1360, 1100
RECOMMENDATIONS_HEIGHT = 2400  # the feed, then the offline chart and table


def prepare(db: Path, users: int, days: int) -> tuple[int, str, str]:
    """The demo project's id, the person with the highest RFM monetary value (for the portrait) and
    that person's shortest distinct id (the login id: the recommendations page's feed preview)."""
    backend = LocalBackend(db)
    try:
        pid = int(load_demo(backend, users=users, days=days, seed=11)["project"]["id"])
        ctx = ActionContext(backend.store, backend.writer, backend.store.project(pid))
        today = datetime.now(ZoneInfo(ctx.project.timezone)).date()
        for model in ({"name": "rfm", "kind": "rfm", "description": "RFM, last 90 days"},
                      {"name": "lifecycle", "kind": "lifecycle", "description": "new, active, buying, sleeping"}):  # fmt: skip
            run_action("layers.create", ctx, model)
            for back in (14, 7, 0):
                run_action("layers.compute", ctx, {"name": model["name"], "as_of": (today - timedelta(days=back)).isoformat()})
        run_action("tags.create", ctx, {"name": "purchases_30d", "kind": "dynamic", "category": "consumption/orders",
                                        "rule": {"aggregate": "count", "event": "purchase", "window": {"last_days": 30}}})  # fmt: skip
        run_action("tags.create", ctx, {"name": "favourite_category", "kind": "dynamic", "category": "activity",
                                        "rule": {"aggregate": "most_frequent", "event": "view_article",
                                                 "property": "category", "window": {"last_days": 30}}})  # fmt: skip
        run_action("segments.create", ctx, {"name": "beijing-readers", "type": "dynamic", "rule": {"and": [
            {"kind": "person", "property": "city", "value": "Beijing"},
            {"kind": "event", "event": "read_article", "operator": ">=", "times": 3, "last_days": 30}]}})  # fmt: skip
        run_action("recommend.train", ctx, {})
        run_action("recommend.evaluate", ctx, {"split": "loo", "tune": True})  # tuned: about 20 s on 2 cores
        backend.store.set_admin_password("admin", PASSWORD)
        best = backend.store.query(
            "SELECT person_id FROM layer_members WHERE project_id = ? AND model = 'rfm' "
            "ORDER BY TRY_CAST(json_extract_string(scores, '$.monetary') AS DOUBLE) DESC NULLS LAST, person_id LIMIT 1",
            [pid],
        )
        ids = backend.store.query(
            "SELECT distinct_id FROM identities WHERE project_id = ? AND person_id = ? "
            "ORDER BY length(distinct_id), distinct_id LIMIT 1",
            [pid, best[0]["person_id"]],
        )
        return pid, str(best[0]["person_id"]), str(ids[0]["distinct_id"])
    finally:
        backend.close()


def serve(db: Path) -> tuple[str, uvicorn.Server, threading.Thread]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(Store(db)), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def shoot(page: Page, url: str, out: Path, wait: int = 900, max_height: int = MAX_HEIGHT) -> None:
    page.goto(url)
    page.wait_for_timeout(wait)  # ECharts animations
    height = min(max_height, page.evaluate("document.documentElement.scrollHeight"))
    page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
    print(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "screenshots")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these screenshots (names without .png)")
    args = ap.parse_args()
    wanted = (lambda name: name in args.only) if args.only else (lambda name: True)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.duckdb"
        pid, buyer, buyer_id = prepare(db, args.users, args.days)
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the demo's time zone
        d0, d1 = (today - timedelta(days=55)).isoformat(), today.isoformat()
        base, server, thread = serve(db)
        p = f"{base}/console/p/{pid}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": WIDTH, "height": 900}, locale="en-US")
            page = context.new_page()
            page.goto(base + "/console/login")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("#login-submit")
            page.wait_for_url("**/overview")
            shots = [
                ("overview", f"{p}/overview?days=30"),
                ("trends", f"{p}/analysis/trends?e1=$pageview&m1=uv&e2=view_article&m2=uv&interval=day&compare=1"),
                ("funnel", f"{p}/analysis/funnel?s1=view_course&s2=submit_order&s3=purchase"),
                ("retention", f"{p}/analysis/retention?start=sign_up&ret=$pageview&interval=week&periods=6&range=custom"
                              f"&date_from={d0}&date_to={d1}"),
                ("paths", f"{p}/analysis/paths?anchor=$pageview&steps=4"),
                ("channels", f"{p}/analysis/channels?costs=douyin+%3D+3000%0Apaid_search+%3D+1500"),
                ("people", f"{p}/people"),
                ("layers", f"{p}/layers/lifecycle"),
                ("live", f"{p}/live"),
            ]
            for name, url in shots:
                if wanted(name):
                    shoot(page, url, args.out / f"{name}.png")
            if wanted("portrait"):
                shoot(page, f"{p}/people/{buyer}", args.out / "portrait.png")
            if wanted("recommendations"):  # the buyer's feed with reasons, then the offline metrics
                shoot(page, f"{p}/recommendations?run=recommend.preview&person={buyer_id}",
                      args.out / "recommendations.png", max_height=RECOMMENDATIONS_HEIGHT)  # fmt: skip
            if wanted("segment-builder"):
                page.goto(f"{p}/segments")  # the builder with two conditions and its live count
                page.click("[data-add='person']")
                page.fill(".cond[data-kind='person'] [data-field='person_properties']", "city")
                page.fill(".cond[data-kind='person'] [data-field='value']", "Shanghai")
                page.click("#builder [data-add='event']")
                page.fill(".cond[data-kind='event'] [data-field='events']", "purchase")
                page.wait_for_selector("#live-count[data-state='ok']")
                page.screenshot(path=str(args.out / "segment-builder.png"), clip={"x": 0, "y": 0, "width": WIDTH, "height": 900})
            if wanted("overview-zh"):
                zh = browser.new_context(viewport={"width": WIDTH, "height": 900}, locale="zh-CN",
                                         storage_state=context.storage_state())  # fmt: skip
                shoot(zh.new_page(), f"{p}/overview?days=30", args.out / "overview-zh.png")
            browser.close()
        server.should_exit = True
        thread.join(timeout=15)


if __name__ == "__main__":
    main()
