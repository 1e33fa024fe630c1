"""People pages: the user list (``persons.list``), a person's portrait (``persons.get``,
``persons.merges``) and the tag catalogue (``tags.catalogue``, ``tags.get``, ``tags.coverage``,
``tags.create``, ``tags.compute``, ``tags.delete``): the same operations as the REST API and the CLI.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from userloop.errors import UserloopError
from userloop.web.console import catalog
from userloop.web.console.base import Page, page, redirect
from userloop.web.console.forms import OPERATORS, _scalar

PAGE_SIZE = 50
SHOWN_PROPERTIES = 4


def _filters(pg: Page) -> list[dict[str, Any]]:
    prop = pg.params.get("f_prop", "").strip()
    if not prop:
        return []
    op = pg.params.get("f_op", "=")
    text = pg.params.get("f_val", "")
    value: Any = None
    if op in ("in", "not_in"):
        value = [_scalar(x.strip()) for x in text.split(",") if x.strip()]
    elif op not in ("is_set", "is_not_set"):
        value = _scalar(text.strip())
    return [{"property": prop, "operator": op, "value": value, "type": "person"}]


@page("/p/{pid:int}/people")
def people_list(pg: Page) -> Response:
    assert pg.project is not None
    number = pg.params.get("page", "1")
    page_no = int(number) if number.isdigit() and int(number) > 0 else 1
    params: dict[str, Any] = {"limit": PAGE_SIZE, "offset": (page_no - 1) * PAGE_SIZE, "filters": _filters(pg)}
    if search := pg.params.get("search", "").strip():
        params["search"] = search
    if segment := pg.params.get("segment", "").strip():
        params["segment"] = segment
    error: UserloopError | None = None
    listing: dict[str, Any] = {"total": 0, "results": []}
    try:
        listing = pg.action("persons.list", params)
    except UserloopError as exc:
        error = exc
    keys: list[str] = []
    for r in listing["results"]:
        for k in r["properties"]:
            if k not in keys:
                keys.append(k)
    pages = max(1, -(-int(listing["total"]) // PAGE_SIZE))
    query = {k: v for k, v in pg.params.items() if k != "page"}
    return pg.render(
        "people.html", title=pg.t("nav.users"), listing=listing, error=error, keys=keys[:SHOWN_PROPERTIES],
        page_no=page_no, pages=pages, query=query, operators=OPERATORS,
        catalog=catalog.catalog(pg.store, pg.project.id),
    )  # fmt: skip


@page("/p/{pid:int}/people/{person:path}")
def portrait(pg: Page) -> Response:
    person = pg.request.path_params["person"]
    data = pg.action("persons.get", {"id": person, "timeline": 50})
    merges = pg.action("persons.merges", {"id": person})
    return pg.render("portrait.html", title=person, p=data, merges=merges)


# -- tags ---------------------------------------------------------------------------------------------
@page("/p/{pid:int}/tags")
def tags_page(pg: Page) -> Response:
    tree = pg.action("tags.catalogue")
    return pg.render("tags.html", title=pg.t("nav.tags"), tree=tree, example=TAG_EXAMPLE)


TAG_EXAMPLE = json.dumps(
    {"name": "purchases_30d", "kind": "dynamic", "category": "consumption/orders",
     "description": "purchases in the last 30 days",
     "rule": {"aggregate": "count", "event": "purchase", "window": {"last_days": 30}}},
    indent=1,
)  # fmt: skip


@page("/p/{pid:int}/tags", methods=("POST",), role="analyst")
def tag_create(pg: Page) -> Response:
    assert pg.form is not None and pg.project is not None
    try:
        definition = json.loads(str(pg.form.get("definition") or ""))
    except ValueError as exc:
        raise UserloopError("malformed_json", f"the definition is not valid JSON: {exc}", "definition") from exc
    if not isinstance(definition, dict):
        raise UserloopError("malformed_json", "the definition is a JSON object", "definition")
    created = pg.action("tags.create", definition)
    catalog.forget(pg.store, pg.project.id)
    return redirect(pg.url(f"/tags/{created['name']}"))


@page("/p/{pid:int}/tags/{name:str}")
def tag_page(pg: Page) -> Response:
    name = pg.request.path_params["name"]
    tag = pg.action("tags.get", {"name": name})
    coverage = pg.action("tags.coverage", {"name": name})
    dist = coverage.get("distribution") or []
    option = {
        "tooltip": {"trigger": "item"},
        "series": [{"type": "pie", "radius": ["35%", "65%"],
                    "data": [{"name": str(d["value"]), "value": d["persons"]} for d in dist[:12]]}],
    }  # fmt: skip
    return pg.render("tag.html", title=name, tag=tag, coverage=coverage, option=option,
                     definition=json.dumps(tag, ensure_ascii=False, indent=1, default=str))  # fmt: skip


@page("/p/{pid:int}/tags/{name:str}/{op:str}", methods=("POST",), role="analyst")
def tag_op(pg: Page) -> Response:
    assert pg.project is not None
    name, op = pg.request.path_params["name"], pg.request.path_params["op"]
    if op == "compute":
        pg.action("tags.compute", {"name": name})
        return redirect(pg.url(f"/tags/{name}"))
    if op == "delete":
        pg.action("tags.delete", {"name": name})
        catalog.forget(pg.store, pg.project.id)
        return redirect(pg.url("/tags"))
    raise UserloopError("bad_operation", f"unknown operation {op!r}", "op", status=404)
