"""Recording a voice of the customer: the one way a VOC item comes into the store, whatever the
channel (widget, follow-up, platform, staff…). Later surfaces call this; they never insert rows
themselves, so every item gets a reference number, a first timeline event and the broadcast hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ccms_addon.runtime import Runtime
from ccms_addon.store.models import VocChannel, VocEvent, VocItem, VocKind, VocStatus, utcnow

log = logging.getLogger(__name__)

#: how often a reference number clash (two items at the same instant) is retried
REFERENCE_ATTEMPTS = 5


@dataclass(frozen=True)
class NewVocItem:
    kind: VocKind
    channel: VocChannel
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
    #: hours promised for an acknowledgement; sets ``acknowledge_due_at`` from the creation time
    ack_promise_hours: int | None = None
    #: what the first ``received`` event keeps besides the channel (e.g. the order number as typed)
    event_data: dict | None = None
    #: called with (session, item) before the commit: rows that belong with the item (a claim)
    #: are written in the same transaction, so there is never one without the other
    attach: Callable[[Session, VocItem], None] | None = None


def reference_for(year: int, sequence: int) -> str:
    """The number shown to the customer, e.g. ``VOC-2026-000123``."""
    return f"VOC-{year}-{sequence:06d}"


def record_voc_item(runtime: Runtime, shop_id: int, new: NewVocItem) -> VocItem:
    """Store the item with its ``received`` event, then fire ``voc_item_created``."""
    for _ in range(REFERENCE_ATTEMPTS):
        try:
            with runtime.db.session() as session:
                now = utcnow()
                prefix = f"VOC-{now.year}-"
                count = session.scalar(select(func.count()).select_from(VocItem).where(
                    VocItem.shop_id == shop_id, VocItem.reference.like(prefix + "%")))
                item = VocItem(shop_id=shop_id, reference=reference_for(now.year, count + 1),
                               kind=new.kind, channel=new.channel, status=VocStatus.RECEIVED,
                               subject=new.subject, body=new.body, locale=new.locale,
                               contact_name=new.contact_name, contact_email=new.contact_email,
                               contact_phone=new.contact_phone, order_id=new.order_id,
                               customer_id=new.customer_id, category=new.category,
                               acknowledge_due_at=now + timedelta(hours=new.ack_promise_hours)
                               if new.ack_promise_hours else None,
                               created_at=now, updated_at=now)
                session.add(item)
                session.flush()
                session.add(VocEvent(shop_id=shop_id, voc_item_id=item.id, type="received",
                                     to_status=VocStatus.RECEIVED.value, actor=new.actor,
                                     data={"channel": new.channel.value, **(new.event_data or {})},
                                     created_at=now))
                if new.attach is not None:
                    new.attach(session, item)
            break
        except IntegrityError:
            continue
    else:
        raise RuntimeError("could not allocate a VOC reference number")
    try:
        runtime.pm.hook.voc_item_created(shop_id=shop_id, voc_item_id=item.id,
                                         kind=item.kind.value, channel=item.channel.value)
    except Exception:  # noqa: BLE001 — the item is stored; a plugin's failure must not undo that
        log.exception("a voc_item_created hook failed for item %s", item.id)
    return item


def add_event(session: Session, item: VocItem, type_: str, actor: str, *,
              to_status: VocStatus | None = None, note: str | None = None,
              data: dict | None = None) -> VocEvent:
    """Append one event to an item's timeline, moving its status when ``to_status`` is given."""
    now = utcnow()
    from_status = item.status.value
    if to_status is not None and to_status is not item.status:
        item.status = to_status
        item.updated_at = now
    event = VocEvent(shop_id=item.shop_id, voc_item_id=item.id, type=type_, actor=actor,
                     from_status=from_status if to_status else None,
                     to_status=to_status.value if to_status else None, note=note, data=data,
                     created_at=now)
    session.add(event)
    return event
