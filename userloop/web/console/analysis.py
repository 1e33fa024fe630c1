"""Analysis pages: ``/console/p/{pid}/analysis/{kind}`` for every kind ``POST /api/query`` answers.

Each page reads its form from the URL (``forms.py``), runs the query through
:func:`userloop.query.runner.run_query` (the function behind ``/api/query``), and shows the result
as charts and tables (``results.py``). Every table downloads as CSV from the same URL plus
``/csv``; a funnel's drop-off becomes a (static) segment with one click.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.responses import Response

from userloop.errors import UserloopError
from userloop.query.runner import run_query
from userloop.web.console import catalog, forms, results
from userloop.web.console.base import Page, page, redirect
from userloop.web.console.dashboards import list_dashboards
from userloop.web.console.nav import ANALYSES

FORM_KEYS = ("q",)  # besides the form fields: the raw query


def today(pg: Page) -> Any:
    assert pg.project is not None
    return datetime.now(ZoneInfo(pg.project.timezone)).date()


def form_params(pg: Page, source: dict[str, str] | None = None) -> dict[str, str]:
    """The form parameters of the URL (or of a saved chart), without paging or table choices."""
    params = dict(pg.params) if source is None else dict(source)
    return {k: v for k, v in params.items() if k not in ("table", "csrf_token")}


def run(pg: Page, kind: str, params: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(query, result) of an analysis form, through the same function as ``POST /api/query``."""
    if kind not in ANALYSES:
        raise UserloopError("unknown_kind", f"no analysis named {kind!r}", "kind", status=404)
    assert pg.project is not None
    cat = catalog.catalog(pg.store, pg.project.id)
    query = forms.build(kind, pg.project.id, params, cat.events, today(pg))
    return query, run_query(pg.store, pg.project, json.dumps(query).encode())


@page("/p/{pid:int}/analysis/{kind:str}")
def analysis_page(pg: Page) -> Response:
    assert pg.project is not None
    kind = pg.request.path_params["kind"]
    params = form_params(pg)
    cat = catalog.catalog(pg.store, pg.project.id)
    form = forms.form(kind, cat.events, params)
    query: dict[str, Any] | None = None
    view, error = None, None
    try:
        query, result = run(pg, kind, params)
        view = results.present(kind, result, query, params.get("chart", "line"), today(pg))
    except UserloopError as exc:
        if exc.status == 404:
            raise
        error = exc
        if query is None:
            query = {}
    if query.get("date_from") and not form.values.get("date_from"):
        form.values["date_from"], form.values["date_to"] = query["date_from"], query["date_to"]
    qs = urlencode(params)
    return pg.render(
        "analysis.html", status=error.status if error else 200, title=pg.t(f"kind.{kind}"), kind=kind, form=form, query=query, view=view, error=error,
        catalog=cat, qs=qs, csv_base=pg.url(f"/analysis/{kind}/csv"), params=params,
        dashboards=list_dashboards(pg.store, pg.project.id) if pg.can("analyst") else [],
    )


@page("/p/{pid:int}/analysis/{kind:str}/csv")
def analysis_csv(pg: Page) -> Response:
    kind = pg.request.path_params["kind"]
    query, result = run(pg, kind, form_params(pg))
    table = results.csv_table(kind, result, query, pg.params.get("table"))
    return csv_response(table.csv(pg.t), f"{kind}-{table.id}-{query['date_from']}-{query['date_to']}.csv")


def csv_response(text: str, filename: str) -> Response:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in filename)
    return Response(
        "\ufeff" + text,  # a BOM, so spreadsheet programs read UTF-8 (Chinese) text correctly
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )


@page("/p/{pid:int}/analysis/funnel/dropoff", methods=("POST",), role="analyst")
def funnel_dropoff(pg: Page) -> Response:
    """A static segment of the persons who reached step ``step`` of the funnel and not the next."""
    assert pg.form is not None
    try:
        query = json.loads(str(pg.form.get("query") or ""))
        step = int(str(pg.form.get("step") or ""))
    except ValueError as exc:
        raise UserloopError("bad_parameter", "query and step are required", "query") from exc
    rule: dict[str, Any] = {
        "kind": "funnel", "steps": query["steps"], "dropped_after_step": step,
        "window_seconds": query.get("window_seconds", 86400),
        "date_from": query["date_from"], "date_to": query["date_to"],
    }  # fmt: skip
    if query.get("filters"):
        rule["filters"] = query["filters"]
    name = str(pg.form.get("name") or "").strip()
    created = pg.action("segments.create", {
        "name": name, "type": "static", "rule": rule,
        "description": pg.t("funnel.dropoff_description", step=step, date_from=query["date_from"],
                            date_to=query["date_to"]),
    })  # fmt: skip
    assert pg.project is not None
    catalog.forget(pg.store, pg.project.id)
    return redirect(pg.url(f"/segments/{created['name']}", created="1"))
