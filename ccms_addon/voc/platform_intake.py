"""Platform events as VOC: a cancellation with the customer's reason, a return, a refund with a note.

The pipeline (:mod:`ccms_addon.jobs.pipeline`) asks :func:`voices_from` what the canonical events of
one delivery say (pure, no store), and, once the order they name is stored, hands the answer to
:func:`record_voices`.

What becomes a voice (channel ``platform``, linked to the order, the platform's reason code in the
event data):

* :class:`~ccms_addon.platforms.OrderCancelled` — asked for by the customer: a **complaint**; by
  the merchant or by nobody the platform names, with words recorded: an **inquiry**; with no words
  and not the customer's: **nothing** (a shop cancelling for stock or fraud is no voice);
* :class:`~ccms_addon.platforms.ReturnRequested` — always the customer's: a **complaint** with a
  reason (code or words), an **inquiry** without;
* a refund with a note (:class:`~ccms_addon.platforms.RefundCreated`, or a refund an order
  carries) — an **inquiry**; a note that repeats the reason of a cancellation or return of the
  same delivery adds nothing. A refund only seen inside an order and older than
  :data:`MAX_REFUND_AGE` is history re-sent with an order update, not a new voice.

One story per order: once an order has a platform item, later platform events about it are
appended to that item's timeline (a ``platform_event`` event) instead of opening a new item.

Idempotent: each voice has a marker (``cancellation:<order>``, ``return:<order>``,
``refund:<refund id>``) kept in its event's data (``platform_event``). A redelivered or replayed
webhook finds it and records nothing. The check runs in the transaction that writes, after
SQLite's write lock or, on PostgreSQL, a transaction-scoped advisory lock per (shop, order), so two
workers racing on copies of one event cannot both record it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from ccms_addon.platforms import (CanonicalEvent, OrderCancelled, OrderChanged, RefundCreated,
                                  RefundRecord, ReturnRequested)
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (Order, Shop, VocChannel, VocEvent, VocItem, VocKind, utcnow)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.lifecycle import add_event

#: a refund seen only inside an order update and older than this is not a new voice
MAX_REFUND_AGE = timedelta(days=30)
#: the event that carries a later platform event on an order's existing item
APPENDED_EVENT = "platform_event"
#: the event data key holding a voice's marker
MARKER_KEY = "platform_event"
#: words longer than this are cut (a platform note is short; the column is not)
MAX_WORDS = 5000
#: times a voice is tried again when a concurrent worker recorded its order's item meanwhile
ATTEMPTS = 3

TEXTS = {
    "en": {"cancellation": "Order {order} cancelled", "return": "Return requested for order {order}",
           "refund": "Refund on order {order}",
           "no_words": "The platform recorded no words from the customer. Reason code: {code}."},
    "ko": {"cancellation": "주문 {order} 취소", "return": "주문 {order} 반품 요청",
           "refund": "주문 {order} 환불",
           "no_words": "플랫폼에 고객이 남긴 말은 없습니다. 사유 코드: {code}."},
    "ja": {"cancellation": "注文 {order} のキャンセル", "return": "注文 {order} の返品依頼",
           "refund": "注文 {order} の返金",
           "no_words": "プラットフォームにお客様の言葉は記録されていません。理由コード：{code}。"},
}


@dataclass(frozen=True)
class PlatformVoice:
    """What one platform event says, ready to record: ``what`` is cancellation, return or refund."""

    marker: str
    what: str
    kind: VocKind
    platform_order_id: str
    reason_code: str | None = None
    words: str | None = None
    #: True when ``words`` are the customer's (a cancellation or return reason); a refund note is
    #: the merchant's record of why
    customer_words: bool = False
    occurred_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def event_data(self, platform: str) -> dict[str, Any]:
        return {MARKER_KEY: self.marker, "platform": platform, "event": self.what,
                "reason_code": self.reason_code, "platform_order_id": self.platform_order_id,
                "customer_words": self.customer_words, **self.details}


class _RecordedMeanwhile(Exception):
    """Inside the new item's transaction: the voice, or an item of its order, appeared."""


def _clean(value: str | None) -> str | None:
    return (value or "").strip()[:MAX_WORDS] or None


def voices_from(events: Iterable[CanonicalEvent], *, now: datetime | None = None
                ) -> list[PlatformVoice]:
    """The voices in one delivery's canonical events, cancellations and returns first."""
    now = now or utcnow()
    voices: list[PlatformVoice] = []
    refunds: dict[str, tuple[RefundRecord, bool]] = {}
    for event in events:
        if isinstance(event, OrderCancelled):
            words = _clean(event.reason)
            if event.by_customer:
                kind = VocKind.COMPLAINT
            elif words:
                kind = VocKind.INQUIRY
            else:
                continue
            voices.append(PlatformVoice(
                f"cancellation:{event.platform_order_id}", "cancellation", kind,
                event.platform_order_id, event.reason_code, words, customer_words=bool(words),
                occurred_at=event.occurred_at,
                details={"by_customer": event.by_customer}))
        elif isinstance(event, ReturnRequested):
            words = _clean(event.reason)
            kind = VocKind.COMPLAINT if (event.reason_code or words) else VocKind.INQUIRY
            voices.append(PlatformVoice(
                f"return:{event.platform_order_id}", "return", kind, event.platform_order_id,
                event.reason_code, words, customer_words=bool(words),
                occurred_at=event.occurred_at,
                details={"claim_id": event.claim_id} if event.claim_id else {}))
        elif isinstance(event, RefundCreated):
            refunds[event.refund.platform_refund_id] = (event.refund, True)
        elif isinstance(event, OrderChanged):
            for refund in event.order.refunds:
                refunds.setdefault(refund.platform_refund_id, (refund, False))
    said = {(v.platform_order_id, v.words) for v in voices if v.words}
    for refund, announced in refunds.values():
        note = _clean(refund.note)
        if not note or (refund.platform_order_id, note) in said:
            continue
        if not announced and refund.created_at and refund.created_at < now - MAX_REFUND_AGE:
            continue
        voices.append(PlatformVoice(
            f"refund:{refund.platform_refund_id}", "refund", VocKind.INQUIRY,
            refund.platform_order_id, None, note, occurred_at=refund.created_at,
            details={"refund_id": refund.platform_refund_id, "amount": str(refund.amount),
                     "currency": refund.currency}))
    return voices


