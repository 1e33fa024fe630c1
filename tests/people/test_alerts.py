"""Early warning: rules on layer flows and metrics, delivered to a real loopback HTTP receiver and a
real SMTP server (aiosmtpd), checked on demand and on schedule, with the log of fired alerts."""

from __future__ import annotations

import email
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.analytics.conftest import World
from tests.conftest import free_port
from userloop.errors import UserloopError
from userloop.people.alerts import service as alerts
from userloop.people.layers import service as layers
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

# a loopback SMTP server without TLS that wants a login (aiosmtpd warns about exactly that)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

# -- a webhook receiver and an SMTP server ----------------------------------------------------------


@dataclass
class Receiver:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def wait(self, n: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Records every POST (path, headers, JSON body); answers 500 on /fail, 200 elsewhere."""
    rec = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
            self.send_response(500 if self.path == "/fail" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@dataclass
class Inbox:
    port: int = 0
    messages: list[tuple[str, list[str], Message, Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg, session.auth_data))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    """A real SMTP server on a loopback port that wants login alerts / s3cret (no TLS here)."""
    inbox = Inbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", b"s3cret")
        return AuthResult(success=ok, auth_data=data.login if ok else None)

    inbox.port = free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=inbox.port, authenticator=authenticate,
                     auth_require_tls=False, auth_required=True)  # fmt: skip
    ctl.start()
    yield inbox
    ctl.stop()


def email_channel(inbox: Inbox, **over: Any) -> dict[str, Any]:
    return {"type": "email", "to": ["ops@example.com", "lead@example.com"], "smtp_host": "127.0.0.1",
            "smtp_port": inbox.port, "sender": "userloop@example.com", "username": "alerts", "password": "s3cret",
            **over}  # fmt: skip


# -- data -----------------------------------------------------------------------------------------


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    store = Store(tmp_path / "alerts.duckdb")
    project = store.create_project("shop", "UTC")
    with Writer(store) as writer:
        yield World(store=store, writer=writer, project=project, rows=[])
    store.close()


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def shop_with_a_flow(w: World) -> None:
    """20 buyers 10 days ago; 17 bought again 2 days ago. With sleeping after 5 days, as of 7 days
    ago all 20 were buying; now 3 of them (15%) sleep."""
    today = datetime.now(UTC).date()
    events = [{"distinct_id": f"b{i}", "event": "purchase", "ts": at(today - timedelta(days=10)),
               "properties": {"amount": 10}} for i in range(20)]  # fmt: skip
    events += [{"distinct_id": f"b{i}", "event": "purchase", "ts": at(today - timedelta(days=2)),
                "properties": {"amount": 10}} for i in range(3, 20)]  # fmt: skip
    w.add(events)
    layers.create(w.store, w.project, {"name": "life", "kind": "lifecycle",
                                       "params": {"sleeping_days": 5, "churned_days": 60}})  # fmt: skip
    layers.compute(w.store, w.project, "life", str(today - timedelta(days=7)))
    layers.compute(w.store, w.project, "life")


def flow_rule(name: str, threshold: float, channels: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    return {"name": name, "schedule": None, "channels": channels,
            "condition": {"type": "layer_flow", "model": "life", "from": ["buying"], "to": ["sleeping", "churned"],
                          "window_days": 7, "threshold": threshold}, **over}  # fmt: skip


def test_layer_flow_fires_and_delivers_by_webhook_and_email(
    w: World, receiver: Receiver, smtp: Inbox
) -> None:
    shop_with_a_flow(w)
    channels = [
        {"type": "webhook", "url": receiver.url + "/hook", "headers": {"X-Token": "t0k"}},
        email_channel(smtp),
    ]
    alerts.create(w.store, w.project, flow_rule("flow", 0.05, channels))
    alerts.create(w.store, w.project, flow_rule("quiet", 0.15, channels))  # 15% is not more than 15%

    quiet = alerts.check(w.store, w.project, "quiet")
    assert (quiet["fired"], quiet["value"], quiet["deliveries"]) == (False, 0.15, [])
    got = alerts.check(w.store, w.project, "flow")
    assert got["fired"] and got["value"] == pytest.approx(0.15)
    assert got["details"]["base"] == 20 and got["details"]["moved"] == 3
    assert [d["ok"] for d in got["deliveries"]] == [True, True]

    (hook,) = receiver.requests
    body = hook["json"]
    assert hook["path"] == "/hook" and hook["headers"]["X-Token"] == "t0k"
    assert body["rule"] == "flow" and body["project"] == {"id": w.project.id, "name": "shop"}
    assert (
        body["value"] == pytest.approx(0.15) and body["threshold"] == 0.05 and body["log_id"] == got["log_id"]
    )
    assert body["details"]["moved"] == 3 and body["condition"]["to"] == ["sleeping", "churned"]
    assert body["message"].startswith("15.0% of 20 persons of life in buying")

    (sender, rcpts, msg, login) = smtp.messages[0]
    assert (sender, rcpts, login) == (
        "userloop@example.com",
        ["ops@example.com", "lead@example.com"],
        b"alerts",
    )
    assert (
        msg["Subject"] == "[userloop] alert flow: shop" and msg["To"] == "ops@example.com, lead@example.com"
    )
    text = msg.get_payload(decode=True).decode()
    assert body["message"] in text and '"moved": 3' in text

    log = alerts.log(w.store, w.project, {})
    assert log["total"] == 1
    entry = log["results"][0]
    assert (entry["rule"], entry["id"], entry["trigger"]) == ("flow", got["log_id"], "manual")
    assert entry["value"] == pytest.approx(0.15) and entry["details"]["base"] == 20
    assert [d["type"] for d in entry["deliveries"]] == ["webhook", "email"]
    rule = alerts.get(w.store, w.project, "flow")
    assert rule["last_fired_at"] and rule["last_value"] == pytest.approx(0.15)
    assert rule["channels"][1]["password"] == "***" and rule["channels"][0]["headers"] == {"X-Token": "***"}


def test_failed_deliveries_are_logged_and_do_not_stop_the_others(
    w: World, receiver: Receiver, smtp: Inbox
) -> None:
    shop_with_a_flow(w)
    channels = [
        {"type": "webhook", "url": receiver.url + "/fail"},
        {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/closed", "timeout_seconds": 2},
        email_channel(smtp, password="wrong", timeout_seconds=3),
        email_channel(smtp, to=["ok@example.com"]),
    ]
    alerts.create(w.store, w.project, flow_rule("flow", 0.05, channels))
    got = alerts.check(w.store, w.project, "flow")
    d = got["deliveries"]
    assert [x["ok"] for x in d] == [False, False, False, True]
    assert d[0]["status"] == 500 and "ConnectError" in d[1]["error"] and d[2]["error"].startswith("SMTP")
    assert [m[1] for m in smtp.messages] == [["ok@example.com"]]
    assert alerts.log(w.store, w.project, {"rule": "flow"})["results"][0]["deliveries"] == d


def test_dau_down_week_over_week(w: World, receiver: Receiver) -> None:
    today = datetime.now(UTC).date()
    events = []
    for back in range(1, 15):  # 10 users a day the week before, 7 a day this week
        users = 7 if back <= 7 else 10
        events += [{"distinct_id": f"u{i}", "event": "$pageview", "ts": at(today - timedelta(days=back), 9 + i % 3)}
                   for i in range(users)]  # fmt: skip
        events += [
            {"distinct_id": "u0", "event": "$pageview", "ts": at(today - timedelta(days=back), 20)}
        ]  # twice
    events += [
        {"distinct_id": f"t{i}", "event": "$pageview", "ts": at(today, 0)} for i in range(50)
    ]  # today: ignored
    w.add(events)
    hook = [{"type": "webhook", "url": receiver.url + "/dau"}]
    dau = {"type": "metric", "series": {"event": "$pageview", "math": "uv"}, "threshold": 0.2}
    alerts.create(w.store, w.project, {"name": "dau", "condition": dau, "channels": hook})
    alerts.create(
        w.store, w.project, {"name": "dau_up", "condition": {**dau, "direction": "up"}, "channels": hook}
    )
    alerts.create(
        w.store, w.project, {"name": "dau_40", "condition": {**dau, "threshold": 0.4}, "channels": hook}
    )
    alerts.create(
        w.store,
        w.project,
        {
            "name": "events_today",
            "channels": hook,
            "condition": {
                **dau,
                "series": {"event": "$pageview"},
                "value": "last_day",
                "include_today": True,
                "direction": "up",
            },
        },
    )

    got = alerts.check(w.store, w.project, "dau")
    assert got["fired"] and got["value"] == pytest.approx(-0.3)
    assert (got["details"]["current"], got["details"]["previous"]) == (7, 10)
    assert got["details"]["current_period"] == [
        str(today - timedelta(days=7)),
        str(today - timedelta(days=1)),
    ]
    assert got["details"]["previous_period"] == [
        str(today - timedelta(days=14)),
        str(today - timedelta(days=8)),
    ]
    assert not alerts.check(w.store, w.project, "dau_up")["fired"]
    assert not alerts.check(w.store, w.project, "dau_40")["fired"]
    # today's 50 events against the same weekday last week (8 events: 7 users, u0 twice)
    today_vs = alerts.check(w.store, w.project, "events_today")
    assert today_vs["fired"] and today_vs["value"] == pytest.approx(50 / 8 - 1)
    assert [r["json"]["rule"] for r in receiver.requests] == ["dau", "events_today"]
    assert receiver.requests[0]["json"]["details"]["change"] == pytest.approx(-0.3)


def test_dry_run_and_cooldown(w: World, receiver: Receiver) -> None:
    shop_with_a_flow(w)
    alerts.create(w.store, w.project, flow_rule("flow", 0.05, [{"type": "webhook", "url": receiver.url}],
                                                cooldown_minutes=60))  # fmt: skip
    dry = alerts.check(w.store, w.project, "flow", dry_run=True)
    assert dry["fired"] and dry["skipped"] == "dry_run" and dry["log_id"] is None
    assert receiver.requests == [] and alerts.log(w.store, w.project, {})["total"] == 0
    first = alerts.check(w.store, w.project, "flow", trigger="schedule")
    again = alerts.check(w.store, w.project, "flow", trigger="schedule")
    manual = alerts.check(w.store, w.project, "flow")
    assert first["log_id"] and again["skipped"] == "cooldown" and again["log_id"] is None and manual["log_id"]
    assert len(receiver.requests) == 2
    assert [e["trigger"] for e in alerts.log(w.store, w.project, {})["results"]] == ["manual", "schedule"]
    assert alerts.log(w.store, w.project, {"limit": 1, "offset": 1})["results"][0]["id"] == first["log_id"]


def test_scheduled_checks_and_recomputes(w: World, receiver: Receiver) -> None:
    from userloop.schedule import Scheduler, set_current

    shop_with_a_flow(w)
    sched = Scheduler(w.store, w.writer)
    sched.start()
    set_current(sched)
    try:
        layers.update(w.store, w.project, {"name": "life", "schedule": "cron:0 3 * * *"})
        alerts.create(w.store, w.project, flow_rule("flow", 0.05, [{"type": "webhook", "url": receiver.url}],
                                                    schedule="interval:1"))  # fmt: skip
        assert sched.job_ids() == [f"alert:{w.project.id}:flow", f"layer:{w.project.id}:life"]
        receiver.wait(1)
        time.sleep(2.5)  # two more runs: inside the cooldown, nothing more is sent
        assert len(receiver.requests) == 1
        assert receiver.requests[0]["json"]["rule"] == "flow"
        assert alerts.log(w.store, w.project, {})["results"][0]["trigger"] == "schedule"
        alerts.update(w.store, w.project, {"name": "flow", "enabled": False})
        assert sched.job_ids() == [f"layer:{w.project.id}:life"]
    finally:
        sched.stop()
        set_current(None)


# -- definitions --------------------------------------------------------------------------------


def error_of(fn: Any, *args: Any) -> UserloopError:
    with pytest.raises(UserloopError) as info:
        fn(*args)
    return info.value


FLOW = {"type": "layer_flow", "model": "life", "from": ["buying"], "to": ["sleeping"], "threshold": 0.05}
METRIC = {"type": "metric", "series": {"event": "purchase", "math": "uv"}, "threshold": 0.2}


@pytest.mark.parametrize(
    ("definition", "code", "field"),
    [
        ({"name": "a", "condition": {**FLOW, "model": "nope"}}, "unknown_layer_model", "condition.model"),
        (
            {"name": "a", "condition": {**FLOW, "to": ["sleeping", "asleep"]}},
            "unknown_layer",
            "condition.to[1]",
        ),
        ({"name": "a", "condition": {**FLOW, "from": []}}, "invalid_field", "condition.from"),
        ({"name": "a", "condition": {**FLOW, "threshold": 5}}, "invalid_field", "condition.threshold"),
        ({"name": "a", "condition": {**FLOW, "type": "weather"}}, "invalid_field", "condition.type"),
        ({"name": "a", "condition": {"model": "life"}}, "missing_field", "condition.type"),
        (
            {"name": "a", "condition": {**METRIC, "series": {"event": "nope"}}},
            "unknown_event",
            "condition.series.event",
        ),
        (
            {"name": "a", "condition": {**METRIC, "series": {"event": "purchase", "math": "sum"}}},
            "property_required",
            "condition.series.property",
        ),
        (
            {"name": "a", "condition": {**METRIC, "filters": [{"property": "colour", "value": "red"}]}},
            "unknown_property",
            "condition.filters[0].property",
        ),
        (
            {"name": "a", "condition": {**METRIC, "direction": "sideways"}},
            "invalid_field",
            "condition.direction",
        ),
        (
            {"name": "a", "condition": METRIC, "channels": [{"type": "webhook", "url": "ftp://x"}]},
            "invalid_url",
            "channels[0].url",
        ),
        (
            {"name": "a", "condition": METRIC, "channels": [{"type": "email", "to": ["ops"]}]},
            "invalid_email",
            "channels[0].to[0]",
        ),
        (
            {"name": "a", "condition": METRIC, "channels": [{"type": "sms", "to": "1"}]},
            "invalid_field",
            "channels[0].type",
        ),
        (
            {"name": "a", "condition": METRIC, "channels": [{"url": "http://x"}]},
            "missing_field",
            "channels[0].type",
        ),
        ({"name": "a", "condition": METRIC, "schedule": "interval:0"}, "invalid_schedule", "schedule"),
        ({"name": "a", "condition": METRIC, "cooldown_minutes": -1}, "invalid_field", "cooldown_minutes"),
        ({"name": "log", "condition": METRIC}, "invalid_name", "name"),
        ({"name": "a"}, "missing_field", "condition"),
    ],
)
def test_invalid_rules_name_the_field_and_save_nothing(
    w: World, definition: dict[str, Any], code: str, field: str
) -> None:
    w.add(
        [{"distinct_id": "a", "event": "purchase", "ts": at(date(2024, 5, 1)), "properties": {"amount": 1}}]
    )
    layers.create(w.store, w.project, {"name": "life", "kind": "lifecycle"})
    err = error_of(alerts.create, w.store, w.project, definition)
    assert (err.code, err.field, err.status) == (code, field, 400), err.message
    assert alerts.list_rules(w.store, w.project) == {"results": []}


def test_update_delete_and_models_in_use(w: World) -> None:
    w.add(
        [{"distinct_id": "a", "event": "purchase", "ts": at(date(2024, 5, 1)), "properties": {"amount": 1}}]
    )
    layers.create(w.store, w.project, {"name": "life", "kind": "lifecycle"})
    alerts.create(
        w.store, w.project, {"name": "flow", "condition": FLOW, "channels": [email_channel(Inbox(port=25))]}
    )
    err = error_of(alerts.create, w.store, w.project, {"name": "flow", "condition": METRIC})
    assert (err.code, err.status) == ("alert_rule_exists", 409)
    err = error_of(layers.delete, w.store, w.project, "life")
    assert (err.code, err.status) == ("layer_model_in_use", 409) and "flow" in err.message
    err = error_of(
        alerts.update, w.store, w.project, {"name": "flow", "condition": {**FLOW, "threshold": -1}}
    )
    assert err.field == "condition.threshold"
    got = alerts.update(w.store, w.project, {"name": "flow", "condition": METRIC, "cooldown_minutes": 5})
    assert got["condition"]["type"] == "metric" and got["cooldown_minutes"] == 5
    stored = w.store.query("SELECT channels FROM alert_rules")[0]["channels"]
    assert json.loads(stored)[0]["password"] == "s3cret"  # kept for delivery, never shown
    assert layers.delete(w.store, w.project, "life") == {"deleted": "life"}  # no longer used
    assert alerts.delete(w.store, w.project, "flow") == {"deleted": "flow"}
    assert error_of(alerts.get, w.store, w.project, "flow").status == 404
