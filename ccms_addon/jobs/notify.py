"""Telling the merchant, by email, that a shopper wrote through the widget — exactly once.

The message goes through the outbox (``ccms_addon.outbox``), keyed ``voc-created:<item id>:merchant``:
recorded ``pending`` before any attempt, claimed, sent once through the ``email`` notifier, retried
with backoff when the server defers it, parked ``unknown`` (never resent) when a send was
interrupted. This module writes the message and finds widget items whose first job was lost
(Redis down when the shopper submitted); the outbox's own sweep retries what is due.

SMTP settings come from ``CCMS_SMTP_URL`` (``smtp://[user:pass@]host[:port]``, ``?starttls=1``,
``smtps://`` for implicit TLS) and ``CCMS_SMTP_FROM``. No URL: nothing is sent, a log line says so.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from rq import Queue
from sqlalchemy import String, cast, literal, select

from ccms_addon.outbox import OutgoingMessage, Outbox, record
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue, shop_job_id
from ccms_addon.runtime import Runtime, current
from ccms_addon.store.models import (Merchant, Order, OutboundMessage, Shop, ShopStatus,
                                     VocChannel, VocEvent, VocItem, utcnow)

log = logging.getLogger(__name__)

#: the job function, by import path so the web process need not import the notifiers
NOTIFY_MERCHANT = "ccms_addon.jobs.notify.notify_merchant_of_voc"
#: the sweep leaves items younger than this to the job enqueued by the request
SWEEP_GRACE = timedelta(minutes=2)
#: the sweep never notifies about items older than this (a merchant who sets an email later is
#: not flooded with old submissions)
SWEEP_WINDOW = timedelta(days=2)
#: rows the sweep hands to RQ per call
SWEEP_BATCH = 500
#: seconds RQ keeps a job's result and a job may run
RESULT_TTL = 3600
JOB_TIMEOUT = 120
EMAIL_CHANNEL = "email"
#: channels where a shopper wrote on their own: the merchant hears of each item at once
NOTIFIED_CHANNELS = (VocChannel.WIDGET, VocChannel.FOLLOW_UP)


def message_key(voc_item_id: int) -> str:
    """The idempotency key of the merchant's email about one VOC item."""
    return f"voc-created:{voc_item_id}:merchant"


def notification_job_id(shop_id: int, voc_item_id: int) -> str:
    return shop_job_id(shop_id, f"notify-voc-{voc_item_id}")


def smtp_configured(runtime: Runtime) -> bool:
    return bool((runtime.settings.platform_settings("smtp").get("url") or "").strip())


# --------------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------------


_CHANNEL_PHRASES = {VocChannel.WIDGET: "through the contact widget of",
                    VocChannel.FOLLOW_UP: "answering a follow-up message of"}


def _one_line(value: str | None) -> str:
    return " ".join((value or "").split())


def compose(shop: Shop, item: VocItem, order_number: str | None, typed_order: str | None
            ) -> tuple[str, str]:
    """Subject and plain-text body. The shopper's words go in verbatim, as text: never HTML."""
    shop_name = _one_line(shop.name) or shop.domain
    subject = f"[{shop_name}] New {item.kind.value} {item.reference}"
    lines = [
        f"A shopper sent a {item.kind.value} {_CHANNEL_PHRASES.get(item.channel, 'to')} "
        f"{shop_name}.",
        "",
        f"Reference:   {item.reference}",
        f"Received:    {item.created_at:%Y-%m-%d %H:%M} UTC",
    ]
    if item.acknowledge_due_at:
        lines.append(f"Acknowledge by: {item.acknowledge_due_at:%Y-%m-%d %H:%M} UTC")
    if item.category:
        lines.append(f"Category:    {item.category}")
    if order_number:
        lines.append(f"Order:       {order_number}")
    elif typed_order:
        lines.append(f"Order number given (no order of this shop with that contact): {typed_order}")
    for label, value in (("Name", item.contact_name), ("Email", item.contact_email),
                         ("Phone", item.contact_phone), ("Language", item.locale)):
        if value:
            lines.append(f"{label + ':':<12} {_one_line(value)}")
    lines += ["", "Message:", "", item.body, "", "--",
              "Sent once by ccms-addon for this reference."]
    return subject, "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------


def notify_merchant_of_voc(voc_item_id: int) -> str:
    """RQ job: email the merchant about one VOC item, at most once. Returns the message's state
    (or why nothing was done: ``not_configured``, ``missing``, ``no_recipient``, ``not_due``)."""
    return MerchantNotifier(current()).run(voc_item_id)


