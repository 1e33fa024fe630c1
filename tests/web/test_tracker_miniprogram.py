"""The WeChat mini-program build under Node, with a stand-in ``wx`` (tests/web/miniprogram_harness.js).

Its wx.request really posts to a live server; the events are read back through the API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
TRACKER = ROOT / "trackers" / "miniprogram" / "userloop-mp.js"
HARNESS = Path(__file__).with_name("miniprogram_harness.js")
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (the harness runs the tracker in Node)")

DEVICE = {"os": "iOS", "browser": None, "device_type": "Mobile", "lib": "miniprogram/0.1.0",
          "app_version": "1.4.2", "source": "segment"}
CAMPAIGN = {"utm_source": "wechat", "utm_medium": "qrcode", "utm_campaign": "poster", "channel": "wechat"}
SCREEN = {"screen_width": 390, "screen_height": 844}


def run_harness(server: LiveServer) -> dict[str, Any]:
    proc = subprocess.run(
        [str(NODE), str(HARNESS), str(TRACKER), server.url, server.project.write_key],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_miniprogram_events_reach_the_server(live_server: LiveServer) -> None:
    out = run_harness(live_server)
    anon = out["anonymousId"]
    assert out["ok"] is True and out["userId"] == "mp-user-1"
    # the app's own handlers still ran, after the tracker's
    assert out["ownHandlers"] == ["app.onShow", "index.onShow", "detail.onShow:c9", "app.onHide"]
    # the first answer was lost after the server stored the batch: the retry resent it
    statuses = [r["status"] for r in out["requests"]]
    assert statuses[0] == "lost" and set(statuses[1:]) == {200}
    assert {(r["method"], r["path"]) for r in out["requests"]} == {("POST", "/v1/batch")}
    assert out["storage"] == {"userloop_anonymous_id": anon, "userloop_user_id": "mp-user-1", "userloop_queue": "[]"}

    events = sorted(live_server.events(), key=lambda e: e["original_timestamp"])
    index_url, detail_url = "pages/index/index?from=poster", "pages/course/detail?id=c9"
    expected = [
        # no page is shown yet; the server takes the path column from the launch path property
        ("$app_show", "track", anon, None, None, "pages/index/index", None, {"scene": 1047, "path": "pages/index/index"}),
        ("$pageview", "page", anon, None, index_url, "pages/index/index", None,
         {"url": index_url, "path": "pages/index/index", "referrer": None, **SCREEN}),
        ("view_course", "track", anon, None, index_url, "pages/index/index", None, {"course_id": "c9"}),
        ("$pageview", "page", anon, None, detail_url, "pages/course/detail", "pages/index/index",
         {"url": detail_url, "path": "pages/course/detail", "referrer": "pages/index/index", **SCREEN}),
        ("$identify", "identify", "mp-user-1", "mp-user-1", detail_url, "pages/course/detail", "pages/index/index",
         {"$set": {"city": "Hangzhou"}}),
        ("purchase", "track", "mp-user-1", "mp-user-1", detail_url, "pages/course/detail", "pages/index/index",
         {"revenue": 199, "course_id": "c9"}),
        ("$app_hide", "track", "mp-user-1", "mp-user-1", detail_url, "pages/course/detail", "pages/index/index", {}),
    ]
    assert [
        (e["event"], e["type"], e["distinct_id"], e["user_id"], e["url"], e["path"], e["referrer"], e["properties"])
        for e in events
    ] == expected  # exactly once each, although the first batch was sent twice
    for e in events:
        assert e["anonymous_id"] == anon
        assert {k: e[k] for k in DEVICE} == DEVICE
        assert {k: e[k] for k in CAMPAIGN} == CAMPAIGN  # from the launch query, kept for the visit
        assert e["referring_domain"] is None

    person = live_server.person("mp-user-1")
    assert sorted(person["distinct_ids"]) == sorted([anon, "mp-user-1"])
    assert person["properties"] == {"city": "Hangzhou"}
    assert person["event_count"] == 7
    assert {e["person_id"] for e in events} == {person["person_id"]}
