"""The inbox: filters, search, keyset pages, bad input as 400, and every bulk action."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from ccms_addon.dashboard.views import PAGE_SIZE
from ccms_addon.store.models import VocEvent, VocItem, VocKind, VocStatus, utcnow
from ccms_addon.voc.service import VocDesk
from tests.dashboard.conftest import item_row, new_item

REFERENCE = re.compile(r'/dashboard/items/(\d+)">VOC-')


def _listed(html: str) -> list[int]:
    return [int(i) for i in REFERENCE.findall(html)]


@pytest.fixture
def scene(runtime, team):
    desk = VocDesk(runtime)
    items = {
        "late": new_item(runtime, team.shop_ids[0], body="The parcel is late"),
        "praise": new_item(runtime, team.shop_ids[1], body="Great service", kind=VocKind.PRAISE,
                           contact_email="fan@example.com"),
        "question": new_item(runtime, team.shop_ids[0], body="Do you ship to Jeju?",
                             kind=VocKind.INQUIRY, severity="high"),
    }
    desk.assign(team.shop_ids, items["question"].id, "staff:1:x", team.agent)
    with runtime.db.session() as s:  # one item long overdue
        s.get(VocItem, items["late"].id).respond_due_at = utcnow() - timedelta(hours=3)
    return items


@pytest.mark.parametrize("query, expected", [
    ({}, {"late", "praise", "question"}),
    ({"kind": "praise"}, {"praise"}),
    ({"status": "received", "kind": "inquiry"}, {"question"}),
    ({"severity": "high"}, {"question"}),
    ({"category": "delivery"}, {"late"}),
    ({"assignee": "me"}, {"question"}),
    ({"assignee": "none"}, {"late", "praise"}),
    ({"breached": "1"}, {"late"}),
    ({"q": "jeju"}, {"question"}),
    ({"q": "fan@example.com"}, {"praise"}),
    ({"channel": "widget", "kind": "complaint"}, {"late"}),
])
def test_filters_and_search(signed_in, scene, team, query, expected):
    if "shop" in query:
        query["shop"] = team.shop_ids[query["shop"]]
    html = signed_in("agent").get("/dashboard/inbox", query_string=query).get_data(as_text=True)
    assert set(_listed(html)) == {scene[name].id for name in expected}
    assert f"{len(expected)} item{'' if len(expected) == 1 else 's'}<" in html


def test_the_shop_filter(signed_in, scene, team):
    html = signed_in("agent").get("/dashboard/inbox", query_string={
        "shop": team.shop_ids[1]}).get_data(as_text=True)
    assert _listed(html) == [scene["praise"].id]


@pytest.mark.parametrize("query, field", [
    ({"status": "lost"}, "status"), ({"kind": "rant"}, "kind"), ({"severity": "9"}, "severity"),
    ({"assignee": "everyone"}, "assignee"), ({"sort": "random"}, "sort"),
    ({"cursor": "not-a-cursor!"}, "cursor"), ({"shop": "abc"}, "shop")])
def test_bad_filters_are_400_with_the_field_named(signed_in, scene, query, field):
    answer = signed_in("agent").get("/dashboard/inbox", query_string=query)
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert "field-error" in html and _listed(html) == []


def test_keyset_pages_walk_every_item_once(runtime, signed_in, team):
    made = [new_item(runtime, team.shop_ids[i % 2], body=f"voice {i}").id
            for i in range(PAGE_SIZE + 7)]
    board = signed_in("agent")
    first = board.get("/dashboard/inbox").get_data(as_text=True)
    seen = _listed(first)
    assert len(seen) == PAGE_SIZE and seen == sorted(made, reverse=True)[:PAGE_SIZE]
    next_url = re.search(r'href="(\?[^"]*cursor=[^"]+)" rel="next"', first).group(1)
    second = board.get("/dashboard/inbox" + next_url.replace("&amp;", "&")).get_data(as_text=True)
    seen += _listed(second)
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    assert 'rel="next"' not in second and "First page" in second


def _bulk(board, ids, action, **params):
    pairs = [("action", action)] + [("item_ids", str(i)) for i in ids]
    pairs += list(params.items())
    return board.post("/dashboard/inbox/bulk", pairs)


def test_bulk_acknowledge_assign_and_note(runtime, signed_in, scene, team):
    board = signed_in("agent")
    ids = [scene["late"].id, scene["praise"].id]
    answer = _bulk(board, ids, "acknowledge")
    assert answer.status_code == 200 and "2 done, 0 not done" in answer.get_data(as_text=True)
    assert {item_row(runtime, i).status for i in ids} == {VocStatus.ACKNOWLEDGED}
    again = _bulk(board, ids + [scene["question"].id], "acknowledge")
    assert "1 done, 2 not done" in again.get_data(as_text=True)
    assert "already in that status" in again.get_data(as_text=True)
    _bulk(board, ids, "assign", assignee=str(team.manager))
    assert {item_row(runtime, i).assignee_id for i in ids} == {team.manager}
    _bulk(board, ids, "assign", assignee="none")
    assert {item_row(runtime, i).assignee_id for i in ids} == {None}
    _bulk(board, ids, "note", note="Checked with the warehouse")
    with runtime.db.session() as s:
        notes = s.scalars(select(VocEvent.voc_item_id).where(VocEvent.type == "note")).all()
    assert sorted(notes) == sorted(ids)


@pytest.mark.parametrize("action, resolution", [("close_duplicate", "duplicate"),
                                                ("close_withdrawn", "withdrawn")])
def test_bulk_close_as(runtime, signed_in, scene, action, resolution):
    ids = [scene["late"].id, scene["question"].id]
    answer = _bulk(signed_in("agent"), ids, action)
    assert "2 done" in answer.get_data(as_text=True)
    for item_id in ids:
        row = item_row(runtime, item_id)
        assert row.status is VocStatus.CLOSED and row.responded_at is None
    with runtime.db.session() as s:
        closed = s.scalars(select(VocEvent).where(VocEvent.type == "closed")).all()
    assert {e.data["resolution"] for e in closed} == {resolution}


@pytest.mark.parametrize("pairs, field", [
    ([("action", "acknowledge")], "item_ids"),
    ([("action", "explode"), ("item_ids", "1")], "action"),
    ([("action", "assign"), ("item_ids", "1")], "assignee"),
    ([("action", "note"), ("item_ids", "1")], "note"),
    ([("action", "acknowledge"), ("item_ids", "one")], "item_ids"),
])
def test_bad_bulk_requests_are_422_and_change_nothing(runtime, signed_in, scene, pairs, field):
    answer = signed_in("agent").post("/dashboard/inbox/bulk", pairs)
    assert answer.status_code == 422
    assert "field-error" in answer.get_data(as_text=True)
    assert {item_row(runtime, i.id).status for i in scene.values()} == {VocStatus.RECEIVED}


def test_bulk_goes_back_to_the_inbox_it_came_from_only(signed_in, scene):
    board = signed_in("agent")
    answer = _bulk(board, [scene["late"].id], "acknowledge", return_to="/dashboard/inbox?kind=praise")
    assert 'href="/dashboard/inbox?kind=praise"' in answer.get_data(as_text=True)
    answer = _bulk(board, [scene["late"].id], "acknowledge", return_to="https://evil.example/")
    assert "evil.example" not in answer.get_data(as_text=True)


def test_a_long_inbox_counts_up_to_a_cap(signed_in, runtime, team, monkeypatch):
    import ccms_addon.dashboard.views as views
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    monkeypatch.setattr(views, "COUNT_LIMIT", 3)
    for n in range(3):
        new_item(runtime, team.shop_ids[0], body=f"item {n}")
    client = signed_in("agent")
    assert "3 items" in client.get("/dashboard/inbox").get_data(as_text=True)  # counted exactly
    new_item(runtime, team.shop_ids[0], body="one more")
    assert "3+ items" in client.get("/dashboard/inbox").get_data(as_text=True)  # capped
    one_page = client.get("/dashboard/inbox", query_string={"q": "one more"})
    assert "1 item<" in one_page.get_data(as_text=True)  # a single page needs no count
