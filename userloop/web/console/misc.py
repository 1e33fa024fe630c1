"""Pages for capabilities that arrive in later releases.

- **Campaigns** (reach, evaluation, coupons, strategy library): a placeholder in the navigation.
- **Recommendations**: shown when ``recommend.*`` actions are registered. The page lists them;
  ``recommend.preview`` (a person's feed with reasons) and ``recommend.stats`` (online
  metrics per recommender) get a form each; until then it says the capability is not available.
  Results are shown as tables: each list of objects in the answer becomes one.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from userloop.actions import action_names
from userloop.errors import UserloopError
from userloop.web.console.base import Page, page

FEED, METRICS = "recommend.preview", "recommend.stats"  # a feed with reasons (no impression); online CTR


@page("/p/{pid:int}/campaigns")
def campaigns(pg: Page) -> Response:
    return pg.render("campaigns.html", title=pg.t("nav.campaigns"))


@page("/p/{pid:int}/tracker-demo")
def tracker_demo(pg: Page) -> Response:
    """The web tracker's demo page (``/static/tracker-demo.html``) sending to this project."""
    from urllib.parse import urlencode

    from starlette.responses import RedirectResponse

    assert pg.project is not None
    return RedirectResponse("/static/tracker-demo.html?" + urlencode({"key": pg.project.write_key}), 303)


def tables_of(value: Any, path: str = "") -> list[tuple[str, list[str], list[list[Any]]]]:
    """Every list of objects inside ``value``, as (path, columns, rows)."""
    out: list[tuple[str, list[str], list[list[Any]]]] = []
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        cols: list[str] = []
        for x in value:
            cols += [k for k in x if k not in cols]
        rows = [[x.get(c) if not isinstance(x.get(c), dict | list) else json.dumps(x.get(c), ensure_ascii=False)
                 for c in cols] for x in value]  # fmt: skip
        out.append((path or "results", cols, rows))
    elif isinstance(value, dict):
        for k, v in value.items():
            out += tables_of(v, f"{path}.{k}" if path else k)
    return out


@page("/p/{pid:int}/recommendations")
def recommendations(pg: Page) -> Response:
    available = [n for n in action_names() if n.startswith("recommend.")]
    result, error, ran = None, None, None
    person = pg.params.get("person", "").strip()
    if available and pg.params.get("run") in (FEED, METRICS) and pg.params["run"] in available:
        ran = pg.params["run"]
        params: dict[str, Any] = {"distinct_id": person, "n": 10} if ran == FEED else {}
        try:
            result = pg.action(ran, params)
        except UserloopError as exc:
            error = exc
    return pg.render(
        "recommendations.html", title=pg.t("nav.recommendations"), available=available, feed=FEED in available,
        metrics=METRICS in available, person=person, result=result, error=error, ran=ran,
        tables=tables_of(result) if result is not None else [],
    )  # fmt: skip
