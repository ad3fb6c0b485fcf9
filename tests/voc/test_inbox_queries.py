"""The inbox's query shapes that bench/dashboard.py relies on: keyset pages through items that share
a time, every way of searching (each branch of the search has its own index on PostgreSQL), and
counts that stop past a limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ccms_addon.voc.inbox import InboxFilter, count_items, list_items
from tests.voc.conftest import new_item, sync_order


def test_pages_walk_items_that_share_a_time_exactly_once(runtime, shop):
    moment = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
    ids = [new_item(runtime, shop.id, body=f"voice {n}",
                    occurred_at=moment - timedelta(hours=n // 3)).id for n in range(7)]
    by_time = {n: moment - timedelta(hours=n // 3) for n in range(7)}
    newest = sorted(range(7), key=lambda n: (by_time[n], ids[n]), reverse=True)
    for sort, expected in (("newest", [ids[n] for n in newest]),
                           ("oldest", [ids[n] for n in reversed(newest)])):
        seen, cursor = [], None
        with runtime.db.session() as s:
            while True:
                rows, cursor = list_items(s, [shop.id], InboxFilter(sort=sort), limit=2,
                                          cursor=cursor)
                seen += [r.item.id for r in rows]
                if not cursor:
                    break
        assert seen == expected, sort


def test_search_by_each_field_and_by_words(runtime, shop, other_shop):
    order_id = sync_order(runtime, shop.id, "3003")
    sync_order(runtime, other_shop.id, "3004")
    by_order = new_item(runtime, shop.id, body="상자가 찌그러졌어요", order_id=order_id)
    by_mail = new_item(runtime, shop.id, body="문의", contact_email="Mixed.Case@Example.com")
    by_phone = new_item(runtime, shop.id, body="전화 문의", contact_phone="+82-10-1234-5678")
    by_words = new_item(runtime, shop.id, body="The lid arrived cracked (100% sure)")
    new_item(runtime, other_shop.id, body="The lid arrived cracked too")

    def found(q: str) -> list[int]:
        with runtime.db.session() as s:
            return [r.item.id for r in list_items(s, [shop.id], InboxFilter(q=q))[0]]

    assert found("#3003") == [by_order.id]
    assert found("3004") == []                      # another shop's order number
    assert found("mixed.case@example.COM") == [by_mail.id]
    assert found("+82-10-1234-5678") == [by_phone.id]
    assert found(by_words.reference.lower()) == [by_words.id]
    assert found("LID ARRIVED") == [by_words.id]
    assert found("100%") == [by_words.id] and found("1%0") == []   # % is no wildcard
    assert found("찌그러") == [by_order.id]          # two-character-long words too


def test_counts_stop_past_their_limit(runtime, shop):
    for n in range(5):
        new_item(runtime, shop.id, body=f"late parcel {n}")
    new_item(runtime, shop.id, body="a question")
    with runtime.db.session() as s:
        assert count_items(s, [shop.id], InboxFilter()) == 6
        assert count_items(s, [shop.id], InboxFilter(), limit=2) == 3   # "more than 2"
        assert count_items(s, [shop.id], InboxFilter(), limit=6) == 6
        assert count_items(s, [shop.id], InboxFilter(), limit=100) == 6
        assert count_items(s, [shop.id], InboxFilter(q="parcel"), limit=3) == 4
        assert count_items(s, [shop.id], InboxFilter(q="parcel")) == 5
        assert count_items(s, [], InboxFilter(), limit=3) == 0
