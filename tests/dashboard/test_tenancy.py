"""Two merchants on one add-on: everything a person sees and changes is their merchant's shops'."""

from __future__ import annotations

from sqlalchemy import select

from ccms_addon.store.models import Shop, Staff, VocEvent, VocStatus
from tests.dashboard.conftest import item_row, new_item


def _events(runtime, item_id):
    with runtime.db.session() as s:
        return [e.type for e in s.scalars(select(VocEvent).where(VocEvent.voc_item_id == item_id)
                                          .order_by(VocEvent.id))]


def test_the_inbox_spans_all_of_the_merchants_shops_and_only_them(runtime, signed_in, team, other):
    mine_a = new_item(runtime, team.shop_ids[0], body="cafe24 voice")
    mine_b = new_item(runtime, team.shop_ids[1], body="shopify voice")
    theirs = new_item(runtime, other.shop_ids[0], body="the other merchant's secret")
    html = signed_in("agent").get("/dashboard/inbox").get_data(as_text=True)
    assert mine_a.reference in html and "cafe24 voice" in html and "shopify voice" in html
    assert "the other merchant" not in html and f"/dashboard/items/{theirs.id}" not in html
    assert "2 items" in html
    # searching for the other merchant's words or reference (references are per shop: ours
    # may be the same number) never reaches their item
    board = signed_in("agent")
    found = board.get("/dashboard/inbox", query_string={"q": "secret"}).get_data(as_text=True)
    assert "0 items" in found and "the other merchant" not in found
    found = board.get("/dashboard/inbox", query_string={"q": theirs.reference}).get_data(
        as_text=True)
    assert f"/dashboard/items/{theirs.id}" not in found and "the other merchant" not in found
    assert mine_b.reference in board.get("/dashboard/inbox", query_string={
        "shop": team.shop_ids[1]}).get_data(as_text=True)


def test_another_merchants_item_is_404_to_read_and_to_change(runtime, signed_in, team, other):
    theirs = new_item(runtime, other.shop_ids[0])
    board = signed_in("owner")
    assert board.get(f"/dashboard/items/{theirs.id}").status_code == 404
    for action, data in (("note", {"text": "x"}), ("reply", {"message": "x"}),
                         ("acknowledge", {}), ("close", {"resolution": "spam"}),
                         ("assign", {"assignee_id": str(team.agent)}),
                         ("duplicate", {"original": theirs.reference})):
        answer = board.post(f"/dashboard/items/{theirs.id}/{action}", data)
        assert answer.status_code == 404, action
    assert _events(runtime, theirs.id) == ["received"]
    assert item_row(runtime, theirs.id).status is VocStatus.RECEIVED


def test_bulk_actions_skip_another_merchants_items(runtime, signed_in, team, other):
    mine = new_item(runtime, team.shop_ids[0])
    theirs = new_item(runtime, other.shop_ids[0])
    answer = signed_in("agent").post("/dashboard/inbox/bulk", [
        ("action", "acknowledge"), ("item_ids", str(mine.id)), ("item_ids", str(theirs.id))])
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "1 done, 1 not done" in html and "No such item." in html
    assert f"/dashboard/items/{theirs.id}" not in html and f"#{theirs.id}" in html
    assert item_row(runtime, theirs.id).status is VocStatus.RECEIVED
    assert item_row(runtime, mine.id).status is VocStatus.ACKNOWLEDGED


def test_a_duplicate_cannot_point_at_another_merchants_item(runtime, signed_in, team, other):
    mine = new_item(runtime, team.shop_ids[0])
    theirs = new_item(runtime, other.shop_ids[0])
    answer = signed_in("agent").post(f"/dashboard/items/{mine.id}/duplicate",
                                     {"original": str(theirs.id)})
    assert answer.status_code == 422
    assert "No item with this reference in the same shop." in answer.get_data(as_text=True)
    assert item_row(runtime, mine.id).duplicate_of_id is None


def test_another_merchants_shop_and_staff_are_out_of_reach(runtime, signed_in, team, other):
    owner = signed_in("owner")
    shop = other.shop_ids[0]
    assert owner.get(f"/dashboard/settings/{shop}/widget").status_code == 404
    assert owner.get(f"/dashboard/settings/{shop}/voc").status_code == 404
    assert owner.post(f"/dashboard/settings/{shop}/voc", {"default_severity": "low"}).status_code \
        == 404
    answer = owner.post(f"/dashboard/staff/{other.agent}", {
        "name": "hijacked", "role": "owner", "locale": "en", "active": "on"})
    assert answer.status_code == 404
    with runtime.db.session() as s:
        assert s.get(Staff, other.agent).role.value == "agent"
        assert "voc" not in (s.get(Shop, shop).settings or {}) or \
            s.get(Shop, shop).settings["voc"].get("default_severity") != "low"
    # and the other merchant's staff cannot be assigned to our items
    mine = new_item(runtime, team.shop_ids[0])
    answer = owner.post(f"/dashboard/items/{mine.id}/assign", {"assignee_id": str(other.agent)})
    assert answer.status_code == 422
    assert "No such active staff member." in answer.get_data(as_text=True)
    # a shop filter naming their shop is refused, not widened
    answer = owner.get("/dashboard/inbox", query_string={"shop": shop})
    assert answer.status_code == 400 and "This shop is not one of yours." in \
        answer.get_data(as_text=True)


def test_the_board_and_exports_count_only_the_merchants_shops(runtime, signed_in, team, other):
    new_item(runtime, team.shop_ids[0], body="ours today")
    new_item(runtime, other.shop_ids[0], body="theirs today")
    manager = signed_in("manager")
    board = manager.get("/dashboard/board").get_data(as_text=True)
    assert "ours today" in board and "theirs today" not in board
    export = manager.get("/dashboard/reports/items.csv").get_data(as_text=True)
    assert "ours today" in export and "theirs today" not in export
