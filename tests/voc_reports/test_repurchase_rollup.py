"""The board's repurchase figure is kept per shop and cohort (``repurchase_rollups``): it equals
the figure computed from the store, a new local day or an hour later computes it again, a set of
shops sums its shops', and a deleted shop's rows go with it (a reused id finds none)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

from ccms_addon.store.models import Merchant, RepurchaseRollup, Shop, utcnow
from ccms_addon.voc import metrics
from tests.voc_reports.conftest import order_record

ZONE = "Asia/Seoul"
DAY = timedelta(days=1)


def _figures(runtime, shop_ids, at):
    """(board's figure, the figure computed from the store) as of ``at``."""
    with runtime.db.session() as session:
        kept = metrics.board(session, shop_ids, now=at, zone=ZONE).repurchase
        computed = metrics.repurchase(session, shop_ids, now=at, zone=ZONE)
    return kept, computed


def _never(r) -> tuple[int, int]:
    return r.never_complained.customers, r.never_complained.repurchased


def _rows(runtime, shop_id=None) -> int:
    query = select(func.count()).select_from(RepurchaseRollup)
    if shop_id is not None:
        query = query.where(RepurchaseRollup.shop_id == shop_id)
    with runtime.db.session() as session:
        return session.scalar(query)


def test_the_figure_is_kept_until_a_new_day_or_an_hour_later(runtime, shop, orders,
                                                               monkeypatch):
    now = utcnow()
    orders(order_record("1", "C1", now - 10 * DAY), order_record("1b", "C1", now + 30 * DAY),
           order_record("2", "C2", now - 10 * DAY))
    later = now + 200 * DAY  # the first orders lie in a mature cohort
    kept, computed = _figures(runtime, [shop.id], later)
    assert kept == computed and _never(kept) == (2, 1)
    assert _rows(runtime, shop.id) == 1

    # an order imported late (placed within the window): the board shows the figure it kept
    # for at most REPURCHASE_ROLLUP_MAX_AGE, and never past the local day
    orders(order_record("2b", "C2", now + 20 * DAY))
    kept, computed = _figures(runtime, [shop.id], later)
    assert _never(kept) == (2, 1) and _never(computed) == (2, 2)
    kept, computed = _figures(runtime, [shop.id], later + DAY)   # the next local day
    assert kept == computed and _never(kept) == (2, 2)
    assert kept.cohort_to == computed.cohort_to > _figures(runtime, [shop.id], later)[0].cohort_to

    wall = utcnow()
    monkeypatch.setattr(metrics, "utcnow",
                        lambda: wall + metrics.REPURCHASE_ROLLUP_MAX_AGE + timedelta(minutes=1))
    kept, computed = _figures(runtime, [shop.id], later)   # an hour later, the same day
    assert kept == computed and _never(kept) == (2, 2)
    assert _rows(runtime, shop.id) == 2                      # one per cohort (day), refreshed


def test_a_set_of_shops_sums_its_shops_and_a_deleted_shop_takes_its_rows(runtime, shop,
                                                                         other_shop, make_shop,
                                                                         orders):
    now = utcnow()
    later = now + 200 * DAY
    orders(order_record("1", "C1", now - 10 * DAY), order_record("1b", "C1", now + 9 * DAY))
    orders(order_record("7", "D1", now - 20 * DAY), order_record("8", "D2", now - 20 * DAY),
           order_record("8b", "D2", now - 15 * DAY), shop_id=other_shop.id)
    gone = make_shop("woocommerce", "https://gone.example", name="Gone",
                     merchant=Merchant(name="G", email="g@gone.test")).shop
    orders(order_record("9", "E1", now - 30 * DAY), order_record("9b", "E1", now - 29 * DAY),
           shop_id=gone.id)

    both = [shop.id, other_shop.id]
    kept, computed = _figures(runtime, both, later)
    assert kept == computed and _never(kept) == (3, 2)
    assert _rows(runtime, shop.id) == _rows(runtime, other_shop.id) == 1
    # each shop alone reads its own row: the sum of the set's figure
    alone = [_figures(runtime, [shop_id], later) for shop_id in both]
    assert [k == c for k, c in alone] == [True, True]
    assert [_never(k) for k, _ in alone] == [(1, 1), (2, 1)]

    kept, _ = _figures(runtime, [gone.id], later)
    assert _never(kept) == (1, 1) and _rows(runtime, gone.id) == 1
    with runtime.db.session() as session:
        session.execute(delete(Shop).where(Shop.id == gone.id))
    assert _rows(runtime, gone.id) == 0
    # a shop made next may get the freed id (SQLite reuses the highest): it starts from nothing
    fresh = make_shop("woocommerce", "https://fresh.example", name="Fresh",
                      merchant=Merchant(name="F", email="f@fresh.test")).shop
    kept, computed = _figures(runtime, [fresh.id], later)
    assert kept == computed and _never(kept) == (0, 0)


def test_an_unknown_shop_id_is_computed_not_kept(runtime, shop):
    """Only shops are stored (a row needs its shop); the figure of an id that is none is 0."""
    later = utcnow() + 200 * DAY
    kept, computed = _figures(runtime, [shop.id, 999_999], later)
    assert kept == computed
    assert _rows(runtime) == 1
