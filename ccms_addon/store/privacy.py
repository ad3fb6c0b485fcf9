"""Data-subject requests and the shop's lifecycle: export, customer redaction, shop redaction,
uninstall. Each function works inside the caller's transaction and touches one shop only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ccms_addon.crypto import SecretBox
from ccms_addon.programs.enrollment import stop_shop
from ccms_addon.store.models import (Claim, Customer, DeliveryStatus, Enrollment,
                                     EnrollmentStatus, FollowUp, FollowUpStatus, Order, OrderLine,
                                     OutboundMessage, PrivacyRequest, PrivacyRequestKind, Program,
                                     ProgramVersion, Refund, Shop, ShopStatus, VocEvent, VocIssue,
                                     VocItem,
                                     WebhookDelivery, utcnow)

#: what replaces a customer's own words in a redacted VOC item
REDACTED_TEXT = "[redacted]"


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _matching_customers(session: Session, shop_id: int, platform_ids: Sequence[str],
                        emails: Sequence[str]) -> list[Customer]:
    conditions = []
    if platform_ids:
        conditions.append(Customer.platform_customer_id.in_(list(platform_ids)))
    if emails:
        conditions.append(Customer.email.in_([e.lower() for e in emails] + list(emails)))
    if not conditions:
        return []
    return list(session.scalars(select(Customer).where(Customer.shop_id == shop_id,
                                                       or_(*conditions))))


def _matching_orders(session: Session, shop_id: int, customer_ids: Sequence[int],
                     emails: Sequence[str], platform_order_ids: Sequence[str]) -> list[Order]:
    conditions = []
    if customer_ids:
        conditions.append(Order.customer_id.in_(list(customer_ids)))
    if emails:
        conditions.append(Order.email.in_(list(emails)))
    if platform_order_ids:
        conditions.append(Order.platform_order_id.in_(list(platform_order_ids)))
    if not conditions:
        return []
    return list(session.scalars(select(Order).where(Order.shop_id == shop_id, or_(*conditions))))


def export_customer_data(session: Session, box: SecretBox, shop_id: int, *,
                         platform_request_id: str | None, platform_customer_id: str | None,
                         email: str | None, platform_order_ids: Sequence[str] = ()) -> PrivacyRequest:
    """Everything we hold on one customer, stored encrypted for the merchant to hand over."""
    customers = _matching_customers(session, shop_id, [platform_customer_id] if platform_customer_id
                                    else [], [email] if email else [])
    emails = [e for e in {email, *(c.email for c in customers)} if e]
    orders = _matching_orders(session, shop_id, [c.id for c in customers], emails, platform_order_ids)
    voc_items = list(session.scalars(select(VocItem).where(
        VocItem.shop_id == shop_id,
        or_(VocItem.customer_id.in_([c.id for c in customers] or [-1]),
            VocItem.contact_email.in_(emails or [""]),
            VocItem.order_id.in_([o.id for o in orders] or [-1])))))
    export = {
        "customers": [dict(platform_customer_id=c.platform_customer_id, email=c.email, name=c.name,
                           phone=c.phone) for c in customers],
        "orders": [dict(platform_order_id=o.platform_order_id, number=o.number, email=o.email,
                        phone=o.phone, customer_name=o.customer_name, currency=o.currency,
                        total=str(o.total), placed_at=o.placed_at,
                        lines=[dict(title=li.title, quantity=li.quantity) for li in o.lines])
                   for o in orders],
        "voc_items": [dict(reference=v.reference, kind=v.kind.value, channel=v.channel,
                           status=v.status.value, subject=v.subject, body=v.body,
                           contact_name=v.contact_name, contact_email=v.contact_email,
                           contact_phone=v.contact_phone, satisfaction=v.satisfaction,
                           satisfaction_comment=v.satisfaction_comment, created_at=v.created_at,
                           closed_at=v.closed_at,
                           # what the customer was told and wrote later (internal notes stay)
                           messages=[dict(type=e.type, text=e.note, at=e.created_at)
                                     for e in v.events if e.type in _CUSTOMER_FACING_EVENTS])
                      for v in voc_items],
        "follow_ups": [dict(step=f.step, due_at=f.due_at, status=f.status.value, answer=f.answer,
                            answer_comment=f.answer_comment, answered_at=f.answered_at)
                       for f in session.scalars(select(FollowUp).where(
                           FollowUp.shop_id == shop_id,
                           FollowUp.order_id.in_([o.id for o in orders] or [-1])))],
        "claims": [dict(program=c.program_kind.value, status=c.status.value, event=c.event,
                        event_date=c.event_date, evidence=c.evidence, created_at=c.created_at)
                   for c in session.scalars(select(Claim).where(
                       Claim.shop_id == shop_id,
                       Claim.voc_item_id.in_([v.id for v in voc_items] or [-1])))],
        "messages": [dict(channel=m.channel, recipient=m.recipient, subject=m.subject,
                          sent_at=m.sent_at)
                     for m in session.scalars(select(OutboundMessage).where(
                         OutboundMessage.shop_id == shop_id,
                         OutboundMessage.recipient.in_(emails or [""])))],
    }
    request = PrivacyRequest(
        shop_id=shop_id, kind=PrivacyRequestKind.DATA_REQUEST,
        platform_request_id=platform_request_id,
        subject=dict(platform_customer_id=platform_customer_id,
                     platform_order_ids=list(platform_order_ids)),
        export_encrypted=box.encrypt(json.dumps(export, default=_json_default)),
        completed_at=utcnow())
    session.add(request)
    return request


def redact_customers(session: Session, shop_id: int, *, platform_customer_ids: Sequence[str] = (),
                     emails: Sequence[str] = (), platform_order_ids: Sequence[str] = ()) -> int:
    """Erase the personal data of customers (and of the named orders) everywhere we keep it:
    customer rows, order contacts, VOC items and the raw webhook bodies that mention them.
    Returns how many rows were touched."""
    now = utcnow()
    customers = _matching_customers(session, shop_id, platform_customer_ids, emails)
    all_emails = [e for e in {*emails, *(c.email for c in customers)} if e]
    orders = _matching_orders(session, shop_id, [c.id for c in customers], all_emails,
                              platform_order_ids)
    touched = 0
    for customer in customers:
        customer.email = customer.name = customer.phone = None
        customer.redacted_at = now
        touched += 1
    for order in orders:
        order.email = order.phone = order.customer_name = None
        touched += 1
    voc_filter = or_(VocItem.customer_id.in_([c.id for c in customers] or [-1]),
                     VocItem.contact_email.in_(all_emails or [""]),
                     VocItem.order_id.in_([o.id for o in orders] or [-1]))
    item_ids = [row.id for row in session.execute(
        update(VocItem).where(VocItem.shop_id == shop_id, voc_filter)
        .values(**_VOC_PERSONAL).returning(VocItem.id)).all()]
    touched += len(item_ids) + _blank_voc_texts(session, shop_id, item_ids)
    order_ids = [o.id for o in orders] or [-1]
    touched += len(session.execute(
        update(FollowUp).where(FollowUp.shop_id == shop_id, FollowUp.order_id.in_(order_ids))
        .values(answer_comment=None).returning(FollowUp.id)).all())
    # nothing more is sent to a redacted customer
    session.execute(update(FollowUp).where(FollowUp.shop_id == shop_id,
                                           FollowUp.order_id.in_(order_ids),
                                           FollowUp.status.in_((FollowUpStatus.SCHEDULED,
                                                                FollowUpStatus.QUEUED)))
                    .values(status=FollowUpStatus.CANCELLED, skip_reason="customer redacted",
                            lease_until=None))
    session.execute(update(Enrollment).where(Enrollment.shop_id == shop_id,
                                             Enrollment.order_id.in_(order_ids),
                                             Enrollment.status == EnrollmentStatus.ACTIVE)
                    .values(status=EnrollmentStatus.CANCELLED, cancelled_reason="customer redacted"))
    session.execute(update(Claim).where(Claim.shop_id == shop_id, Claim.order_id.in_(order_ids))
                    .values(evidence={}))
    touched += len(session.execute(
        update(OutboundMessage).where(OutboundMessage.shop_id == shop_id,
                                      OutboundMessage.recipient.in_(all_emails or [""]))
        .values(recipient=REDACTED_TEXT, subject=None, body=REDACTED_TEXT, data=None)
        .returning(OutboundMessage.id)).all())
    needles = [n.encode() for n in (*all_emails, *(c.platform_customer_id for c in customers),
                                    *(o.platform_order_id for o in orders)) if n]
    touched += _blank_delivery_bodies(session, shop_id, needles)
    session.add(PrivacyRequest(
        shop_id=shop_id, kind=PrivacyRequestKind.CUSTOMER_REDACT,
        subject=dict(platform_customer_ids=list(platform_customer_ids),
                     platform_order_ids=list(platform_order_ids), customers=len(customers),
                     orders=len(orders)),
        completed_at=now))
    return touched


#: timeline events whose text the customer wrote or received (a data request hands them over)
_CUSTOMER_FACING_EVENTS = ("reply", "customer_message", "satisfaction")

#: what a VOC item forgets of its customer (the figures — kind, category, times, score — stay)
_VOC_PERSONAL = dict(body=REDACTED_TEXT, subject=None, contact_name=None, contact_email=None,
                     contact_phone=None, satisfaction_comment=None, thread_ref=None)


def _blank_voc_texts(session: Session, shop_id: int, item_ids: Sequence[int]) -> int:
    """The timeline's words (notes, replies, the customer's later messages) and the issues'
    summaries of these items: they quote the customer. Event types and times stay."""
    touched = 0
    for start in range(0, len(item_ids), 500):
        chunk = list(item_ids[start:start + 500])
        touched += session.execute(
            update(VocEvent).where(VocEvent.shop_id == shop_id, VocEvent.voc_item_id.in_(chunk),
                                   VocEvent.note.is_not(None))
            .values(note=REDACTED_TEXT)).rowcount
        session.execute(update(VocIssue).where(VocIssue.shop_id == shop_id,
                                               VocIssue.voc_item_id.in_(chunk),
                                               VocIssue.summary.is_not(None))
                        .values(summary=None))
    return touched


def purge_closed_voc(session: Session, shop_id: int, closed_before: datetime,
                     batch: int = 1000) -> int:
    """Retention: forget the personal data of VOC items closed before ``closed_before`` (the
    shop's ``voc.retention_months``). The item stays for the figures and the CCMS record. Returns
    how many items were purged (in batches, so a first run over years of items stays bounded)."""
    purged = 0
    while True:
        ids = session.scalars(select(VocItem.id).where(
            VocItem.shop_id == shop_id, VocItem.closed_at < closed_before,
            VocItem.body != REDACTED_TEXT).order_by(VocItem.id).limit(batch)).all()
        if not ids:
            return purged
        session.execute(update(VocItem).where(VocItem.shop_id == shop_id, VocItem.id.in_(ids))
                        .values(**_VOC_PERSONAL))
        _blank_voc_texts(session, shop_id, ids)
        purged += len(ids)


def _blank_delivery_bodies(session: Session, shop_id: int, needles: list[bytes],
                           batch: int = 500) -> int:
    """Raw payloads of finished deliveries that mention the subject are emptied (kept as a record)."""
    if not needles:
        return 0
    blanked, last_id = 0, 0
    final = [DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED, DeliveryStatus.FAILED]
    while True:
        rows = session.execute(select(WebhookDelivery.id, WebhookDelivery.body).where(
            WebhookDelivery.shop_id == shop_id, WebhookDelivery.id > last_id,
            WebhookDelivery.status.in_(final)).order_by(WebhookDelivery.id).limit(batch)).all()
        if not rows:
            return blanked
        last_id = rows[-1].id
        hits = [r.id for r in rows if any(n in r.body for n in needles)]
        if hits:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(hits))
                            .values(body=b""))
            blanked += len(hits)


def redact_shop(session: Session, shop_id: int, keep_delivery_id: int | None = None) -> None:
    """Delete every row the shop owns; the shop row stays, uninstalled and without secrets, so a
    later reinstall starts clean and late deliveries are still recognised. Redis is the caller's,
    after its commit: ``ccms_addon.queue.forget_shop`` removes the shop's jobs and keys."""
    for model in (Claim, FollowUp, Enrollment, OutboundMessage, VocEvent, VocItem, Refund,
                  OrderLine, Order, Customer, ProgramVersion, Program):
        session.execute(delete(model).where(model.shop_id == shop_id))
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.shop_id == shop_id,
                                                  WebhookDelivery.id != (keep_delivery_id or -1)))
    session.execute(delete(PrivacyRequest).where(PrivacyRequest.shop_id == shop_id))
    uninstall_shop(session, shop_id)
    session.add(PrivacyRequest(shop_id=shop_id, kind=PrivacyRequestKind.SHOP_REDACT, subject={},
                               completed_at=utcnow()))