def record_voices(runtime: Runtime, shop_id: int, platform: str,
                  voices: Sequence[PlatformVoice]) -> list[int]:
    """Record each voice once (see the module); the ids of the items created or appended to."""
    touched = []
    for voice in voices:
        item_id = _record(runtime, shop_id, platform, voice)
        if item_id is not None:
            touched.append(item_id)
    return touched


def _record(runtime: Runtime, shop_id: int, platform: str, voice: PlatformVoice) -> int | None:
    for _ in range(ATTEMPTS):
        with runtime.db.session() as session:
            shop = session.get(Shop, shop_id)
            order = session.scalar(select(Order).where(
                Order.shop_id == shop_id, Order.platform_order_id == voice.platform_order_id))
            order_id = order.id if order is not None else None
            if _seen(session, shop_id, order_id, voice.marker):
                return None
            story = _story(session, shop_id, order_id)
            if story is not None:
                return _append(session, story, voice, platform)
            new = _new_item(shop, order, voice, platform)
        try:
            return record_voc_item(runtime, shop_id, new).id
        except _RecordedMeanwhile:
            continue
    raise RuntimeError(f"could not record {voice.marker}: its order's item kept changing")


def _new_item(shop: Shop, order: Order | None, voice: PlatformVoice, platform: str) -> NewVocItem:
    names = TEXTS.get((shop.locale or "en")[:2], TEXTS["en"])
    subject = names[voice.what].format(order=order.number if order else voice.platform_order_id)
    body = voice.words or f"{subject}.\n{names['no_words'].format(code=voice.reason_code or '-')}"
    order_id = order.id if order is not None else None

    def claim(session: Session, item: VocItem) -> None:
        _lock(session, shop.id, voice.platform_order_id)
        if _seen(session, shop.id, order_id, voice.marker, exclude=item.id):
            raise _RecordedMeanwhile()
        story = _story(session, shop.id, order_id)
        if story is not None and story.id != item.id:
            raise _RecordedMeanwhile()

    return NewVocItem(
        kind=voice.kind, channel=VocChannel.PLATFORM, body=body, subject=subject[:300],
        actor=f"platform:{platform}", locale=order.locale if order else None,
        contact_name=order.customer_name if order else None,
        contact_email=order.email if order else None,
        contact_phone=order.phone if order else None, order_id=order_id,
        customer_id=order.customer_id if order else None,
        event_data=voice.event_data(platform), occurred_at=voice.occurred_at, attach=claim)


def _append(session: Session, story: VocItem, voice: PlatformVoice, platform: str) -> int | None:
    """A later event on an order that has its item: one more line on that item's timeline."""
    _lock(session, story.shop_id, voice.platform_order_id)
    # a write before the check: on SQLite it takes the database's write lock, so the check and
    # the insert below are one step for every other writer
    session.execute(update(VocItem).where(VocItem.id == story.id).values(updated_at=utcnow()))
    if _seen(session, story.shop_id, story.order_id, voice.marker):
        return None
    add_event(session, story, APPENDED_EVENT, f"platform:{platform}", note=voice.words,
              data=voice.event_data(platform),
              at=min(voice.occurred_at, utcnow()) if voice.occurred_at else None)
    return story.id


def _lock(session: Session, shop_id: int, platform_order_id: str) -> None:
    """PostgreSQL: one writer at a time per (shop, order) until the transaction ends. SQLite needs
    none: its single writer lock is held once the transaction has written."""
    if session.bind.dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"voc-platform:{shop_id}:{platform_order_id}".encode()).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": int.from_bytes(digest[:8], "big", signed=True)})


def _seen(session: Session, shop_id: int, order_id: int | None, marker: str, *,
          exclude: int | None = None) -> bool:
    """True when a platform item of the shop (of this order, or of no order) carries ``marker``."""
    scope = (or_(VocItem.order_id == order_id, VocItem.order_id.is_(None)) if order_id
             else VocItem.order_id.is_(None))
    query = (select(VocEvent.id).join(VocItem, VocItem.id == VocEvent.voc_item_id)
             .where(VocItem.shop_id == shop_id, VocItem.channel == VocChannel.PLATFORM.value, scope,
                    VocEvent.type.in_(("received", APPENDED_EVENT)),
                    VocEvent.data[MARKER_KEY].as_string() == marker))
    if exclude is not None:
        query = query.where(VocItem.id != exclude)
    return session.scalar(query.limit(1)) is not None


def _story(session: Session, shop_id: int, order_id: int | None) -> VocItem | None:
    """The order's first platform item, which later platform events on the order join."""
    if order_id is None:
        return None
    return session.scalar(select(VocItem).where(
        VocItem.shop_id == shop_id, VocItem.order_id == order_id,
        VocItem.channel == VocChannel.PLATFORM.value).order_by(VocItem.id).limit(1))
