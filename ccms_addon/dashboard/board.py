"""The owner's board: today's voices in the customers' own words, what is overdue, this week's top
categories and products, and 30 days of volume, speed and satisfaction, with the repurchase rate
of resolved complainers against customers who never complained. Every figure is
:func:`ccms_addon.voc.metrics.board`'s (the digest and the API read the same); this module only
draws it."""

from __future__ import annotations

from babel.dates import format_skeleton

from ccms_addon.store.models import utcnow
from ccms_addon.voc import metrics

from . import charts
from .auth import Viewer
from .i18n import Translator
from .views import bp, category_options, page, requires, runtime, staff_names, translator, viewer


def board_zone(current: Viewer) -> str:
    """Days are cut in the zone of the shop the dashboard was opened from, else the first shop's."""
    shop = current.shop(current.embedded.shop_id) if current.embedded else None
    shop = shop or (current.shops[0] if current.shops else None)
    return shop.timezone if shop is not None else "UTC"


def board_charts(board: metrics.Board, t: Translator,
                 category_names: dict[str, str]) -> dict[str, charts.Chart]:
    days = [format_skeleton("Md", day.day, locale=t.locale) for day in board.series]
    series = board.series
    hours = t("board.unit.hours")
    timing = {}
    for name in ("acknowledge", "respond", "resolve"):
        timing[name] = charts.line_chart(
            t(f"board.chart.{name}", unit=hours), days,
            {"median": [getattr(d, f"{name}_median_hours") for d in series],
             "p90": [getattr(d, f"{name}_p90_hours") for d in series]},
            [("median", t("board.median")), ("p90", t("board.p90"))])
    repurchase = board.repurchase
    rates = [(t("board.repurchase.resolved", customers=repurchase.resolved_complainers.customers),
              100 * (repurchase.resolved_complainers.rate or 0)),
             (t("board.repurchase.never", customers=repurchase.never_complained.customers),
              100 * (repurchase.never_complained.rate or 0))]
    return {
        "volume": charts.stacked_bars(
            t("board.chart.volume"), days,
            {f"kind-{kind}": [d.by_kind.get(kind, 0) for d in series] for kind in metrics.KINDS},
            [(f"kind-{kind}", t(f"kind.{kind}")) for kind in metrics.KINDS]),
        **timing,
        "satisfaction": charts.line_chart(
            t("board.chart.satisfaction"), days,
            {"average": [d.satisfaction_average for d in series]},
            [("average", t("board.average"))], top=5),
        "repurchase": charts.horizontal_bars(t("board.chart.repurchase",
                                               days=repurchase.window_days),
                                             rates, css="bar-rate", top=100, unit="%"),
        "categories": charts.horizontal_bars(
            t("board.top_categories"),
            [(category_names.get(r.key, r.label), r.count) for r in board.top_categories]),
        "products": charts.horizontal_bars(
            t("board.top_products"), [(r.label, r.count) for r in board.top_products]),
    }


@bp.get("/board")
@requires("report")
def board_page():
    current, t = viewer(), translator()
    zone = board_zone(current)
    with runtime().db.session() as session:
        figures = metrics.board(session, current.shop_ids, now=utcnow(), zone=zone)
        names = staff_names(session, current.merchant_id)
    category_names = dict(category_options(current, t.locale))
    return page("board.html", board=figures, charts=board_charts(figures, t, category_names),
                zone=zone, staff_names=names, category_names=category_names,
                channel_labels={name: c.label(t.locale) for name, c in runtime().channels.items()})