def uninstall_shop(session: Session, shop_id: int) -> None:
    """The merchant removed the app: its access credentials are void and are dropped at once, and
    no follow-up of the shop is sent any more. After the commit the caller removes the shop's
    queued jobs and keys from Redis (``ccms_addon.queue.forget_shop``)."""
    shop = session.get(Shop, shop_id)
    if shop is None:
        return
    stop_shop(session, shop_id, "shop uninstalled")
    if shop.status is not ShopStatus.UNINSTALLED:
        shop.status = ShopStatus.UNINSTALLED
        shop.uninstalled_at = utcnow()
    shop.credentials_encrypted = None


def purge_expired_voc(runtime, now: datetime | None = None) -> int:
    """The daily retention sweep: every shop with ``voc.retention_months`` set forgets the
    personal data of items closed longer ago than that. Returns how many items were purged."""
    from ccms_addon.programs.schedule import add_months
    from ccms_addon.voc.settings import voc_settings
    now = now or utcnow()
    purged = 0
    with runtime.db.session() as session:
        shops = session.execute(select(Shop.id, Shop.settings)).all()
    for shop_id, settings in shops:
        months = voc_settings(settings)["retention_months"]
        if months:
            with runtime.db.session() as session:
                purged += purge_closed_voc(session, shop_id, add_months(now, -months))
    return purged
