"""Searches of two characters (Korean and Japanese words are often two): on PostgreSQL they go
through the bigram index of migration 0007 (``inbox._pair_holders``); on both stores they find
exactly the items whose subject, body or contact name holds the term, whatever the case."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ccms_addon.store.db import Database
from ccms_addon.store.models import VocItem
from ccms_addon.voc import inbox
from ccms_addon.voc.inbox import InboxFilter, count_items, list_items
from tests.pg_roles import web_role
from tests.voc.conftest import new_item


def _found(runtime, shop_ids, term, limit=50) -> list[int]:
    with runtime.db.session() as s:
        rows, _ = list_items(s, shop_ids, InboxFilter(q=term), limit=limit)
        return [r.item.id for r in rows]


def _count(runtime, shop_ids, term, limit=None) -> int:
    with runtime.db.session() as s:
        return count_items(s, shop_ids, InboxFilter(q=term), limit=limit)


@pytest.fixture
def items(runtime, shop, other_shop):
    return {
        "body": new_item(runtime, shop.id, body="蓋に錆びが出ました"),
        "subject": new_item(runtime, shop.id, body="見てください", subject="錆び"),
        "name": new_item(runtime, shop.id, body="문의", contact_name="김곰팡"),
        "apart": new_item(runtime, shop.id, body="錆 び — the two characters, not together"),
        "crossing": new_item(runtime, shop.id, body="終わり錆", subject="びっくり"),
        "mould": new_item(runtime, shop.id, body="곰팡이가 피었어요"),
        "upper": new_item(runtime, shop.id, body="ÉTÉ INDIEN"),
        "latin": new_item(runtime, shop.id, body="an ox cart"),
        "other shop": new_item(runtime, other_shop.id, body="こちらも錆びています"),
    }


def test_a_two_character_search_finds_exactly_the_items_holding_it(runtime, shop, other_shop,
                                                                     items):
    def ids(*names):
        return {items[name].id for name in names}

    assert set(_found(runtime, [shop.id], "錆び")) == ids("body", "subject")
    assert _count(runtime, [shop.id], "錆び") == 2
    assert _count(runtime, [shop.id], "錆び", limit=1000) == 2
    assert set(_found(runtime, [shop.id], "곰팡")) == ids("name", "mould")
    # across the merchant's shops, and the other shop alone
    assert set(_found(runtime, [shop.id, other_shop.id], "錆び")) == ids(
        "body", "subject", "other shop")
    assert _found(runtime, [other_shop.id], "錆び") == [items["other shop"].id]
    # a pair no item holds, one only another shop's item holds, and an ASCII pair
    assert _found(runtime, [shop.id], "환불") == [] and _count(runtime, [shop.id], "환불") == 0
    assert _found(runtime, [shop.id], "こち") == []
    assert _found(runtime, [shop.id], "ox") == [items["latin"].id]
    # newest first, as every search
    assert _found(runtime, [shop.id], "錆び") == [items["subject"].id, items["body"].id]


def test_a_two_character_search_is_the_plain_search(runtime, shop, other_shop, items,
                                                      monkeypatch):
    """Whatever the case folding (SQLite's LIKE folds ASCII only, PostgreSQL's ILIKE follows the
    collation): the index only narrows the items the ILIKEs test — the same items as the search
    without it, on the same data."""
    terms = ["錆び", "곰팡", "té", "TÉ", "Ét", "ÉT", "\u212ax", "び.", "n錆"]
    with_index = {t: (set(_found(runtime, [shop.id, other_shop.id], t)),
                      _count(runtime, [shop.id], t), _count(runtime, [shop.id], t, limit=1))
                  for t in terms}
    monkeypatch.setattr(inbox, "_pair_holders", lambda session, shop_ids, term: None)
    plain = {t: (set(_found(runtime, [shop.id, other_shop.id], t)),
                 _count(runtime, [shop.id], t), _count(runtime, [shop.id], t, limit=1))
             for t in terms}
    assert with_index == plain
    assert with_index["錆び"][0] == {items[n].id for n in ("body", "subject", "other shop")}


def test_a_pair_held_by_many_items(runtime, shop, monkeypatch):
    """More holders than PAIR_CANDIDATES: the page is found by time order, a capped count
    among the first holders (else among all items)."""
    monkeypatch.setattr(inbox, "PAIR_CANDIDATES", 2)
    made = [new_item(runtime, shop.id, body=f"錆び {n}").id for n in range(4)]
    new_item(runtime, shop.id, body="nothing to see")
    assert _found(runtime, [shop.id], "錆び") == made[::-1]
    assert _found(runtime, [shop.id], "錆び", limit=3) == made[:0:-1]
    assert _count(runtime, [shop.id], "錆び", limit=1) == 2        # "more than 1"
    assert _count(runtime, [shop.id], "錆び", limit=3) == 4        # the first 3 holders + the rest
    assert _count(runtime, [shop.id], "錆び", limit=10) == 4
    assert _count(runtime, [shop.id], "錆び") == 4


def test_the_index_follows_edits(runtime, shop):
    """The pairs are an expression of the row: an edited text is searched as it now reads."""
    item = new_item(runtime, shop.id, body="곰팡이")
    assert _found(runtime, [shop.id], "곰팡") == [item.id]
    with runtime.db.session() as s:
        s.get(VocItem, item.id).body = "[redacted]"
    assert _found(runtime, [shop.id], "곰팡") == []
    with runtime.db.session() as s:
        s.get(VocItem, item.id).contact_name = "이곰팡"
    assert _found(runtime, [shop.id], "곰팡") == [item.id]


def test_under_row_level_security_the_search_reads_as_before(runtime, shop, items, database_url):
    """A role held to the tenant policies (migration 0008) cannot use the index (``&&`` is not
    leak-proof): the pair lookup stands aside and the ILIKEs find the same items."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row-level security is PostgreSQL's")
    with web_role(database_url, "ccms_pairs") as url:
        db = Database(url)
        try:
            with db.session() as s:
                policed = s.scalar(select(func.row_security_active("voc_items")))
                assert (inbox._pair_holders(s, [shop.id], "錆び") is None) == bool(policed)
                rows, _ = list_items(s, [shop.id], InboxFilter(q="錆び"))
                assert {r.item.id for r in rows} == {items["body"].id, items["subject"].id}
                assert count_items(s, [shop.id], InboxFilter(q="錆び"), limit=1000) == 2
        finally:
            db.dispose()
