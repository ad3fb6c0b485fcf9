"""Staff intake: phone calls, counter notes and want-slips, recorded through the one intake."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from marshmallow import ValidationError

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.staff import add_staff
from ccms_addon.store import repository
from ccms_addon.store.models import Merchant, StaffRole, VocKind, utcnow
from ccms_addon.voc.service import VocActionError, VocDesk, actor_for
from ccms_addon.voc.staff_intake import StaffNoteSchema, record_staff_note
from tests.voc_intake.conftest import events, items


@pytest.fixture
def staff(runtime, shop):
    with runtime.db.session() as s:
        agent = add_staff(s, shop.merchant_id, "lee@kshop.test", "Lee", StaffRole.AGENT)
        s.expunge_all()
    return agent


@pytest.fixture
def order(runtime, shop) -> int:
    placed = datetime(2026, 11, 1, tzinfo=timezone.utc)
    record = OrderRecord(
        platform_order_id="o-1001", number="#1001", currency="KRW", total=Decimal("39000"),
        updated_at=placed, placed_at=placed, financial_status=FinancialStatus.PAID,
        fulfillment_status=FulfillmentStatus.FULFILLED, email="buyer@example.kr",
        phone="010-2222-3333", customer_name="박민", locale="ko",
        customer=CustomerRecord(platform_customer_id="c-1", email="buyer@example.kr", name="박민"),
        lines=(OrderLineRecord("l-1", "Cotton shirt", 1, Decimal("39000"), product_id="P-1"),))
    with runtime.db.session() as s:
        [change] = repository.upsert_orders(s, shop.id, [record])
    return change.order_id


def test_a_phone_call_about_an_order(runtime, shop, staff, order):
    called = utcnow() - timedelta(hours=2)
    item = record_staff_note(runtime, shop.id, staff, "complaint", "phone",
                             "  택배 상자가 젖어서 왔다고 하심  ", order_number="1001",
                             occurred_at=called)
    [stored] = items(runtime)
    assert stored.id == item.id
    assert (stored.kind, stored.channel, stored.body) == (VocKind.COMPLAINT, "phone",
                                                         "택배 상자가 젖어서 왔다고 하심")
    assert stored.order_id == order and stored.product_ref == "P-1"
    # the note left the contact out: the order's
    assert (stored.contact_name, stored.contact_email, stored.contact_phone, stored.locale) == (
        "박민", "buyer@example.kr", "010-2222-3333", "ko")
    assert abs(stored.created_at - called) < timedelta(seconds=1)
    [received] = events(runtime, item.id)
    assert received.actor == actor_for(staff)
    assert received.data == {"channel": "phone", "recorded_by": staff.id, "order_number": "1001"}


def test_a_want_slip_heard_at_the_counter(runtime, shop, staff):
    record_staff_note(runtime, shop.id, staff, "want_slip", "staff",
                      "손님이 피팅룸이 좁다고 일행에게 말하는 것을 들음", severity="low")
    [slip] = items(runtime)
    assert (slip.kind, slip.channel, slip.severity) == (VocKind.WANT_SLIP, "staff", "low")
    assert slip.contact_email is None and slip.order_id is None
    # answered in person, recorded as such: there is no address to write to
    VocDesk(runtime).reply([shop.id], slip.id, actor_for(staff), "피팅룸 확장 검토",
                           given_outside=True)


@pytest.mark.parametrize("changes, field", [
    ({"kind": "claim"}, "kind"),
    ({"channel": "email"}, "channel"),
    ({"body": "   "}, "body"),
    ({"contact_email": "not-an-address"}, "contact_email"),
    ({"contact_phone": "call me"}, "contact_phone"),
    ({"occurred_at": utcnow() + timedelta(days=1)}, "occurred_at"),
    ({"occurred_at": utcnow() - timedelta(days=400)}, "occurred_at"),
    ({"order_number": "9999"}, "order_number"),
    ({"severity": "urgent"}, "severity"),
])
def test_invalid_notes_are_refused_with_their_field(runtime, shop, staff, order, changes, field):
    note = {"kind": "inquiry", "channel": "phone", "body": "배송 문의", **changes}
    with pytest.raises(ValidationError) as refused:
        record_staff_note(runtime, shop.id, staff, **note)
    assert field in refused.value.messages
    assert items(runtime) == []


def test_the_schema_is_what_an_api_loads(runtime, shop):
    note = StaffNoteSchema().load({"kind": "praise", "channel": "staff", "body": "친절했다고 하심",
                                   "occurred_at": "2026-11-20T10:00:00+09:00"})
    assert note["occurred_at"] == datetime(2026, 11, 20, 1, tzinfo=timezone.utc)
    with pytest.raises(ValidationError) as refused:
        StaffNoteSchema().load({"kind": "praise", "channel": "staff", "body": "x", "extra": 1})
    assert "extra" in refused.value.messages


def test_staff_record_only_for_their_merchants_shops(runtime, shop, staff, make_shop):
    other = make_shop("shopify", "other.myshopify.com",
                      merchant=Merchant(name="O", email="o@other.test")).shop
    with pytest.raises(VocActionError) as refused:
        record_staff_note(runtime, other.id, staff, "inquiry", "phone", "문의")
    assert refused.value.status == 404
    with runtime.db.session() as s:
        gone = add_staff(s, shop.merchant_id, "gone@kshop.test", "Gone", StaffRole.AGENT)
        gone.active = False
        s.flush()
        s.expunge_all()
    with pytest.raises(VocActionError) as refused:
        record_staff_note(runtime, shop.id, gone, "inquiry", "phone", "문의")
    assert refused.value.status == 403
    assert items(runtime) == []
