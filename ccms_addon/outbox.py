"""The outbox: every message the add-on sends, recorded before the first attempt, sent exactly once.

The top of this module is the contract the notifier plugins implement (:class:`Notifier`,
:class:`OutgoingMessage`, the delivery errors). Below it, the one machinery every sender uses (the
merchant's notifications, the follow-ups, a claim's outcome). An ``OutboundMessage`` row keyed by
the message's idempotency key is the record of truth:

1. :func:`record` writes it ``pending`` before any attempt (``INSERT … ON CONFLICT DO NOTHING``: a
   second writer finds the first one's row); callers may record inside their own transaction;
2. :meth:`Outbox.deliver` claims it — ``pending`` (and due) or ``sending`` → ``sending``, with
   ``attempts + 1`` as a fencing token — in one conditional UPDATE and hands it to the channel's
   notifier;
3. the notifier calls ``handover`` at its point of no return (after the SMTP server's 354, before
   the content; before the HTTP request leaves). The handover moves ``sending → delivering`` only
   if the row still carries this attempt's token; otherwise a later attempt took the row over and
   this one stops without sending;
4. success settles it ``sent``. A deliverer that finds ``delivering`` cannot know whether the
   provider kept the message (the worker may have died mid-content): it parks the row ``unknown``
   and never sends it again. One that finds ``sending`` takes it over: that attempt died (or is
   about to be fenced off) before anything left. A deferral puts the row back to ``pending`` with
   ``next_attempt_at`` (backoff doubling from a minute to four hours); a rejection or too many
   attempts make it ``failed``. Retries are RQ jobs scheduled for the due time and, as a backstop
   for a lost Redis or a killed worker, :func:`sweep_due` finds every ``pending`` row whose time
   has come and every ``sending`` row left behind, and parks a ``delivering`` one left behind as
   ``unknown``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rq import Queue
from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue, shop_job_id
from ccms_addon.store.models import OutboundMessage, OutboundStatus, Shop, utcnow

if TYPE_CHECKING:
    from ccms_addon.runtime import Runtime

log = logging.getLogger(__name__)


class DeliveryDeferredError(Exception):
    """The provider did not take the message and said so (or could not be reached): retry later."""


class DeliveryRejectedError(Exception):
    """The provider refused the message for good (a 5xx SMTP reply, a 4xx HTTP answer): no retry."""


class DeliveryOutcomeUnknownError(Exception):
    """The connection broke while the message was being handed over: it may have been accepted, so
    it is never sent again."""


class NotifierConfigError(ValueError):
    """The channel is not configured, or configured wrongly: a message a merchant can act on."""


class HandoverRefusedError(Exception):
    """Raised by ``handover``: another attempt has taken the message over; send nothing."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one recipient.

    ``key`` is the idempotency key (unique, recorded before the first attempt; providers that accept
    one get it too). ``body`` is plain text — shopper text is never rendered as HTML. ``data`` is
    the structured form for machine channels (a webhook's JSON): purpose, reference, links…
    """

    key: str
    shop_id: int
    channel: str
    recipient: str
    body: str
    subject: str | None = None
    locale: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Notifier(Protocol):
    """What a plugin returns from ``register_notifiers``."""

    #: the channel name messages are addressed to (``OutgoingMessage.channel``)
    channel: str

    def send(self, message: OutgoingMessage, config: Mapping[str, str],
             handover: Callable[[], None]) -> None:
        """Hand ``message`` to the provider. Return normally only when the provider accepted it.

        ``config`` is the channel's configuration: the app-level ``CCMS_<CHANNEL>_*`` values
        (lower-case keys without the prefix) overlaid with the shop's own channel settings.
        Call ``handover()`` once, right before the first byte the provider could keep leaves (and
        after everything that proves nothing was taken); let its ``HandoverRefusedError`` pass.
        Raise :class:`DeliveryDeferredError` when nothing was accepted and a later attempt may work,
        :class:`DeliveryRejectedError` when it never will, :class:`DeliveryOutcomeUnknownError` when
        the provider may have accepted it, :class:`NotifierConfigError` when ``config`` is unusable.
        """


# --------------------------------------------------------------------------------------------------
# The machinery
# --------------------------------------------------------------------------------------------------

#: attempts before a message that keeps being deferred is parked as failed (≈ a day with backoff)
MAX_ATTEMPTS = 8
#: first retry delay and its ceiling, in seconds; doubled per attempt
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 4 * 3600
#: a channel whose settings are wrong is tried again after this long (someone may fix them)
CONFIG_RETRY_SECONDS = 3600
#: a pending row with no retry time is left this long to the job its writer enqueued
SWEEP_GRACE = timedelta(minutes=2)
#: a row still ``sending`` or ``delivering`` this long after its attempt claimed it lost that
#: attempt's worker (a send takes seconds; the SMTP timeout is 20 s)
SENDING_STALE = timedelta(minutes=10)
#: rows one sweep hands to RQ
SWEEP_BATCH = 500
#: the job function, by import path
DELIVER_MESSAGE = "ccms_addon.outbox.deliver_message"
RESULT_TTL = 3600
JOB_TIMEOUT = 120
#: the suffix of encrypted values in a shop's channel settings (decrypted for the notifier)
ENCRYPTED_SUFFIX = "_encrypted"

_table = OutboundMessage.__table__


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


def delivery_job_id(shop_id: int, key: str, attempt: int = 0) -> str:
    """A deterministic RQ job id for delivering one message of a shop (keys may be long and hold
    any character: hashed)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return shop_job_id(shop_id, f"outbox-{digest}" + (f"-retry-{attempt}" if attempt else ""))


def notifier_registry(pm) -> dict[str, Notifier]:
    """Every notifier by channel; two plugins claiming one channel stop start-up."""
    registry: dict[str, Notifier] = {}
    for notifiers in pm.hook.register_notifiers():
        for notifier in notifiers or ():
            if notifier.channel in registry:
                raise RuntimeError(f"two notifiers claim the channel {notifier.channel!r}")
            registry[notifier.channel] = notifier
    return registry


def record(conn: Connection, message: OutgoingMessage, *, claim: bool = False) -> bool:
    """Write ``message`` once, in the caller's transaction; True when it was new.

    ``claim=True`` writes it already claimed by attempt 1 (``sending``), for a caller that delivers
    it right after its commit (:meth:`Outbox.deliver_claimed`): one commit fewer per message. If
    that caller dies first, the row is ``sending`` and the next attempt takes it over.
    """
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    result = conn.execute(insert(_table).values(
        shop_id=message.shop_id, idempotency_key=message.key, channel=message.channel,
        recipient=message.recipient, subject=(message.subject or None) and message.subject[:300],
        body=message.body, locale=message.locale, data=dict(message.data) or None,
        status=(OutboundStatus.SENDING if claim else OutboundStatus.PENDING).value,
        attempts=1 if claim else 0, claimed_at=now if claim else None, created_at=now,
    ).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(_table.c.id))
    return result.first() is not None


def enqueue(runtime: "Runtime", keys: list[str], *, shop_id: int | None = None) -> None:
    """Queue one delivery job per recorded message (deterministic ids, in each message's shop's
    namespace). ``shop_id``: the shop of every key; without it, the shops are read from the
    messages' rows in one query. Raises what Redis raises."""
    if shop_id is not None:
        enqueue_messages(runtime, [(shop_id, key) for key in keys])
        return
    if not keys:
        return
    with runtime.db.engine.connect() as conn:
        shops = dict(conn.execute(select(_table.c.idempotency_key, _table.c.shop_id)
                                  .where(_table.c.idempotency_key.in_(list(keys)))).all())
    missing = [key for key in keys if key not in shops]
    if missing:
        log.warning("not queued: no recorded message for %s", missing)
    enqueue_messages(runtime, [(shops[key], key) for key in keys if key in shops])


def enqueue_messages(runtime: "Runtime", messages: list[tuple[int, str]]) -> None:
    """Queue one delivery job per ``(shop id, key)`` in one Redis pipeline. Raises what Redis
    raises."""
    if not messages:
        return
    q: Queue = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    q.enqueue_many([Queue.prepare_data(DELIVER_MESSAGE, args=(key,),
                                       job_id=delivery_job_id(shop_id, key),
                                       result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
                    for shop_id, key in messages])


def deliver_message(key: str) -> str:
    """RQ job: deliver one recorded message, at most once. Returns its state afterwards."""
    from ccms_addon.runtime import current
    return Outbox(current()).deliver(key)


class Outbox:
    """Claims, sends and settles recorded messages through the registered notifiers."""

    def __init__(self, runtime: "Runtime"):
        self.runtime = runtime

    @property
    def notifiers(self) -> dict[str, Notifier]:
        cached = getattr(self.runtime, "_notifiers", None)
        if cached is None:
            cached = notifier_registry(self.runtime.pm)
            self.runtime._notifiers = cached  # noqa: SLF001 — one registry per runtime
        return cached

    def config_for(self, notifier: Notifier, shop_settings: Mapping[str, Any]) -> dict[str, str]:
        """App-level ``CCMS_<CHANNEL>_*`` values overlaid with the shop's own channel settings."""
        name = getattr(notifier, "settings_name", notifier.channel)
        config = dict(self.runtime.settings.platform_settings(name))
        overlay = ((shop_settings or {}).get("channels") or {}).get(notifier.channel) or {}
        for key, value in overlay.items():
            if key.endswith(ENCRYPTED_SUFFIX) and value:
                config[key[:-len(ENCRYPTED_SUFFIX)]] = self.runtime.box.decrypt(value)
            elif value not in (None, ""):
                config[key] = str(value)
        return config

    def deliver(self, key: str) -> str:
        """Claim the message (a new attempt) and send it."""
        row = self._claim(key)
        if row is None:
            return self._not_claimed(key)
        return self._send(key, row)

    def deliver_claimed(self, key: str) -> str:
        """Send a message :func:`record` wrote already claimed by attempt 1."""
        with self.runtime.db.session() as session:
            row = session.scalar(select(OutboundMessage).where(
                OutboundMessage.idempotency_key == key))
        if row is None or row.status is not OutboundStatus.SENDING or row.attempts != 1:
            return self.deliver(key)
        return self._send(key, row)

    def _send(self, key: str, row: OutboundMessage) -> str:
        notifier = self.notifiers.get(row.channel)
        if notifier is None:
            return self._settle(row.id, OutboundStatus.FAILED,
                                error=f"no notifier for channel {row.channel!r}")
        with self.runtime.db.session() as session:
            shop_settings = session.scalar(select(Shop.settings).where(Shop.id == row.shop_id))
        message = OutgoingMessage(key=row.idempotency_key, shop_id=row.shop_id, channel=row.channel,
                                  recipient=row.recipient, body=row.body, subject=row.subject,
                                  locale=row.locale, data=row.data or {})
        try:
            notifier.send(message, self.config_for(notifier, shop_settings or {}),
                          lambda: self._handover(row.id, row.attempts))
        except HandoverRefusedError:
            log.info("message %s was taken over by a later attempt; this one sent nothing", key)
            return "superseded"
        except DeliveryDeferredError as exc:
            return self._deferred(row, str(exc), getattr(exc, "retry_after", None))
        except NotifierConfigError as exc:
            # the merchant or operator can fix the settings: keep the message, try again later
            log.warning("message %s: channel %s is not configured properly", key, row.channel)
            return self._deferred(row, f"configuration: {exc}", CONFIG_RETRY_SECONDS)
        except DeliveryRejectedError as exc:
            log.warning("message %s refused (%s): %s", key, row.channel, type(exc).__name__)
            return self._settle(row.id, OutboundStatus.FAILED, error=str(exc))
        except DeliveryOutcomeUnknownError as exc:
            log.warning("message %s: outcome unknown; not resent", key)
            return self._settle(row.id, OutboundStatus.UNKNOWN, error=str(exc))
        return self._settle(row.id, OutboundStatus.SENT, sent_at=utcnow())

    def warm_up(self) -> None:
        """Compile the delivery's statements once (against a key and id that do not exist), so a
        forking worker's children inherit them instead of compiling them per message."""
        self._claim("")
        self._not_claimed("")
        with self.runtime.db.session() as session:
            session.scalar(select(OutboundMessage).where(OutboundMessage.idempotency_key == ""))
            session.scalar(select(Shop.settings).where(Shop.id == 0))
        try:
            self._handover(0, 0)
        except HandoverRefusedError:
            pass
        self._settle(0, OutboundStatus.SENT, sent_at=utcnow())

    def _claim(self, key: str) -> OutboundMessage | None:
        """pending (and due) or sending → sending with a new attempt number, atomically."""
        now = utcnow()
        with self.runtime.db.engine.begin() as conn:
            row = conn.execute(
                update(_table)
                .where(_table.c.idempotency_key == key,
                       or_(and_(_table.c.status == OutboundStatus.PENDING.value,
                                or_(_table.c.next_attempt_at.is_(None),
                                    _table.c.next_attempt_at <= now)),
                           _table.c.status == OutboundStatus.SENDING.value))
                .values(status=OutboundStatus.SENDING.value, attempts=_table.c.attempts + 1,
                        next_attempt_at=None, claimed_at=now)
                .returning(_table.c.id)).first()
        if row is None:
            return None
        with self.runtime.db.session() as session:
            return session.get(OutboundMessage, row.id)

    def _handover(self, row_id: int, attempt: int) -> None:
        """sending → delivering, only for the attempt that holds the claim."""
        with self.runtime.db.engine.begin() as conn:
            moved = conn.execute(
                update(_table).where(_table.c.id == row_id, _table.c.attempts == attempt,
                                     _table.c.status == OutboundStatus.SENDING.value)
                .values(status=OutboundStatus.DELIVERING.value)).rowcount
        if moved != 1:
            raise HandoverRefusedError(f"message {row_id}: attempt {attempt} no longer holds it")

    def _not_claimed(self, key: str) -> str:
        with self.runtime.db.engine.begin() as conn:
            parked = conn.execute(
                update(_table).where(_table.c.idempotency_key == key,
                                     _table.c.status == OutboundStatus.DELIVERING.value)
                .values(status=OutboundStatus.UNKNOWN.value,
                        error="an earlier attempt was interrupted; not sent again")
                .returning(_table.c.id)).first()
            if parked is not None:
                log.warning("message %s found mid-send: parked as unknown, not resent", key)
                return OutboundStatus.UNKNOWN.value
            status = conn.scalar(select(_table.c.status).where(_table.c.idempotency_key == key))
        if status is None:
            return "missing"
        status = OutboundStatus(status)
        return "not_due" if status is OutboundStatus.PENDING else status.value

    def _deferred(self, row: OutboundMessage, error: str, at_least: float | None = None) -> str:
        if row.attempts >= MAX_ATTEMPTS:
            log.warning("message %s deferred %s times; giving up", row.idempotency_key,
                        row.attempts)
            return self._settle(row.id, OutboundStatus.FAILED, error=error)
        delay = max(retry_delay(row.attempts), timedelta(seconds=at_least or 0))
        self._settle(row.id, OutboundStatus.PENDING, error=error, next_attempt_at=utcnow() + delay)
        log.info("message %s deferred; retry in %s", row.idempotency_key, delay)
        try:  # best effort: the sweep picks the row up when it is due anyway
            queue(NOTIFICATIONS_QUEUE, self.runtime.redis, self.runtime.settings).enqueue_in(
                delay, DELIVER_MESSAGE, row.idempotency_key,
                job_id=delivery_job_id(row.shop_id, row.idempotency_key, row.attempts),
                result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT)
        except Exception:  # noqa: BLE001 — Redis down: the sweep covers it
            log.exception("could not schedule the retry of %s", row.idempotency_key)
        return OutboundStatus.PENDING.value

    def _settle(self, row_id: int, status: OutboundStatus, *, error: str | None = None,
                sent_at: datetime | None = None, next_attempt_at: datetime | None = None) -> str:
        """Record an attempt's outcome (``sent`` also wins over an ``unknown`` another deliverer
        parked meanwhile: the provider's answer is the better knowledge)."""
        with self.runtime.db.engine.begin() as conn:
            conn.execute(update(_table).where(_table.c.id == row_id)
                         .values(status=status.value, error=(error or None) and error[:2000],
                                 sent_at=sent_at, next_attempt_at=next_attempt_at))
        return status.value


def sweep_due(runtime: "Runtime", *, now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Enqueue delivery jobs for every ``pending`` message whose time has come (a retry that is
    due, or a message whose first job never reached RQ) and every ``sending`` one an attempt left
    behind. Returns how many were handed to RQ."""
    now = now or utcnow()
    with runtime.db.engine.connect() as conn:
        due = conn.execute(
            select(_table.c.shop_id, _table.c.idempotency_key)
            .where(or_(and_(_table.c.status == OutboundStatus.PENDING.value,
                            or_(_table.c.next_attempt_at <= now,
                                and_(_table.c.next_attempt_at.is_(None),
                                     _table.c.created_at <= now - SWEEP_GRACE))),
                       # an attempt that died before its handover (worker killed): nothing left
                       and_(_table.c.status == OutboundStatus.SENDING.value,
                            _table.c.claimed_at <= now - SENDING_STALE)))
            .order_by(_table.c.id).limit(limit)).all()
    with runtime.db.engine.begin() as conn:
        # an attempt that died while handing over: the provider may have the message, so it is
        # parked, never resent (a live attempt that finishes later still records ``sent``)
        parked = conn.execute(
            update(_table).where(_table.c.status == OutboundStatus.DELIVERING.value,
                                 _table.c.claimed_at <= now - SENDING_STALE)
            .values(status=OutboundStatus.UNKNOWN.value,
                    error="the attempt stopped while handing the message over; not sent again")
        ).rowcount
    if parked:
        log.warning("outbox sweep parked %d interrupted message(s) as unknown", parked)
    if due:
        enqueue_messages(runtime, [tuple(row) for row in due])
        log.info("outbox sweep enqueued %d message(s)", len(due))
    return len(due)
