"""The console's navigation: sections and their pages, in the order the sidebar shows them.

Campaigns (reach, evaluation, coupons, strategies) arrive in a later release: their section is
already here, pointing to a placeholder page, so adding them changes no other page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from userloop.web.console.base import Page

ANALYSES = (
    "trends", "funnel", "retention", "paths", "sessions", "visitors", "distribution", "channels", "content",
    "virality", "ltv",
)  # fmt: skip


@dataclass(frozen=True)
class Link:
    key: str  # message key of the label
    href: str
    active: bool


@dataclass(frozen=True)
class Section:
    key: str
    links: list[Link]


def navigation(pg: Page) -> list[Section]:
    path = pg.request.url.path

    def link(key: str, sub: str) -> Link:
        href = pg.url(sub)
        return Link(key, href, path == href or path.startswith(href + "/"))

    sections = [
        Section("nav.home", [link("nav.overview", "/overview"), link("nav.dashboards", "/dashboards")]),
        Section("nav.analysis", [link(f"kind.{k}", f"/analysis/{k}") for k in ANALYSES]),
        Section("nav.people", [
            link("nav.users", "/people"), link("nav.tags", "/tags"), link("nav.segments", "/segments"),
            link("nav.layers", "/layers"), link("nav.alerts", "/alerts"),
        ]),  # fmt: skip
        Section("nav.campaigns", [link("nav.campaigns_soon", "/campaigns")]),
        Section("nav.recommend", [link("nav.recommendations", "/recommendations")]),
        Section("nav.data", [link("nav.live", "/live"), link("nav.tracker_demo", "/tracker-demo")]),
        Section("nav.project", [link("nav.settings", "/settings")]),
    ]
    return sections