class MerchantNotifier:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def run(self, voc_item_id: int) -> str:
        if not smtp_configured(self.runtime):
            log.warning("no CCMS_SMTP_URL: merchant not emailed about VOC item %s", voc_item_id)
            return "not_configured"
        key = message_key(voc_item_id)
        recorded = self.record(voc_item_id, key)
        if recorded in ("missing", "no_recipient"):
            return recorded
        return Outbox(self.runtime).deliver(key)

    def record(self, voc_item_id: int, key: str) -> str:
        """Write the message once, before any attempt."""
        with self.runtime.db.session() as session:
            item = session.get(VocItem, voc_item_id)
            if item is None:
                return "missing"
            if session.scalar(select(OutboundMessage.id).where(
                    OutboundMessage.idempotency_key == key)) is not None:
                return "recorded"
            shop = session.get(Shop, item.shop_id)
            recipient = (shop.merchant.email or "").strip()
            if not recipient:
                log.info("merchant of shop %s has no email: VOC item %s not notified",
                         shop.id, voc_item_id)
                return "no_recipient"
            order_number = None
            if item.order_id is not None:
                order_number = session.scalar(select(Order.number).where(
                    Order.id == item.order_id, Order.shop_id == item.shop_id))
            first = session.scalar(select(VocEvent.data).where(
                VocEvent.voc_item_id == item.id, VocEvent.type == "received").limit(1)) or {}
            subject, body = compose(shop, item, order_number, first.get("order_number"))
            record(session.connection(), OutgoingMessage(
                key=key, shop_id=shop.id, channel=EMAIL_CHANNEL, recipient=recipient,
                subject=subject, body=body,
                data={"purpose": "merchant_notification", "reference": item.reference}))
        return "recorded"


# --------------------------------------------------------------------------------------------------
# Enqueueing and the sweep
# --------------------------------------------------------------------------------------------------


def enqueue_merchant_notification(runtime: Runtime, voc_item_id: int, *,
                                  shop_id: int | None = None) -> None:
    """Queue the job (deterministic id, in the item's shop's namespace). Raises what Redis raises:
    the caller decides (the sweep covers a job that could not be queued). A caller that does not
    pass the item's ``shop_id`` costs one primary-key read."""
    if shop_id is None:
        with runtime.db.engine.connect() as conn:
            shop_id = conn.scalar(select(VocItem.shop_id).where(VocItem.id == voc_item_id))
        if shop_id is None:
            return  # no such item: nothing to tell
    queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).enqueue_call(
        NOTIFY_MERCHANT, args=(voc_item_id,), job_id=notification_job_id(shop_id, voc_item_id),
        result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)


def notify_merchant_soon(runtime: Runtime, voc_item_id: int, *,
                         shop_id: int | None = None) -> None:
    """Queue the merchant's notification; with Redis down, leave it to :func:`sweep_unnotified`."""
    try:
        enqueue_merchant_notification(runtime, voc_item_id, shop_id=shop_id)
    except Exception:  # noqa: BLE001
        log.warning("could not queue the notification of VOC item %s; the sweep will",
                    voc_item_id)


def sweep_unnotified(runtime: Runtime, *, now=None, limit: int = SWEEP_BATCH) -> int:
    """Enqueue the jobs that were lost; returns how many were handed to RQ.

    Finds widget items of active shops whose merchant has an email and that have no message row
    (the request could not reach Redis, or the job died before recording), older than
    :data:`SWEEP_GRACE` and younger than :data:`SWEEP_WINDOW`. Messages recorded but not sent are
    the outbox sweep's (``ccms_addon.outbox.sweep_due``). Running it often is harmless.
    """
    if not smtp_configured(runtime):
        return 0
    now = now or utcnow()
    key_of_item = literal("voc-created:") + cast(VocItem.id, String) + literal(":merchant")
    messages = OutboundMessage.__table__
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(
            select(VocItem.shop_id, VocItem.id)
            .join(Shop, Shop.id == VocItem.shop_id)
            .join(Merchant, Merchant.id == Shop.merchant_id)
            .outerjoin(messages, messages.c.idempotency_key == key_of_item)
            .where(VocItem.channel.in_(NOTIFIED_CHANNELS), messages.c.id.is_(None),
                   Shop.status == ShopStatus.ACTIVE,
                   Merchant.email.is_not(None), Merchant.email != "",
                   VocItem.created_at <= now - SWEEP_GRACE,
                   VocItem.created_at >= now - SWEEP_WINDOW)
            .order_by(VocItem.id).limit(limit)).all()
    if not rows:
        return 0
    q: Queue = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    q.enqueue_many([Queue.prepare_data(NOTIFY_MERCHANT, args=(i,),
                                       job_id=notification_job_id(shop_id, i),
                                       result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
                    for shop_id, i in rows])
    log.info("notification sweep enqueued %d job(s)", len(rows))
    return len(rows)
