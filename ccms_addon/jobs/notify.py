"""Telling the merchant, by email, that a shopper wrote through the widget — exactly once.

The ``OutboundMessage`` row is the record of truth, keyed ``voc-created:<item id>:merchant``:

1. the row is recorded ``pending`` before any attempt (``INSERT … ON CONFLICT DO NOTHING``: a
   second job finds the first one's row);
2. a job claims it by moving it ``pending → sending`` in one conditional UPDATE;
3. it sends, then marks it ``sent``.

A job that finds the row ``sending`` cannot know whether the earlier attempt reached the server
(the worker may have died after the server accepted the mail): it parks the row ``unknown`` and
never sends it again. An SMTP error that proves nothing was accepted (connection refused, a 4xx
before the end of DATA) puts the row back to ``pending`` with ``next_attempt_at``; a 5xx or too
many attempts makes it ``failed``. Retries come from a job scheduled with RQ's scheduler and, as a
backstop, from :func:`sweep_unnotified`, which also finds widget items whose first job was lost
(Redis down when the shopper submitted).

SMTP settings come from the environment through ``Settings.platform_settings("smtp")`` (SMTP is
not a core key, so the config parser files ``CCMS_SMTP_*`` there): ``CCMS_SMTP_URL``
(``smtp://[user:pass@]host[:port]``, ``?starttls=1`` to upgrade, ``smtps://`` for implicit TLS)
and ``CCMS_SMTP_FROM`` (the sender; ``CCMS_MAIL_FROM`` is accepted too). No URL: nothing is sent,
a log line says so.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formataddr
from urllib.parse import parse_qs, unquote, urlsplit

from rq import Queue
from sqlalchemy import String, and_, cast, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ccms_addon.config import Settings
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.runtime import Runtime, current
from ccms_addon.store.models import (Merchant, Order, OutboundMessage, OutboundStatus, Shop,
                                     ShopStatus, VocChannel, VocEvent, VocItem, utcnow)

log = logging.getLogger(__name__)

#: the job function, by import path so the web process need not import smtplib machinery
NOTIFY_MERCHANT = "ccms_addon.jobs.notify.notify_merchant_of_voc"
#: attempts before a message that keeps failing is parked as failed (≈ a day with the backoff)
MAX_ATTEMPTS = 8
#: first retry delay and its ceiling, in seconds; doubled per attempt
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 4 * 3600
#: seconds an SMTP conversation may stall
SMTP_TIMEOUT = 20
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
#: the sender when neither CCMS_SMTP_FROM nor CCMS_MAIL_FROM is set
DEFAULT_SENDER = "ccms-addon@localhost"
EMAIL_CHANNEL = "email"


def message_key(voc_item_id: int) -> str:
    """The idempotency key of the merchant's email about one VOC item."""
    return f"voc-created:{voc_item_id}:merchant"


def notification_job_id(voc_item_id: int, attempt: int = 0) -> str:
    return f"notify-voc-{voc_item_id}" + (f"-retry-{attempt}" if attempt else "")


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


# --------------------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------------------


class SmtpConfigError(ValueError):
    """``CCMS_SMTP_URL`` is not an ``smtp://`` or ``smtps://`` URL."""


class DeliveryDeferredError(Exception):
    """The server did not take the message and said so (or could not be reached): retry later."""


class DeliveryRejectedError(Exception):
    """The server refused the message for good (a 5xx reply): do not retry."""


