"""Layer (stratification) and alert pages, through the ``layers.*`` and ``alerts.*`` actions.

A layer model's page shows its layer sizes and the migration matrix between two dates (who moved
from which layer to which, from the model's history), which downloads as CSV. Alert rules are
listed with the log of fired alerts; a rule is created from its JSON definition
(``docs/people/alerts.md`` once written; ``userloop/people/alerts/model.py``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from starlette.responses import Response

from userloop.errors import UserloopError
from userloop.web.console import catalog, results
from userloop.web.console.analysis import csv_response, today
from userloop.web.console.base import Page, page, redirect

LAYER_EXAMPLE = json.dumps({"name": "rfm", "kind": "rfm", "description": "RFM over the last 90 days"})
ALERT_EXAMPLE = json.dumps(
    {"name": "dau_drop", "description": "daily active users fell by 20%",
     "condition": {"type": "metric", "series": {"event": "$pageview", "math": "uv"}, "period_days": 7,
                   "direction": "down", "threshold": 0.2},
     "channels": [{"type": "webhook", "url": "http://127.0.0.1:9000/hook"}], "schedule": "cron:0 9 * * *"},
    indent=1,
)  # fmt: skip


def _json_form(pg: Page, field: str) -> dict[str, Any]:
    assert pg.form is not None
    try:
        value = json.loads(str(pg.form.get(field) or ""))
    except ValueError as exc:
        raise UserloopError("malformed_json", f"the definition is not valid JSON: {exc}", field) from exc
    if not isinstance(value, dict):
        raise UserloopError("malformed_json", "the definition is a JSON object", field)
    return value


@page("/p/{pid:int}/layers")
def layers_page(pg: Page) -> Response:
    models = pg.action("layers.list")["results"]
    return pg.render("layers.html", title=pg.t("nav.layers"), models=models, example=LAYER_EXAMPLE)


@page("/p/{pid:int}/layers", methods=("POST",), role="analyst")
def layer_create(pg: Page) -> Response:
    assert pg.project is not None
    created = pg.action("layers.create", _json_form(pg, "definition"))
    pg.action("layers.compute", {"name": created["name"]})
    catalog.forget(pg.store, pg.project.id)
    return redirect(pg.url(f"/layers/{created['name']}"))


def migration(pg: Page, name: str) -> tuple[dict[str, Any], results.Table]:
    end = today(pg)
    d_from = pg.params.get("from") or (end - timedelta(days=7)).isoformat()
    d_to = pg.params.get("to") or end.isoformat()
    m = pg.action("layers.migration", {"name": name, "from": d_from, "to": d_to})
    layers = m["layers"]
    counts = {(c["from"], c["to"]): c["count"] for c in m["matrix"]}
    table = results.Table("migration", "table.migration", [
        results.Column("from", "col.from_layer"), *[results.Column(b, b, results.INT, literal=True) for b in layers],
        results.Column("total", "col.total", results.INT),
    ], [[a, *[counts.get((a, b), 0) for b in layers], m["from_totals"].get(a, 0)] for a in layers])  # fmt: skip
    return m, table


@page("/p/{pid:int}/layers/{name:str}")
def layer_page(pg: Page) -> Response:
    name = pg.request.path_params["name"]
    model = pg.action("layers.get", {"name": name})
    m, table = migration(pg, name)
    counts = model.get("counts") or {}
    option = results._axis(list(counts), [{"name": pg.t("col.persons"), "data": list(counts.values())}], "bar")
    return pg.render("layer.html", title=name, model=model, m=m, table=table, option=option,
                     definition=json.dumps(model, ensure_ascii=False, indent=1, default=str))  # fmt: skip


@page("/p/{pid:int}/layers/{name:str}/migration.csv")
def layer_csv(pg: Page) -> Response:
    name = pg.request.path_params["name"]
    m, table = migration(pg, name)
    return csv_response(table.csv(pg.t), f"migration-{name}-{m['from']}-{m['to']}.csv")


@page("/p/{pid:int}/layers/{name:str}/{op:str}", methods=("POST",), role="analyst")
def layer_op(pg: Page) -> Response:
    assert pg.project is not None
    name, op = pg.request.path_params["name"], pg.request.path_params["op"]
    if op == "compute":
        pg.action("layers.compute", {"name": name})
        return redirect(pg.url(f"/layers/{name}"))
    if op == "delete":
        pg.action("layers.delete", {"name": name})
        catalog.forget(pg.store, pg.project.id)
        return redirect(pg.url("/layers"))
    raise UserloopError("bad_operation", f"unknown operation {op!r}", "op", status=404)


# -- alerts -------------------------------------------------------------------------------------------
@page("/p/{pid:int}/alerts")
def alerts_page(pg: Page) -> Response:
    rules = pg.action("alerts.list")["results"]
    log = pg.action("alerts.log", {"limit": 50})
    return pg.render("alerts.html", title=pg.t("nav.alerts"), rules=rules, log=log, example=ALERT_EXAMPLE,
                     checked=None)  # fmt: skip


@page("/p/{pid:int}/alerts", methods=("POST",), role="analyst")
def alert_create(pg: Page) -> Response:
    pg.action("alerts.create", _json_form(pg, "definition"))
    return redirect(pg.url("/alerts"))


@page("/p/{pid:int}/alerts/{name:str}/{op:str}", methods=("POST",), role="analyst")
def alert_op(pg: Page) -> Response:
    name, op = pg.request.path_params["name"], pg.request.path_params["op"]
    if op == "check":
        checked = pg.action("alerts.check", {"name": name, "dry_run": True})
        rules = pg.action("alerts.list")["results"]
        log = pg.action("alerts.log", {"limit": 50})
        return pg.render("alerts.html", title=pg.t("nav.alerts"), rules=rules, log=log, example=ALERT_EXAMPLE,
                         checked=checked, checked_name=name)  # fmt: skip
    if op == "delete":
        pg.action("alerts.delete", {"name": name})
        return redirect(pg.url("/alerts"))
    raise UserloopError("bad_operation", f"unknown operation {op!r}", "op", status=404)
