"""What the trackers need from the server: CORS on the collector paths, sendBeacon's text/plain
bodies, /static/userloop.js, and committed builds that match trackers/src."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "https://shop.example.com"


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track", "/batch/", "/i/v0/e/", "/sa", "/decide"])
def test_collector_preflight(live_server: LiveServer, path: str) -> None:
    resp = httpx.options(f"{live_server.url}{path}", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"})
    assert resp.status_code == 204
    assert {k: resp.headers.get(k) for k in (
        "access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
        "access-control-max-age", "access-control-allow-credentials")} == {
        "access-control-allow-origin": "*", "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": "content-type,authorization", "access-control-max-age": "86400",
        "access-control-allow-credentials": None}


def test_beacon_body_as_text_plain_and_cors_on_every_answer(live_server: LiveServer) -> None:
    key = live_server.project.write_key
    body = json.dumps({"writeKey": key, "batch": [
        {"type": "track", "event": "beacon", "anonymousId": "a1", "messageId": "b-1", "properties": {"n": 1}}]})
    resp = httpx.post(f"{live_server.url}/v1/batch", content=body,
                      headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
    assert (resp.status_code, resp.json()) == (200, {"accepted": 1, "rejected": []})
    assert resp.headers["access-control-allow-origin"] == "*"
    [event] = live_server.events()
    assert (event["message_id"], event["event"], event["distinct_id"], event["properties"]) == (
        "b-1", "beacon", "a1", {"n": 1})
    # errors carry the header too, so a browser can read why it was refused
    bad = httpx.post(f"{live_server.url}/v1/batch", content='{"writeKey": "nope", "batch": []}',
                     headers={"Origin": ORIGIN, "Content-Type": "text/plain"})
    assert bad.status_code == 401 and bad.headers["access-control-allow-origin"] == "*"
    assert bad.json()["error"]["code"] == "unknown_write_key"


def test_read_apis_get_no_cors(live_server: LiveServer) -> None:
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {live_server.project.secret_key}"}
    resp = httpx.get(f"{live_server.url}/api/events", headers=headers)
    assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers
    pre = httpx.options(f"{live_server.url}/api/events", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers and pre.status_code == 405


def test_static_tracker_and_demo_served(live_server: LiveServer) -> None:
    js = httpx.get(f"{live_server.url}/static/userloop.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert js.content == (ROOT / "userloop" / "web" / "static" / "userloop.js").read_bytes()
    demo = httpx.get(f"{live_server.url}/static/tracker-demo.html")
    assert demo.status_code == 200 and '<script src="/static/userloop.js"></script>' in demo.text
    assert httpx.get(f"{live_server.url}/static/nothing.js").status_code == 404


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (needed to rebuild the trackers)")
def test_committed_builds_match_their_sources() -> None:
    proc = subprocess.run(["node", str(ROOT / "trackers" / "build.mjs"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