class DeliveryOutcomeUnknownError(Exception):
    """The connection broke while the message was being handed over: it may have been accepted."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "SmtpSettings | None":
        smtp = settings.platform_settings("smtp")
        url = (smtp.get("url") or "").strip()
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise SmtpConfigError("CCMS_SMTP_URL must look like smtp://[user:pass@]host[:port] "
                                  "or smtps://…")
        query = parse_qs(parts.query)
        sender = (smtp.get("from") or settings.platform_settings("mail").get("from")
                  or DEFAULT_SENDER)
        implicit = parts.scheme == "smtps"
        return cls(host=parts.hostname, port=parts.port or (465 if implicit else 25),
                   sender=sender.strip(),
                   user=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   implicit_tls=implicit,
                   starttls=query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes"))


def _classify(code: int, reply: bytes | str) -> Exception:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    if 500 <= code < 600:
        return DeliveryRejectedError(f"{code} {text}")
    return DeliveryDeferredError(f"{code} {text}")


def send_email(smtp: SmtpSettings, message: EmailMessage, recipient: str) -> None:
    """Hand ``message`` to the SMTP server, telling apart "not taken" from "maybe taken".

    Everything up to and including RCPT proves nothing was accepted; a failure while the DATA is
    in flight does not.
    """
    try:
        if smtp.implicit_tls:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=SMTP_TIMEOUT,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryDeferredError(f"cannot reach {smtp.host}:{smtp.port}: {exc}") from None
    try:
        try:
            client.ehlo()
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            code, reply = client.mail(smtp.sender)
            if code != 250:
                raise _classify(code, reply)
            code, reply = client.rcpt(recipient)
            if code not in (250, 251):
                raise _classify(code, reply)
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryDeferredError(str(exc) or type(exc).__name__) from None
        try:
            code, reply = client.data(message.as_bytes(policy=SMTP_POLICY))
        except smtplib.SMTPDataError as exc:  # DATA itself refused: nothing was sent
            raise _classify(exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryOutcomeUnknownError(str(exc) or type(exc).__name__) from None
        if code != 250:
            raise _classify(code, reply)
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


# --------------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------------


def _one_line(value: str | None) -> str:
    return " ".join((value or "").split())


def compose(shop: Shop, item: VocItem, order_number: str | None, typed_order: str | None
            ) -> tuple[str, str]:
    """Subject and plain-text body. The shopper's words go in verbatim, as text: never HTML."""
    shop_name = _one_line(shop.name) or shop.domain
    subject = f"[{shop_name}] New {item.kind.value} {item.reference}"
    lines = [
        f"A shopper sent a {item.kind.value} through the contact widget of {shop_name}.",
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


def build_email(smtp: SmtpSettings, row: OutboundMessage) -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = formataddr(("Customer care", smtp.sender))
    message["To"] = row.recipient
    message["Subject"] = row.subject or ""
    domain = smtp.sender.rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(row.idempotency_key.encode()).hexdigest()[:40]
    message["Message-ID"] = f"<{digest}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(row.body, subtype="plain", charset="utf-8")
    return message


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
        smtp = SmtpSettings.from_settings(self.runtime.settings)
        if smtp is None:
            log.warning("no CCMS_SMTP_URL: merchant not emailed about VOC item %s", voc_item_id)
            return "not_configured"
        key = message_key(voc_item_id)
        recorded = self._record(voc_item_id, key)
        if recorded in ("missing", "no_recipient"):
            return recorded
        row = self._claim(key)
        if row is None:
            return self._not_claimed(key)
        try:
            send_email(smtp, build_email(smtp, row), row.recipient)
        except DeliveryDeferredError as exc:
            return self._deferred(row, voc_item_id, str(exc))
        except DeliveryRejectedError as exc:
            log.warning("merchant email %s refused by the SMTP server", key)
            return self._settle(row.id, OutboundStatus.FAILED, error=str(exc))
        except DeliveryOutcomeUnknownError as exc:
            log.warning("merchant email %s: connection lost during DATA; not resent", key)
            return self._settle(row.id, OutboundStatus.UNKNOWN, error=str(exc))
        return self._settle(row.id, OutboundStatus.SENT, sent_at=utcnow())

    def _record(self, voc_item_id: int, key: str) -> str:
        """Write the message row once, before any attempt."""
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
            insert = postgresql.insert if self.runtime.db.dialect == "postgresql" else sqlite.insert
            session.execute(insert(OutboundMessage.__table__).values(
                shop_id=shop.id, idempotency_key=key, channel=EMAIL_CHANNEL, recipient=recipient,
                subject=subject[:300], body=body, status=OutboundStatus.PENDING.value, attempts=0,
                created_at=utcnow()).on_conflict_do_nothing(index_elements=["idempotency_key"]))
        return "recorded"

    def _claim(self, key: str) -> OutboundMessage | None:
        """pending (and due) → sending, atomically; the one job that wins sends."""
        table = OutboundMessage.__table__
        now = utcnow()
        with self.runtime.db.engine.begin() as conn:
            row = conn.execute(
                update(table)
                .where(table.c.idempotency_key == key,
                       table.c.status == OutboundStatus.PENDING.value,
                       or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now))
                .values(status=OutboundStatus.SENDING.value, attempts=table.c.attempts + 1,
                        next_attempt_at=None)
                .returning(table.c.id)).first()
        if row is None:
            return None
        with self.runtime.db.session() as session:
            return session.get(OutboundMessage, row.id)

    def _not_claimed(self, key: str) -> str:
        table = OutboundMessage.__table__
        with self.runtime.db.engine.begin() as conn:
            parked = conn.execute(
                update(table).where(table.c.idempotency_key == key,
                                    table.c.status == OutboundStatus.SENDING.value)
                .values(status=OutboundStatus.UNKNOWN.value,
                        error="an earlier attempt was interrupted; not sent again")
                .returning(table.c.id)).first()
            if parked is not None:
                log.warning("merchant email %s found mid-send: parked as unknown, not resent", key)
                return OutboundStatus.UNKNOWN.value
            status = conn.scalar(select(table.c.status).where(table.c.idempotency_key == key))
        status = OutboundStatus(status) if status else None
        if status is None:
            return "missing"
        return "not_due" if status is OutboundStatus.PENDING else status.value

    def _deferred(self, row: OutboundMessage, voc_item_id: int, error: str) -> str:
        if row.attempts >= MAX_ATTEMPTS:
            log.warning("merchant email %s failed %s times; giving up", row.idempotency_key,
                        row.attempts)
            return self._settle(row.id, OutboundStatus.FAILED, error=error)
        delay = retry_delay(row.attempts)
        self._settle(row.id, OutboundStatus.PENDING, error=error, next_attempt_at=utcnow() + delay)
        log.info("merchant email %s deferred; retry in %s", row.idempotency_key, delay)
        try:  # best effort: the sweep picks the row up when it is due anyway
            queue(NOTIFICATIONS_QUEUE, self.runtime.redis, self.runtime.settings).enqueue_in(
                delay, NOTIFY_MERCHANT, voc_item_id,
                job_id=notification_job_id(voc_item_id, row.attempts), result_ttl=RESULT_TTL,
                job_timeout=JOB_TIMEOUT)
        except Exception:  # noqa: BLE001 — Redis down: the sweep covers it
            log.exception("could not schedule the retry of %s", row.idempotency_key)
        return OutboundStatus.PENDING.value

    def _settle(self, row_id: int, status: OutboundStatus, *, error: str | None = None,
                sent_at: datetime | None = None, next_attempt_at: datetime | None = None) -> str:
        with self.runtime.db.engine.begin() as conn:
            conn.execute(update(OutboundMessage.__table__)
                         .where(OutboundMessage.__table__.c.id == row_id)
                         .values(status=status.value, error=(error or None) and error[:2000],
                                 sent_at=sent_at, next_attempt_at=next_attempt_at))
        return status.value


