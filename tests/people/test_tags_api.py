"""Tags over real HTTP (secret key): CRUD and 400s naming the field, CSV import (multipart and
text/csv) and PUT values with unknown ids and bad rows reported, coverage and distribution exactly,
the catalogue tree, and the same actions through the admin API the CLI uses while a server runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from userloop.backend import RemoteBackend
from userloop.errors import UserloopError


def send(server: LiveServer, batch: list[dict[str, Any]]) -> None:
    resp = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(server.project.write_key, ""))
    assert resp.status_code == 200 and resp.json()["rejected"] == [], resp.text


def buy(user: str, day: int, amount: Any, n: int) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "buy", "messageId": f"b{n}",
            "timestamp": f"2026-03-{day:02d}T10:00:00Z", "properties": {"amount": amount}}


class Api:
    def __init__(self, server: LiveServer):
        self.server = server
        self.client = httpx.Client(base_url=server.url,
                                   headers={"Authorization": f"Bearer {server.project.secret_key}"})

    def __call__(self, method: str, path: str = "", status: int = 200, **kw: Any) -> Any:
        resp = self.client.request(method, "/api/tags" + path, **kw)
        assert resp.status_code == status, resp.text
        return resp.json()

    def error(self, method: str, path: str, status: int = 400, **kw: Any) -> tuple[str, str | None]:
        body = self(method, path, status, **kw)
        assert set(body) == {"error"} and body["error"]["message"]
        return body["error"]["code"], body["error"].get("field")

    def values(self, tag: str) -> dict[str, str]:
        rows = self.server.store.query(
            "SELECT i.distinct_id, v.value FROM tag_values v JOIN identities i USING (project_id, person_id) "
            "WHERE v.project_id = ? AND v.tag = ? ORDER BY 1", [self.server.project.id, tag])
        return {r["distinct_id"]: r["value"] for r in rows}


@pytest.fixture
def api(live_server: LiveServer) -> Api:
    send(live_server, [buy("u1", 1, 10, 1), buy("u1", 2, 5, 2), buy("u2", 3, 7, 3), buy("u3", 4, 1, 4),
                       {"type": "track", "userId": "u4", "event": "pv", "messageId": "p1",
                        "timestamp": "2026-03-04T10:00:00Z"}])
    return Api(live_server)


def test_crud_over_http(api: Api) -> None:
    assert httpx.get(api.server.url + "/api/tags").status_code == 401
    wrong = httpx.get(api.server.url + "/api/tags", headers={"Authorization": f"Bearer {api.server.project.write_key}"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "write_key_cannot_read")
    spend = {"name": "spend", "kind": "semi_dynamic", "category": "Consumption / Orders", "description": "all time",
             "rule": {"aggregate": "sum", "event": "buy", "property": "amount"}}
    made = api("POST", "", 201, json=spend)
    assert (made["category"], made["source"], made["persons"], made["compute"]["added"]) == ("consumption/orders", "rule", 3, 3)
    assert api.values("spend") == {"u1": "15", "u2": "7", "u3": "1"}
    assert api.error("POST", "", 409, json=spend) == ("tag_exists", "name")
    for body, field in [
        ({**spend, "name": "x", "rule": {**spend["rule"], "aggregate": "mean"}}, "rule.aggregate"),
        ({**spend, "name": "x", "rule": {**spend["rule"], "window": {"last_days": "ninety"}}}, "rule.window.last_days"),
        ({**spend, "name": "x", "schedule": "hourly"}, "schedule"),
        ({**spend, "name": "x", "kind": "dynamic", "rule": None, "sql": "SELECT * FROM projects"}, "sql"),
    ]:
        assert api.error("POST", "", json=body)[1] == field
    assert api.error("POST", "", content=b"[1, 2]") == ("invalid_body", None)
    assert api.error("POST", "", content=b"{nope") == ("malformed_json", None)
    assert api("GET")["tags"][0]["name"] == "spend" and len(api("GET")["tags"]) == 1
    assert api("GET", "/spend")["rule"] == spend["rule"]
    assert api.error("GET", "/nope", 404) == ("tag_not_found", "name")
    # PATCH changes fields (and recomputes); PUT replaces the definition
    patched = api("PATCH", "/spend", json={"rule": {**spend["rule"], "window": {"date_from": "2026-03-02",
                                                                                "date_to": "2026-03-03"}}})
    assert patched["description"] == "all time" and patched["compute"]["removed"] == 1
    assert api.values("spend") == {"u1": "5", "u2": "7"}
    replaced = api("PUT", "/spend", json={"kind": "dynamic", "rule": {"aggregate": "count", "event": "buy"}})
    assert (replaced["kind"], replaced["category"], replaced["description"]) == ("dynamic", "activity", "")
    assert api.values("spend") == {"u1": "2", "u2": "1", "u3": "1"}
    assert api.error("PUT", "/spend", json={"name": "other", "kind": "static"}) == ("invalid_field", "name")
    send(api.server, [buy("u3", 5, 2, 5)])
    computed = api("POST", "/spend/compute")
    assert (computed["changed"], computed["history_rows"]) == (1, 1)
    history = api("GET", "/spend/history", params={"person": "u3"})
    assert [h["value"] for h in history["history"]] == ["1", "2"]
    assert api.error("GET", "/spend/history", params={"person": "u3", "at": "yesterday"}) == ("invalid_field", "at")
    deleted = api("DELETE", "/spend")
    assert (deleted["values"], deleted["history_rows"]) == (3, 4)
    assert api("GET")["tags"] == [] and api.values("spend") == {}
    assert api.server.store.query("SELECT count(*) AS n FROM tag_history") == [{"n": 0}]


def test_csv_import_and_put_values(api: Api) -> None:
    api("POST", "", 201, json={"name": "gender", "kind": "static"})
    csv = ("distinct_id,value,note\n"
           "u1,male,x\n"
           "ghost,female,x\n"  # unknown id
           "u2,female\n"  # 2 fields of 3
           ",female,x\n"  # empty id
           "u3,,x\n"  # empty value
           "u2,female,x\n"
           "u1,female,later rows win\n")
    report = api("POST", "/gender/import", content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert report == {
        "tag": "gender", "rows": 7, "stored": 2, "removed": 0, "persons": 2,
        "unknown": {"count": 1, "sample": ["ghost"]},
        "rejected": {"count": 3, "rows": [{"line": 4, "error": "expected 3 fields, found 2"},
                                          {"line": 5, "error": "distinct_id is empty"},
                                          {"line": 6, "error": "value is empty"}]},
    }
    assert api.values("gender") == {"u1": "female", "u2": "female"}
    assert api.error("POST", "/gender/import", content=b"id,value\n1,2\n",
                     headers={"Content-Type": "text/csv"}) == ("invalid_csv", "file")
    assert api.error("POST", "/gender/import", content=b"\xff\xfe", headers={"Content-Type": "text/csv"}) == (
        "invalid_csv", "file")
    # multipart upload with replace: u2 is no longer in the file, so it loses its value
    files = {"file": ("g.csv", b"distinct_id,value\r\nu1,male\r\nu3,female\r\n", "text/csv")}
    report = api("POST", "/gender/import", files=files, data={"replace": "true"})
    assert (report["stored"], report["persons"]) == (2, 2)
    assert api.values("gender") == {"u1": "male", "u3": "female"}
    # PUT values: by distinct id or person id; null removes; bad items reported by index
    u2 = api.server.store.query("SELECT person_id FROM identities WHERE distinct_id = 'u2'")[0]["person_id"]
    report = api("PUT", "/gender/values", json=[
        {"person_id": u2, "value": "female"},
        {"distinct_id": "u1", "value": None},
        {"distinct_id": "u4", "value": 3.0},
        {"distinct_id": "u3"},
        {"value": "x"},
        {"distinct_id": "u3", "value": {"a": 1}},
        {"distinct_id": "u3", "value": "x", "extra": 1},
        {"person_id": "nobody", "value": "x"},
    ])
    assert report["rejected"] == {"count": 4, "rows": [
        {"index": 3, "error": "value is missing (null removes the value)"},
        {"index": 4, "error": "give one of distinct_id or person_id"},
        {"index": 5, "error": "value must be text, a number, a boolean or null"},
        {"index": 6, "error": "unknown field 'extra'"}]}
    assert (report["unknown"], report["removed"], report["stored"]) == ({"count": 1, "sample": ["nobody"]}, 1, 2)
    assert api.values("gender") == {"u2": "female", "u3": "female", "u4": "3"}
    # values follow distinct ids through a merge; the later set wins for the merged person
    send(api.server, [{"type": "alias", "userId": "u3", "previousId": "u2", "messageId": "al1"}])
    api("PUT", "/gender/values", json={"values": [{"distinct_id": "u3", "value": "male"}]})
    assert api.values("gender") == {"u2": "male", "u3": "male", "u4": "3"}  # u2 and u3: one person now
    assert api.error("PUT", "/gender/values", json={"values": "u1"}) == ("invalid_values", "values")
    api("POST", "", 201, json={"name": "n", "kind": "dynamic", "rule": {"aggregate": "count"}})
    assert api.error("PUT", "/n/values", json=[]) == ("tag_not_settable", "name")
    assert api.error("POST", "/nope/import", 404, content=b"distinct_id,value\n") == ("tag_not_found", "name")


def test_coverage_and_distribution_are_exact(api: Api) -> None:
    send(api.server, [buy(f"v{i}", 5, i, 100 + i) for i in range(6)])  # 10 persons now (u1-u4, v0-v5)
    api("POST", "", 201, json={"name": "tier", "kind": "static", "category": "member/level"})
    api("PUT", "/tier/values", json=[{"distinct_id": d, "value": v} for d, v in
                                     [("u1", "gold"), ("u2", "silver"), ("u3", "gold"), ("u4", "bronze"),
                                      ("v0", "silver"), ("v1", "gold"), ("v2", "2")]])
    cov = api("GET", "/tier/coverage", params={"limit": 2})
    assert cov == {
        "tag": "tier", "kind": "static", "persons": 10, "with_value": 7, "coverage": 0.7, "distinct_values": 4,
        "distribution": [{"value": "gold", "persons": 3, "share": 3 / 7}, {"value": "silver", "persons": 2, "share": 2 / 7}],
        "other": {"values": 2, "persons": 2},
        "numeric": {"persons": 1, "min": 2.0, "max": 2.0, "avg": 2.0, "sum": 2.0, "p25": 2.0, "median": 2.0, "p75": 2.0},
    }
    # ties in the distribution are ordered by value: "2" and "bronze" have one person each
    assert [d["value"] for d in api("GET", "/tier/coverage")["distribution"]] == ["gold", "silver", "2", "bronze"]
    api("POST", "", 201, json={"name": "spend", "kind": "semi_dynamic", "category": "consumption",
                               "rule": {"aggregate": "sum", "event": "buy", "property": "amount"}})
    amounts = [15.0, 7.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # u1, u2, u3, v0..v5
    num = api("GET", "/spend/coverage")["numeric"]
    import pandas as pd

    s = pd.Series(amounts)
    assert num == pytest.approx({"persons": 9, "min": 0.0, "max": 15.0, "avg": s.mean(), "sum": s.sum(),
                                 "p25": s.quantile(0.25), "median": s.median(), "p75": s.quantile(0.75)})
    assert api.error("GET", "/spend/coverage", params={"limit": "0"}) == ("bad_parameter", "limit")
    tree = api("GET", "/catalogue")
    assert tree["count"] == 2
    top = {c["name"]: c for c in tree["children"]}
    assert list(top) == ["basic info", "member", "consumption", "activity", "temporary"]
    assert (top["member"]["count"], top["member"]["tags"], top["basic info"]["count"]) == (1, [], 0)
    level = top["member"]["children"][0]
    assert (level["path"], level["count"]) == ("member/level", 1)
    assert level["tags"] == [{"name": "tier", "kind": "static", "source": "manual", "description": "", "persons": 7}]
    assert top["consumption"]["tags"][0]["persons"] == 9
    listed = api("GET", "", params={"category": "member"})["tags"]
    assert [t["name"] for t in listed] == ["tier"]
    assert [t["name"] for t in api("GET", "", params={"kind": "semi_dynamic"})["tags"]] == ["spend"]


def test_admin_actions_as_the_cli_uses_them(api: Api) -> None:
    remote = RemoteBackend(api.server.url, api.server.admin_token)
    pid = api.server.project.id
    try:
        made = remote.call("tags.create", pid, {"name": "buys", "kind": "dynamic",
                                                "rule": {"aggregate": "count", "event": "buy"}, "schedule": "cron:0 3 * * *"})
        assert made["persons"] == 3 and isinstance(made["computed_at"], str)
        assert remote.call("tags.coverage", pid, {"name": "buys"})["distribution"] == [
            {"value": "1", "persons": 2, "share": 2 / 3}, {"value": "2", "persons": 1, "share": 1 / 3}]
        with pytest.raises(UserloopError) as exc:
            remote.call("tags.update", pid, {"name": "buys", "schedule": "cron:0 25 * * *"})
        assert (exc.value.code, exc.value.field, exc.value.status) == ("invalid_schedule", "schedule", 400)
        assert remote.call("tags.get", pid, {"name": "buys"})["schedule"] == "cron:0 3 * * *"
    finally:
        remote.close()
