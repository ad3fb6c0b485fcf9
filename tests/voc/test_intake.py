"""Recording an item: classification (caller, classify_voc, rules), due times in business hours,
duplicates, recurrence, the issues record, the broadcast hook."""

from datetime import timedelta

from sqlalchemy import select

from ccms_addon import hookimpl
from ccms_addon.store.models import VocChannel, VocEvent, VocIssue, VocItem, VocKind, VocStatus
from ccms_addon.voc.channels import Channel
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.settings import business_hours_of
from tests.voc.conftest import new_item, sync_order


def _row(runtime, item_id) -> VocItem:
    with runtime.db.session() as s:
        item = s.get(VocItem, item_id)
        s.expunge(item)
        return item


def test_keyword_rules_classify_and_set_severity(runtime, shop):
    late = new_item(runtime, shop.id, body="배송이 너무 늦어요")
    broken = new_item(runtime, shop.id, body="The mug arrived BROKEN", locale="en")
    plain = new_item(runtime, shop.id, body="Do you ship to Jeju?", kind=VocKind.INQUIRY)
    assert (late.category, late.severity) == ("delivery", "normal")
    assert (broken.category, broken.severity) == ("quality", "high")
    assert (plain.category, plain.severity) == (None, "normal")


def test_the_callers_category_wins_over_the_rules(runtime, shop):
    item = new_item(runtime, shop.id, body="broken and late", category="delivery")
    assert (item.category, item.severity) == ("delivery", "high")  # severity still from the rule


def test_hook_classify_voc(runtime, shop):
    seen = []

    class Classifier:
        @hookimpl
        def classify_voc(self, shop_id, kind, channel, subject, body, order_id):
            seen.append((shop_id, kind, channel, subject, body, order_id))
            return {"category": "refund", "severity": "critical"} if "refund" in body else None

    runtime.pm.register(Classifier())
    smart = new_item(runtime, shop.id, body="I want a refund, it is broken", subject="Hi")
    fallback = new_item(runtime, shop.id, body="It is broken")
    assert (smart.category, smart.severity) == ("refund", "critical")
    assert (fallback.category, fallback.severity) == ("quality", "high")  # the rules decided
    assert seen[0] == (shop.id, "complaint", "widget", "Hi", "I want a refund, it is broken", None)


def test_due_times_run_on_business_hours(runtime, shop):
    item = new_item(runtime, shop.id, body="파손되어 왔어요")  # quality, high: 4 business hours
    with runtime.db.session() as s:
        from ccms_addon.store.models import Shop
        clock = business_hours_of(s.get(Shop, shop.id))
    row = _row(runtime, item.id)
    assert clock.between(row.created_at, row.acknowledge_due_at) == timedelta(hours=2)
    assert clock.between(row.created_at, row.respond_due_at) == timedelta(hours=4)
    assert row.acknowledge_due_at == clock.add(row.created_at, 2)


def test_a_second_item_on_the_same_order_and_problem_is_linked(runtime, shop):
    order_id = sync_order(runtime, shop.id)
    first = new_item(runtime, shop.id, order_id=order_id)
    second = new_item(runtime, shop.id, order_id=order_id, body="still late!!", channel=VocChannel.EMAIL)
    other_problem = new_item(runtime, shop.id, order_id=order_id, body="and it is broken")
    third = new_item(runtime, shop.id, order_id=order_id, body="배송 언제 와요")
    assert first.duplicate_of_id is None and other_problem.duplicate_of_id is None
    assert second.duplicate_of_id == first.id and third.duplicate_of_id == first.id
    assert first.product_ref == "P-1"  # taken from the order's line
    with runtime.db.session() as s:
        [received] = s.scalars(select(VocEvent).where(VocEvent.voc_item_id == second.id)).all()
    assert received.data == {"channel": "email", "duplicate_of": first.id}


def test_the_same_category_on_the_same_product_raises_the_recurrence_flag(runtime, shop):
    one = new_item(runtime, shop.id, order_id=sync_order(runtime, shop.id, "1001"), body="broken")
    two = new_item(runtime, shop.id, order_id=sync_order(runtime, shop.id, "1002"), body="broken too")
    elsewhere = new_item(runtime, shop.id, order_id=sync_order(runtime, shop.id, "1003", product="P-2"),
                         body="broken")
    assert (one.recurrence, two.recurrence, elsewhere.recurrence) == (False, True, False)
    with runtime.db.session() as s:
        flagged = s.scalar(select(VocEvent).where(VocEvent.voc_item_id == two.id,
                                                  VocEvent.type == "recurrence_flagged"))
    assert flagged.data == {"category": "quality", "product_ref": "P-1", "count": 2, "window_days": 30}


def test_every_issue_raised_is_recorded(runtime, shop):
    item = record_voc_item(runtime, shop.id, NewVocItem(
        kind=VocKind.COMPLAINT, channel=VocChannel.PHONE, body="Late, and the courier was rude",
        actor="staff:1:Lee", category="delivery", more_issues=[("courier", "rude on the phone")]))
    with runtime.db.session() as s:
        issues = s.scalars(select(VocIssue).where(VocIssue.voc_item_id == item.id)
                           .order_by(VocIssue.id)).all()
    assert [(i.category, i.summary, i.handled) for i in issues] == [
        ("delivery", None, False), ("courier", "rude on the phone", False)]


def test_a_note_taken_after_the_call_keeps_when_it_happened(runtime, shop):
    from ccms_addon.store.models import utcnow
    earlier = utcnow() - timedelta(hours=3)
    item = new_item(runtime, shop.id, channel=VocChannel.PHONE, occurred_at=earlier)
    assert _row(runtime, item.id).created_at == earlier
    assert item.status is VocStatus.RECEIVED


def test_hook_register_channels(runtime, shop):
    class Instagram:
        @hookimpl
        def register_channels(self):
            return [Channel("instagram", {"en": "Instagram", "ko": "인스타그램"}, "instagram_dm")]

    runtime.pm.register(Instagram())
    runtime.__dict__.pop("channels", None)
    assert {"widget", "email", "phone", "instagram"} <= set(runtime.channels)
    assert runtime.channels["phone"].reply_notifier is None
    assert runtime.channels["instagram"].label("ko") == "인스타그램"
    item = new_item(runtime, shop.id, channel="instagram", contact_email=None,
                    contact_phone="@minpark")
    assert _row(runtime, item.id).channel == "instagram"
