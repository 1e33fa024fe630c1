"""Pages for capabilities that arrive in later releases.

- **Campaigns** (reach, evaluation, coupons, strategy library): a placeholder in the navigation.
- **Recommendations**: shown when ``recommend.*`` actions are registered. The page lists them;
  ``recommend.preview`` (a person's feed with reasons) and ``recommend.stats`` (online
  metrics per recommender) get a form each; until then it says the capability is not available.
  Results are shown as tables: each list of objects in the answer becomes one.
  ``recommend.evaluations`` (the latest offline evaluation per split) is shown as a table per split
  (best NDCG@10 highlighted) and a bar chart of NDCG@10; analysts and admins run
  ``recommend.evaluate`` from a form (``POST /recommendations/evaluate``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from userloop.actions import action_names
from userloop.errors import UserloopError
from userloop.web.console import results
from userloop.web.console.base import Page, page, redirect

FEED, METRICS = "recommend.preview", "recommend.stats"  # a feed with reasons (no impression); online CTR
EVALUATIONS, EVALUATE = "recommend.evaluations", "recommend.evaluate"  # offline metrics: stored; run now
SPLITS = {"loo": "recommend.split_loo", "time": "recommend.split_time"}
METRIC_LABELS = {
    "ndcg@10": "recommend.m_ndcg", "hr@10": "recommend.m_hr", "recall@10": "recommend.m_recall",
    "coverage": "recommend.m_coverage", "train_s": "recommend.m_train_s",
}  # fmt: skip
BEST_COLOR = "#1a8d5f"


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


def offline(pg: Page) -> list[dict[str, Any]]:
    """The latest evaluation per split, each with its NDCG@10 chart and metric labels."""
    out = []
    for e in pg.action(EVALUATIONS)["evaluations"]:
        names = [r["recommender"] for r in e["rows"]]
        data = [{"value": r.get("ndcg@10"), **({"itemStyle": {"color": BEST_COLOR}} if r["recommender"] == e["best"] else {})}
                for r in e["rows"]]  # fmt: skip
        option = results._axis(names, [{"name": "NDCG@10", "data": data}], "bar")
        option["xAxis"]["axisLabel"] = {"interval": 0, "rotate": 30}
        option["legend"] = {"show": False}
        labels = {m: pg.t(METRIC_LABELS[m]) if m in METRIC_LABELS else m for m in e["metrics"]}
        out.append({**e, "labels": labels, "split_label": pg.t(SPLITS.get(e["split"], e["split"])),
                    "chart": results.Chart(f"ndcg-{e['split']}", option, height=300)})  # fmt: skip
    return out


def _render(pg: Page, status: int = 200, **values: Any) -> Response:
    available = [n for n in action_names() if n.startswith("recommend.")]
    split = pg.params.get("evaluated")
    notice = pg.t("recommend.evaluation_done", split=pg.t(SPLITS[split])) if split in SPLITS else None
    values = {"result": None, "error": None, "ran": None, "person": "", "tables": [], "eval_error": None,
              "chosen": split, **values}  # fmt: skip
    return pg.render(
        "recommendations.html", status=status, title=pg.t("nav.recommendations"), available=available,
        feed=FEED in available, metrics=METRICS in available, offline=EVALUATIONS in available,
        evaluate=EVALUATE in available, evaluations=offline(pg) if EVALUATIONS in available else [],
        splits=SPLITS, notice=notice, **values,
    )  # fmt: skip


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
    return _render(pg, person=person, result=result, error=error, ran=ran,
                   tables=tables_of(result) if result is not None else [])  # fmt: skip


@page("/p/{pid:int}/recommendations/evaluate", methods=("POST",), role="analyst")
def run_evaluation(pg: Page) -> Response:
    """Run ``recommend.evaluate`` (``split``; ``tune`` when ticked), then show the new numbers."""
    assert pg.form is not None
    split = str(pg.form.get("split") or "loo")
    try:
        pg.action(EVALUATE, {"split": split, "tune": pg.form.get("tune") == "1"})
    except UserloopError as exc:
        return _render(pg, status=exc.status, eval_error=exc, chosen=split)
    return redirect(pg.url("/recommendations", evaluated=split) + f"#offline-{split}")
