"""Recording a voice of the customer: the one way a VOC item comes into the store, whatever the
channel (widget, follow-up, platform event, email, phone, staff, a plugin's channel).

Every item gets, in one transaction: a reference number, its category and severity (the caller's,
else a ``classify_voc`` plugin's, else the shop's keyword rules), its acknowledgement and response
due times in business hours, a link to the earlier item it duplicates (same order, same problem),
the recurrence flag (the same category on the same product again within the window), one
:class:`VocIssue` per problem raised, and its first ``received`` event. After the commit the
``voc_item_created`` hook fires (the acknowledgement and the merchant's notification hang on it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (OrderLine, Shop, VocChannel, VocIssue, VocItem, VocKind,
                                     VocStatus, utcnow)
from ccms_addon.voc.lifecycle import add_event
from ccms_addon.voc.settings import ack_promise_hours, business_hours_of, sla_hours, voc_settings

log = logging.getLogger(__name__)

#: how often a reference number clash (two items at the same instant) is retried
REFERENCE_ATTEMPTS = 5


@dataclass(frozen=True)
class NewVocItem:
    kind: VocKind
    #: a :class:`VocChannel` or the name of a channel a plugin registered
    channel: VocChannel | str
    body: str
    actor: str
    subject: str | None = None
    locale: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    order_id: int | None = None
    customer_id: int | None = None
    category: str | None = None
    severity: str | None = None
    #: the platform's product id the item is about; taken from the order's first line when unset
    product_ref: str | None = None
    #: the Message-ID of an inbound email, so replies land in the customer's thread
    thread_ref: str | None = None
    #: further problems the customer raised besides the main one: (category, summary)
    more_issues: Sequence[tuple[str, str | None]] = field(default_factory=tuple)
    #: hours promised for an acknowledgement (business hours); the shop's promise when unset
    ack_promise_hours: int | None = None
    #: what the first ``received`` event keeps besides the channel (e.g. the order number as typed)
    event_data: dict | None = None
    #: when it happened, if earlier than now (a phone call noted afterwards, a platform event)
    occurred_at: datetime | None = None
    #: called with (session, item) before the commit: rows that belong with the item (a claim)
    #: are written in the same transaction, so there is never one without the other
    attach: Callable[[Session, VocItem], None] | None = None


def reference_for(year: int, sequence: int) -> str:
    """The number shown to the customer, e.g. ``VOC-2026-000123``."""
    return f"VOC-{year}-{sequence:06d}"


def channel_name(channel: VocChannel | str) -> str:
    return channel.value if isinstance(channel, VocChannel) else str(channel)


def classify(runtime: Runtime, shop: Shop, settings: dict, new: NewVocItem
             ) -> tuple[str | None, str]:
    """Category and severity: what the caller gave, else a plugin's verdict, else the rules."""
    category, severity = new.category, new.severity
    if category is None or severity is None:
        verdict = runtime.pm.hook.classify_voc(
            shop_id=shop.id, kind=new.kind.value, channel=channel_name(new.channel),
            subject=new.subject, body=new.body, order_id=new.order_id) or {}
        category = category or verdict.get("category")
        severity = severity or verdict.get("severity")
    if category is None or severity is None:
        text = f"{new.subject or ''}\n{new.body}".casefold()
        for rule in settings["rules"]:
            if rule["kinds"] and new.kind.value not in rule["kinds"]:
                continue
            if any(word.casefold() in text for word in rule["keywords"]):
                category = category or rule["category"]
                severity = severity or rule["severity"]
                if category is not None and severity is not None:
                    break
    return category, severity or settings["default_severity"]


def record_voc_item(runtime: Runtime, shop_id: int, new: NewVocItem) -> VocItem:
    """Store the item with everything it carries (see the module), then fire ``voc_item_created``."""
    for _ in range(REFERENCE_ATTEMPTS):
        try:
            with runtime.db.session() as session:
                item = _insert(runtime, session, shop_id, new)
            break
        except IntegrityError:
            continue
    else:
        raise RuntimeError("could not allocate a VOC reference number")
    try:
        runtime.pm.hook.voc_item_created(shop_id=shop_id, voc_item_id=item.id,
                                         kind=item.kind.value, channel=item.channel)
    except Exception:  # noqa: BLE001 — the item is stored; a plugin's failure must not undo that
        log.exception("a voc_item_created hook failed for item %s", item.id)
    return item


