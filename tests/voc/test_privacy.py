"""Privacy reaches the VOC lifecycle: redaction and retention forget the customer's words and
contacts everywhere on the item's timeline, and keep the figures."""

from datetime import timedelta

from sqlalchemy import select

from ccms_addon.store.models import Shop, VocEvent, VocIssue, VocItem, utcnow
from ccms_addon.store.privacy import (REDACTED_TEXT, export_customer_data, purge_expired_voc,
                                      redact_customers)
from ccms_addon.voc.service import VocDesk
from tests.voc.conftest import SHOPPER, new_item


def _closed_item(runtime, shop, body="배송이 늦어요 010-9999-8888"):
    desk = VocDesk(runtime)
    item = new_item(runtime, shop.id, body=body, subject="늦은 배송", thread_ref="<m@x>",
                    more_issues=[("courier", "the courier Kim was rude")])
    desk.reply([shop.id], item.id, "a", f"Dear {SHOPPER}, sorry")
    desk.close([shop.id], item.id, "a", root_cause="backlog")
    desk.record_satisfaction(item.id, 2, "still upset, call me at 010-9999-8888")
    return item


def _assert_forgotten(runtime, item_id):
    with runtime.db.session() as s:
        item = s.get(VocItem, item_id)
        assert (item.body, item.subject, item.contact_email, item.contact_name,
                item.satisfaction_comment, item.thread_ref) == (REDACTED_TEXT, None, None, None,
                                                                None, None)
        assert item.satisfaction == 2 and item.category == "delivery"  # the figures stay
        notes = [e.note for e in s.scalars(select(VocEvent).where(VocEvent.voc_item_id == item_id))]
        assert all(n in (None, REDACTED_TEXT) for n in notes) and REDACTED_TEXT in notes
        assert all(i.summary is None for i in s.scalars(
            select(VocIssue).where(VocIssue.voc_item_id == item_id)))


def test_a_data_request_hands_over_what_the_customer_wrote_and_was_told(runtime, shop):
    item = _closed_item(runtime, shop)
    with runtime.db.session() as s:
        request = export_customer_data(s, runtime.box, shop.id, platform_request_id=None,
                                       platform_customer_id=None, email=SHOPPER)
        s.flush()
        export = runtime.box.decrypt_json(request.export_encrypted)
    [voc] = export["voc_items"]
    assert voc["reference"] == item.reference and voc["satisfaction"] == 2
    assert [m["type"] for m in voc["messages"]] == ["reply", "satisfaction"]


def test_redaction_reaches_the_timeline(runtime, shop):
    item = _closed_item(runtime, shop)
    with runtime.db.session() as s:
        redact_customers(s, shop.id, emails=[SHOPPER])
    _assert_forgotten(runtime, item.id)


def test_retention_purges_items_closed_long_enough_ago(runtime, shop):
    old, recent = _closed_item(runtime, shop), _closed_item(runtime, shop, body="recent")
    with runtime.db.session() as s:
        s.get(VocItem, old.id).closed_at = utcnow() - timedelta(days=200)
    assert purge_expired_voc(runtime) == 0  # no retention set: nothing is purged
    with runtime.db.session() as s:
        row = s.get(Shop, shop.id)
        row.settings = {**row.settings, "voc": {**row.settings["voc"], "retention_months": 6}}
    assert purge_expired_voc(runtime) == 1
    assert purge_expired_voc(runtime) == 0  # idempotent
    _assert_forgotten(runtime, old.id)
    with runtime.db.session() as s:
        assert s.get(VocItem, recent.id).body == "recent"