# --------------------------------------------------------------------------------------------------
# Enqueueing and the sweep
# --------------------------------------------------------------------------------------------------


def enqueue_merchant_notification(runtime: Runtime, voc_item_id: int) -> None:
    """Queue the job (deterministic id). Raises what Redis raises: the caller decides."""
    queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).enqueue_call(
        NOTIFY_MERCHANT, args=(voc_item_id,), job_id=notification_job_id(voc_item_id),
        result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)


def sweep_unnotified(runtime: Runtime, *, now: datetime | None = None,
                     limit: int = SWEEP_BATCH) -> int:
    """Enqueue the jobs that were lost or are due again; returns how many were handed to RQ.

    Finds widget items of active shops whose merchant has an email and that have no message row
    (the request could not reach Redis, or the job died before recording), older than
    :data:`SWEEP_GRACE` and younger than :data:`SWEEP_WINDOW`; and message rows still ``pending``
    whose retry time has come. Running it often is harmless: a job run twice sends once.
    """
    try:
        if SmtpSettings.from_settings(runtime.settings) is None:
            return 0
    except SmtpConfigError:
        log.exception("CCMS_SMTP_URL is invalid; no merchant notifications")
        return 0
    now = now or utcnow()
    key_of_item = literal("voc-created:") + cast(VocItem.id, String) + literal(":merchant")
    messages = OutboundMessage.__table__
    with runtime.db.engine.connect() as conn:
        lost = list(conn.scalars(
            select(VocItem.id)
            .join(Shop, Shop.id == VocItem.shop_id)
            .join(Merchant, Merchant.id == Shop.merchant_id)
            .outerjoin(messages, messages.c.idempotency_key == key_of_item)
            .where(VocItem.channel == VocChannel.WIDGET, messages.c.id.is_(None),
                   Shop.status == ShopStatus.ACTIVE,
                   Merchant.email.is_not(None), Merchant.email != "",
                   VocItem.created_at <= now - SWEEP_GRACE,
                   VocItem.created_at >= now - SWEEP_WINDOW)
            .order_by(VocItem.id).limit(limit)))
        due = list(conn.scalars(
            select(messages.c.idempotency_key)
            .where(messages.c.status == OutboundStatus.PENDING.value,
                   messages.c.idempotency_key.like("voc-created:%:merchant"),
                   or_(messages.c.next_attempt_at <= now,
                       and_(messages.c.next_attempt_at.is_(None),
                            messages.c.created_at <= now - SWEEP_GRACE)))
            .order_by(messages.c.id).limit(limit)))
    ids = sorted(set(lost) | {int(key.split(":")[1]) for key in due})
    if not ids:
        return 0
    q: Queue = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    q.enqueue_many([Queue.prepare_data(NOTIFY_MERCHANT, args=(i,), job_id=notification_job_id(i),
                                       result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT) for i in ids])
    log.info("notification sweep enqueued %d job(s)", len(ids))
    return len(ids)