def _insert(runtime: Runtime, session: Session, shop_id: int, new: NewVocItem) -> VocItem:
    shop = session.get(Shop, shop_id)
    settings = voc_settings(shop.settings)
    now = utcnow()
    created = min(new.occurred_at, now) if new.occurred_at else now
    category, severity = classify(runtime, shop, settings, new)
    clock = business_hours_of(shop)
    ack_hours = (new.ack_promise_hours if new.ack_promise_hours is not None
                 else ack_promise_hours(shop))
    product_ref = new.product_ref
    if product_ref is None and new.order_id is not None:
        product_ref = session.scalar(select(OrderLine.product_id).where(
            OrderLine.shop_id == shop_id, OrderLine.order_id == new.order_id,
            OrderLine.product_id.is_not(None)).order_by(OrderLine.id).limit(1))
    prefix = f"VOC-{now.year}-"
    count = session.scalar(select(func.count()).select_from(VocItem).where(
        VocItem.shop_id == shop_id, VocItem.reference.like(prefix + "%")))
    item = VocItem(shop_id=shop_id, reference=reference_for(now.year, count + 1),
                   kind=new.kind, channel=channel_name(new.channel), status=VocStatus.RECEIVED,
                   subject=new.subject, body=new.body, locale=new.locale,
                   contact_name=new.contact_name, contact_email=new.contact_email,
                   contact_phone=new.contact_phone, order_id=new.order_id,
                   customer_id=new.customer_id, category=category, severity=severity,
                   product_ref=product_ref, thread_ref=new.thread_ref,
                   acknowledge_due_at=clock.add(created, ack_hours) if ack_hours else None,
                   respond_due_at=clock.add(created, sla_hours(settings, new.kind.value, severity)),
                   recurrence=False, escalation_level=0, reopened_count=0,
                   created_at=created, updated_at=now)
    item.duplicate_of_id = _earlier_duplicate(session, shop_id, new.order_id, category,
                                              created - timedelta(days=settings["duplicate_window_days"]))
    session.add(item)
    session.flush()
    event_data = {"channel": item.channel, **(new.event_data or {})}
    if item.duplicate_of_id:
        event_data["duplicate_of"] = item.duplicate_of_id
    add_event(session, item, "received", new.actor, to_status=VocStatus.RECEIVED,
              data=event_data, at=created)
    if product_ref and category:
        since = created - timedelta(days=settings["recurrence_window_days"])
        seen = session.scalar(select(func.count()).select_from(VocItem).where(
            VocItem.shop_id == shop_id, VocItem.product_ref == product_ref,
            VocItem.category == category, VocItem.created_at >= since,
            VocItem.duplicate_of_id.is_(None)))
        if item.duplicate_of_id is None and seen >= settings["recurrence_threshold"]:
            item.recurrence = True
            add_event(session, item, "recurrence_flagged", "system", at=created,
                      data={"category": category, "product_ref": product_ref, "count": seen,
                            "window_days": settings["recurrence_window_days"]})
    issues = ([(category, None)] if category else []) + list(new.more_issues)
    for issue_category, summary in issues:
        session.add(VocIssue(shop_id=shop_id, voc_item_id=item.id, category=issue_category,
                             summary=summary, handled=False, created_at=created))
    if new.attach is not None:
        new.attach(session, item)
    return item


def _earlier_duplicate(session: Session, shop_id: int, order_id: int | None,
                       category: str | None, since: datetime) -> int | None:
    """The first item about the same order and problem within the window, if any."""
    if order_id is None:
        return None
    query = select(VocItem.id, VocItem.duplicate_of_id).where(
        VocItem.shop_id == shop_id, VocItem.order_id == order_id, VocItem.created_at >= since)
    query = query.where(VocItem.category == category if category else VocItem.category.is_(None))
    first = session.execute(query.order_by(VocItem.id).limit(1)).first()
    if first is None:
        return None
    return first.duplicate_of_id or first.id
