"""An item's page and its actions, each through VocDesk: the reply reaches the customer's mailbox
(a real SMTP server on loopback, through the outbox and a real worker), refusals are 4xx with the
message beside the field, nothing half-done."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.store import repository
from ccms_addon.store.models import Order, VocChannel, VocEvent, VocIssue, VocKind, VocStatus
from tests.dashboard.conftest import SHOPPER, deliver_all, item_row, new_item


def _events(runtime, item_id):
    with runtime.db.session() as s:
        return s.scalars(select(VocEvent).where(VocEvent.voc_item_id == item_id)
                         .order_by(VocEvent.id)).all()


def _order(runtime, shop_id: int, number: str = "1001") -> int:
    from datetime import datetime, timezone
    placed = datetime(2026, 11, 1, tzinfo=timezone.utc)
    record = OrderRecord(
        platform_order_id=f"o-{number}", number=number, currency="KRW", total=Decimal("39000"),
        updated_at=placed, placed_at=placed, financial_status=FinancialStatus.PAID,
        fulfillment_status=FulfillmentStatus.FULFILLED, email=SHOPPER, customer_name="Min Park",
        customer=CustomerRecord(platform_customer_id="c-1", email=SHOPPER, name="Min Park"),
        lines=(OrderLineRecord(f"l-{number}", "<b>Cotton</b> shirt", 1, Decimal("39000"),
                               sku="S-1", product_id="P-1"),))
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop_id, [record])
    with runtime.db.session() as s:
        return s.scalar(select(Order.id).where(Order.shop_id == shop_id, Order.number == number))


def test_the_page_shows_the_words_the_order_the_history_and_the_timeline(runtime, signed_in,
                                                                          team):
    order_id = _order(runtime, team.shop_ids[0])
    earlier = new_item(runtime, team.shop_ids[0], body="Where is it?", kind=VocKind.INQUIRY,
                       order_id=order_id)
    item = new_item(runtime, team.shop_ids[0], subject="Still late",
                    body="Line one\n  indented <i>not italic</i> & more", order_id=order_id,
                    contact_phone="+82 10-1234-5678")
    html = signed_in("agent").get(f"/dashboard/items/{item.id}").get_data(as_text=True)
    assert "Line one\n  indented &lt;i&gt;not italic&lt;/i&gt; &amp; more" in html  # verbatim
    assert "Still late" in html and "Min Park" in html and SHOPPER in html
    assert "1001" in html and "&lt;b&gt;Cotton&lt;/b&gt; shirt" in html and "39000 KRW" in html
    assert "Shipped" in html and "Paid" in html
    assert earlier.reference in html and f"/dashboard/items/{earlier.id}" in html
    assert "Received" in html and "shopper" in html  # the timeline's first event
    assert "Delivery" in html  # the category's label, from the shop's widget settings


def test_a_reply_reaches_the_customer_by_email(runtime, signed_in, team, smtp_server):
    item = new_item(runtime, team.shop_ids[0], body="Where is my parcel?")
    board = signed_in("agent")
    answer = board.post(f"/dashboard/items/{item.id}/reply",
                        {"message": "It left today <b>by courier</b>."})
    assert answer.status_code == 303 and "done=reply" in answer.headers["Location"]
    deliver_all(runtime)
    [mail] = smtp_server.parsed()
    assert mail["To"] == SHOPPER and item.reference in mail["Subject"]
    assert "It left today <b>by courier</b>." in mail.get_content()  # plain text, verbatim
    row = item_row(runtime, item.id)
    assert row.status is VocStatus.RESPONDED and row.responded_at is not None
    reply = [e for e in _events(runtime, item.id) if e.type == "reply"][0]
    assert reply.actor.endswith(":a agent") and reply.data["notifier"] == "email"
    page = board.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Reply recorded" in page and "It left today &lt;b&gt;by courier&lt;/b&gt;." in page


def test_an_answer_given_by_phone_is_recorded_and_nothing_is_sent(runtime, signed_in, team,
                                                                  smtp_server):
    item = new_item(runtime, team.shop_ids[0], channel=VocChannel.PHONE, contact_email=None,
                    contact_phone="+82 10-0000-0000", actor="staff:1:x")
    board = signed_in("agent")
    page = board.get(f"/dashboard/items/{item.id}").get_data(as_text=True)
    assert "left no address" in page
    refused = board.post(f"/dashboard/items/{item.id}/reply", {"message": "Called back."})
    assert refused.status_code == 422 and "record the answer as given outside" in \
        refused.get_data(as_text=True)
    answer = board.post(f"/dashboard/items/{item.id}/reply",
                        {"message": "Called back, refund agreed.", "given_outside": "on"})
    assert answer.status_code == 303
    deliver_all(runtime)
    assert smtp_server.messages == []
    assert item_row(runtime, item.id).status is VocStatus.RESPONDED
    assert [e.data for e in _events(runtime, item.id) if e.type == "reply"] == [
        {"given_outside": True}]


def test_an_empty_reply_is_422_beside_its_field_and_changes_nothing(runtime, signed_in, team):
    item = new_item(runtime, team.shop_ids[0])
    answer = signed_in("agent").post(f"/dashboard/items/{item.id}/reply", {"message": "   "})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert 'id="error-message"' in html and "This is required." in html
    assert 'aria-invalid="true"' in html
    assert [e.type for e in _events(runtime, item.id)] == ["received"]


def test_unknown_fields_and_actions_are_refused(runtime, signed_in, team):
    item = new_item(runtime, team.shop_ids[0])
    board = signed_in("agent")
    answer = board.post(f"/dashboard/items/{item.id}/note", {"text": "x", "admin": "1"})
    assert answer.status_code == 422 and "This field is not part of the form." in \
        answer.get_data(as_text=True)
    assert board.post(f"/dashboard/items/{item.id}/delete", {}).status_code == 404


def test_note_assign_assess(runtime, signed_in, team):
    item = new_item(runtime, team.shop_ids[0], body="Broken and late")
    board = signed_in("agent")
    assert board.post(f"/dashboard/items/{item.id}/note", {"text": "Called the courier"}
                      ).status_code == 303
    assert board.post(f"/dashboard/items/{item.id}/assign", {"assignee_id": str(team.manager)}
                      ).status_code == 303
    assert board.post(f"/dashboard/items/{item.id}/assess", {
        "category": "quality", "severity": "high", "issue_category": "packaging",
        "issue_summary": "The box was torn"}).status_code == 303
    row = item_row(runtime, item.id)
    assert (row.assignee_id, row.category, row.severity) == (team.manager, "quality", "high")
    with runtime.db.session() as s:
        issues = {i.category: i.summary for i in s.scalars(select(VocIssue).where(
            VocIssue.voc_item_id == item.id))}
    assert issues == {"delivery": None, "quality": None, "packaging": "The box was torn"}
    types = [e.type for e in _events(runtime, item.id)]
    assert types == ["received", "note", "assigned", "assessed"]
    page = board.get(f"/dashboard/items/{item.id}").get_data(as_text=True)
    assert "Called the courier" in page and "a manager" in page
    bad = board.post(f"/dashboard/items/{item.id}/assess", {"severity": "apocalyptic",
                                                            "category": "Not A Key!"})
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert 'id="error-severity"' in html and 'id="error-category"' in html


def test_close_needs_the_root_cause_of_a_complaint_then_asks_for_satisfaction(
        runtime, signed_in, team, smtp_server):
    item = new_item(runtime, team.shop_ids[0], body="Late again")
    board = signed_in("agent")
    board.post(f"/dashboard/items/{item.id}/reply", {"message": "Sorry, it is on its way."})
    refused = board.post(f"/dashboard/items/{item.id}/close", {"prevention_action": "x"})
    assert refused.status_code == 422
    assert 'id="error-root_cause"' in refused.get_data(as_text=True)
    assert item_row(runtime, item.id).status is VocStatus.RESPONDED
    with runtime.db.session() as s:
        issue_ids = [i.id for i in s.scalars(select(VocIssue).where(
            VocIssue.voc_item_id == item.id))]
    answer = board.post(f"/dashboard/items/{item.id}/close", {
        "root_cause": "The courier missed the pickup", "prevention_action": "Second courier",
        "handled_issue_ids": str(issue_ids[0])})
    assert answer.status_code == 303
    row = item_row(runtime, item.id)
    assert row.status is VocStatus.CLOSED and row.root_cause == "The courier missed the pickup"
    deliver_all(runtime)
    subjects = [m["Subject"] for m in smtp_server.parsed()]
    assert any("How did we do?" in s for s in subjects)
    page = board.get(f"/dashboard/items/{item.id}").get_data(as_text=True)
    assert "Second courier" in page and "handled" in page and "Reopen" in page


def test_closing_an_unanswered_item_needs_a_resolution_409(runtime, signed_in, team):
    item = new_item(runtime, team.shop_ids[0], kind=VocKind.INQUIRY)
    board = signed_in("agent")
    answer = board.post(f"/dashboard/items/{item.id}/close", {})
    assert answer.status_code == 409
    assert "has not been answered" in answer.get_data(as_text=True)
    assert board.post(f"/dashboard/items/{item.id}/close", {"resolution": "bogus"}
                      ).status_code == 422
    assert board.post(f"/dashboard/items/{item.id}/close", {"resolution": "withdrawn"}
                      ).status_code == 303
    assert item_row(runtime, item.id).status is VocStatus.CLOSED


def test_reopen_and_duplicate(runtime, signed_in, team):
    original = new_item(runtime, team.shop_ids[0], body="First")
    again = new_item(runtime, team.shop_ids[0], body="Second")
    board = signed_in("agent")
    assert board.post(f"/dashboard/items/{again.id}/duplicate", {"original": "VOC-1999-999999"}
                      ).status_code == 422
    assert board.post(f"/dashboard/items/{again.id}/duplicate",
                      {"original": original.reference.lower()}).status_code == 303
    row = item_row(runtime, again.id)
    assert row.status is VocStatus.CLOSED and row.duplicate_of_id == original.id
    page = board.get(f"/dashboard/items/{original.id}").get_data(as_text=True)
    assert again.reference in page  # the original lists its duplicate
    assert board.post(f"/dashboard/items/{again.id}/reopen", {"reason": ""}).status_code == 422
    assert board.post(f"/dashboard/items/{again.id}/reopen", {"reason": "Not the same"}
                      ).status_code == 303
    assert item_row(runtime, again.id).status is VocStatus.IN_PROGRESS
    assert board.post(f"/dashboard/items/{again.id}/reopen", {"reason": "again"}
                      ).status_code == 409


def test_acknowledge_tells_the_customer_unless_asked_not_to(runtime, signed_in, team,
                                                            smtp_server):
    told = new_item(runtime, team.shop_ids[0])
    quiet = new_item(runtime, team.shop_ids[0])
    board = signed_in("agent")
    assert board.post(f"/dashboard/items/{told.id}/acknowledge", {"notify_customer": "on"}
                      ).status_code == 303
    assert board.post(f"/dashboard/items/{quiet.id}/acknowledge", {}).status_code == 303
    assert board.post(f"/dashboard/items/{quiet.id}/acknowledge", {}).status_code == 409
    deliver_all(runtime)
    assert [m["To"] for m in smtp_server.parsed()] == [SHOPPER]
    assert item_row(runtime, quiet.id).status is VocStatus.ACKNOWLEDGED


def test_order_actions_are_asked_for_under_the_policy(runtime, signed_in, team):
    order_id = _order(runtime, team.shop_ids[0])
    item = new_item(runtime, team.shop_ids[0], order_id=order_id)
    board = signed_in("agent")
    page = board.get(f"/dashboard/items/{item.id}").get_data(as_text=True)
    assert 'action="/dashboard/items/%d/order_action"' % item.id in page
    # the order has shipped: it cannot be cancelled, and a refund cannot exceed what was paid
    refused = board.post(f"/dashboard/items/{item.id}/order_action", {"action": "cancel",
                                                                      "refund": "on"})
    assert refused.status_code == 422 and "Only an order that has not shipped" in \
        refused.get_data(as_text=True)
    too_much = board.post(f"/dashboard/items/{item.id}/order_action",
                          {"action": "refund", "amount": "50000"})
    assert too_much.status_code == 422 and 'id="error-amount"' in too_much.get_data(as_text=True)
    assert board.post(f"/dashboard/items/{item.id}/order_action",
                      {"action": "refund", "amount": "12.5"}).status_code == 422  # KRW: whole
    assert [e.type for e in _events(runtime, item.id)] == ["received"]
    asked = board.post(f"/dashboard/items/{item.id}/order_action", {
        "action": "refund", "lines": "l-1001", "reason": "Torn box", "notify_customer": "on"})
    assert asked.status_code == 303
    [event] = [e for e in _events(runtime, item.id) if e.type == "order_action_requested"]
    assert event.data["action"] == "refund" and event.data["amount"] == "39000"
    assert event.data["reference"] == f"{item.reference}-A1" and event.actor.endswith("a agent")
    page = board.get(asked.headers["Location"]).get_data(as_text=True)
    assert "Order action requested" in page and "Torn box" in page
