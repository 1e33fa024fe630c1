"""Segment pages: the list, the visual rule builder with a live count, a segment's members and
history, recompute, delete and CSV export. Everything goes through the ``segments.*`` actions.

The builder (``static/console.js``) edits a rule tree of AND / OR groups whose items can be
negated (NOT), and posts it as JSON to ``/segments/preview`` after each change: the count shown is
``segments.preview``'s.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import FileResponse, JSONResponse, Response

from userloop.errors import UserloopError
from userloop.web.console import catalog
from userloop.web.console.base import Page, page, redirect

MEMBERS_SHOWN = 50


def builder_labels(pg: Page) -> dict[str, str]:
    keys = ("not", "all", "any", "group", "times", "in_last", "days", "value", "remove")
    kinds = ("person", "event", "no_event", "tag", "segment", "layer", "funnel", "aggregate")
    return {k: pg.t(f"builder.{k}") for k in keys} | {f"kind_{k}": pg.t(f"builder.kind_{k}") for k in kinds}


def builder_lists(pg: Page) -> dict[str, list[str]]:
    assert pg.project is not None
    cat = catalog.catalog(pg.store, pg.project.id)
    return {"events": cat.events, "person_properties": cat.person_properties, "tags": cat.tags,
            "segments": cat.segments, "layers": cat.layers}  # fmt: skip


@page("/p/{pid:int}/segments")
def segments_page(pg: Page) -> Response:
    assert pg.project is not None
    listing = pg.action("segments.list")["segments"]
    return pg.render(
        "segments.html", title=pg.t("nav.segments"), segments=listing, labels=builder_labels(pg),
        lists=builder_lists(pg), rule=pg.params.get("rule", ""), catalog=catalog.catalog(pg.store, pg.project.id),
    )  # fmt: skip


@page("/p/{pid:int}/segments/preview", methods=("POST",))
def preview(pg: Page) -> Response:
    """``{"rule": ...}`` -> ``{"count", "count_text"}``, or the error body with its status (JSON)."""
    try:
        body = json.loads(pg.body or b"{}")
        if not isinstance(body, dict) or "rule" not in body:
            raise UserloopError("missing_field", "send {\"rule\": ...}", "rule")
        result = pg.action("segments.preview", {"rule": body["rule"], "sample": 0})
    except ValueError as exc:
        return JSONResponse({"error": {"code": "malformed_json", "message": str(exc)}}, status_code=400)
    except UserloopError as exc:
        return JSONResponse(exc.to_dict(), status_code=exc.status)
    return JSONResponse({"count": result["count"], "count_text": pg.fmt.number(result["count"])})


@page("/p/{pid:int}/segments", methods=("POST",), role="analyst")
def create(pg: Page) -> Response:
    assert pg.form is not None and pg.project is not None
    f = pg.form
    try:
        rule = json.loads(str(f.get("rule") or ""))
    except ValueError as exc:
        raise UserloopError("malformed_json", pg.t("segments.rule_missing"), "rule") from exc
    params: dict[str, Any] = {"name": str(f.get("name") or "").strip(), "rule": rule,
                              "type": str(f.get("type") or "dynamic"),
                              "description": str(f.get("description") or "")}  # fmt: skip
    if schedule := str(f.get("schedule") or "").strip():
        params["schedule"] = schedule
    created = pg.action("segments.create", params)
    catalog.forget(pg.store, pg.project.id)
    return redirect(pg.url(f"/segments/{created['name']}", created="1"))


@page("/p/{pid:int}/segments/{name:str}")
def segment_page(pg: Page) -> Response:
    name = pg.request.path_params["name"]
    seg = pg.action("segments.get", {"name": name})
    members = pg.action("segments.members", {"name": name, "limit": MEMBERS_SHOWN})
    history = pg.action("segments.history", {"name": name, "limit": MEMBERS_SHOWN})
    notice = pg.t("segments.created") if pg.params.get("created") else None
    return pg.render(
        "segment.html", title=name, seg=seg, members=members, history=history, notice=notice,
        rule_json=json.dumps(seg.get("rule"), ensure_ascii=False),
    )  # fmt: skip


@page("/p/{pid:int}/segments/{name:str}/export.csv")
def export(pg: Page) -> Response:
    """The members as CSV (``segments.export`` writes the file; it is removed once sent)."""
    name = pg.request.path_params["name"]
    cat = builder_lists(pg)
    tmp = Path(tempfile.mkdtemp(prefix="userloop-export-"))
    out = tmp / "members.csv"
    pg.action("segments.export", {"name": name, "path": str(out), "format": "csv",
                                  "properties": cat["person_properties"][:20], "distinct_ids": True})  # fmt: skip

    def cleanup() -> None:
        out.unlink(missing_ok=True)
        tmp.rmdir()

    return FileResponse(out, media_type="text/csv; charset=utf-8", filename=f"segment-{name}.csv",
                        background=BackgroundTask(cleanup))  # fmt: skip


@page("/p/{pid:int}/segments/{name:str}/{op:str}", methods=("POST",), role="analyst")
def segment_op(pg: Page) -> Response:
    assert pg.project is not None
    name, op = pg.request.path_params["name"], pg.request.path_params["op"]
    if op == "compute":
        pg.action("segments.compute", {"name": name})
        return redirect(pg.url(f"/segments/{name}"))
    if op == "delete":
        pg.action("segments.delete", {"name": name})
        catalog.forget(pg.store, pg.project.id)
        return redirect(pg.url("/segments"))
    raise UserloopError("bad_operation", f"unknown operation {op!r}", "op", status=404)
