"""Turning stored webhook deliveries into canonical orders, customers and refunds, and the VOC
items some of their events call for (a cancellation's reason, a refund's note).

``process_delivery`` is idempotent: the delivery row is the record of truth. It is marked final in
the same transaction as the changes it causes, so a job killed half-way leaves the row unprocessed and
the dispatcher's sweep runs it again; a job run twice finds the row final and does nothing. A
delivery with VOC items to record is marked final only after they are (each is recorded once, by a
marker: :mod:`ccms_addon.voc.platform_intake`), so a job killed in between records them on its
next run and never twice.

A shop that leaves (``shop/redact``, an uninstall) also leaves Redis: once the store's change is
committed, its queued and scheduled jobs and its keys are removed
(:func:`ccms_addon.queue.forget_shop`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from ccms_addon.platforms import (AppUninstalled, CustomerChanged, CustomerDataRequested,
                                  CustomerRedactRequested, CustomersNeedFetch, OrderChanged,
                                  OrdersNeedFetch, PayloadInvalidError, PlatformAdapter,
                                  PlatformError, PlatformUnavailableError, RefundCreated,
                                  ShopContext, ShopRedactRequested, UnknownTopicError)
from ccms_addon.queue import forget_shop
from ccms_addon.widgets import ratelimit
from ccms_addon.runtime import Runtime, current
from ccms_addon.store import privacy, repository
from ccms_addon.store.models import DeliveryStatus, Shop, WebhookDelivery, utcnow
from ccms_addon.voc import platform_intake

log = logging.getLogger(__name__)

#: states after which a delivery is never processed again
FINAL_STATES = (DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED, DeliveryStatus.FAILED)
#: platform fetch attempts before a delivery is parked as failed (≈ a day with the backoff below)
MAX_FETCH_ATTEMPTS = 20
#: first retry delay and its ceiling, in seconds; doubled per attempt
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 3600


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


@dataclass
class Outcome:
    """What one run changed, for the broadcast hooks fired after commit."""

    orders: list[repository.OrderChange] = field(default_factory=list)
    fetch_orders: list[str] = field(default_factory=list)
    fetch_customers: list[str] = field(default_factory=list)
    #: VOC items to record once the orders are stored
    voices: list[platform_intake.PlatformVoice] = field(default_factory=list)
    #: the shop was redacted or uninstalled: its jobs and keys leave Redis after the commit
    departed: bool = False


def process_delivery(delivery_id: int) -> str:
    """RQ job: normalize one stored delivery and apply it to the store. Returns the final state."""
    return DeliveryProcessor(current()).run(delivery_id)


class DeliveryProcessor:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def run(self, delivery_id: int) -> str:
        db = self.runtime.db
        # Phase 1: what the delivery itself carries, committed at once.
        with db.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status in FINAL_STATES:
                return delivery.status.value if delivery else "missing"
            shop = session.get(Shop, delivery.shop_id)
            adapter = self.runtime.platforms.get(delivery.platform)
            if adapter is None:
                return self._park(delivery, f"no adapter named {delivery.platform!r} is installed",
                                  DeliveryStatus.RETRYING)
            try:
                events = adapter.normalize(delivery.topic, delivery.body)
            except UnknownTopicError:
                return self._finish(delivery, DeliveryStatus.IGNORED)
            except PayloadInvalidError as exc:
                return self._finish(delivery, DeliveryStatus.FAILED, str(exc))
            outcome = self._apply(session, shop, delivery, events)
            outcome.voices = platform_intake.voices_from(events)
            context = self.runtime.shop_context(shop, adapter) if (outcome.fetch_orders or
                                                            outcome.fetch_customers) else None
            if context is None and not outcome.voices:
                self._finish(delivery, DeliveryStatus.PROCESSED)
        if outcome.departed:
            self._forget_in_redis(shop)
        self._broadcast(shop.id, outcome.orders)
        if context is None:
            if outcome.voices:
                return self._record_voices(delivery_id, shop.id, adapter.name, outcome.voices)
            return DeliveryStatus.PROCESSED.value
        # Phase 2: the platform's admin API, outside any transaction.
        return self._fetch(delivery_id, adapter, context, outcome)

    def _apply(self, session, shop: Shop, delivery: WebhookDelivery, events) -> Outcome:
        outcome = Outcome()
        orders = [e.order for e in events if isinstance(e, OrderChanged)]
        if orders:
            outcome.orders = repository.upsert_orders(session, shop.id, orders)
        customers = [e.customer for e in events if isinstance(e, CustomerChanged)]
        if customers:
            repository.upsert_customers(session, shop.id, customers)
        refunds = [e.refund for e in events if isinstance(e, RefundCreated)]
        if refunds:
            repository.record_refunds(session, shop.id, refunds)
        for event in events:
            if isinstance(event, OrdersNeedFetch):
                outcome.fetch_orders.extend(event.platform_order_ids)
            elif isinstance(event, CustomersNeedFetch):
                outcome.fetch_customers.extend(event.platform_customer_ids)
            elif isinstance(event, CustomerDataRequested):
                privacy.export_customer_data(
                    session, self.runtime.box, shop.id, platform_request_id=event.platform_request_id,
                    platform_customer_id=event.platform_customer_id, email=event.email,
                    platform_order_ids=event.platform_order_ids)
            elif isinstance(event, CustomerRedactRequested):
                privacy.redact_customers(session, shop.id,
                                         platform_customer_ids=event.platform_customer_ids,
                                         emails=event.emails,
                                         platform_order_ids=event.platform_order_ids)
            elif isinstance(event, ShopRedactRequested):
                privacy.redact_shop(session, shop.id, keep_delivery_id=delivery.id)
                outcome.departed = True
            elif isinstance(event, AppUninstalled):
                privacy.uninstall_shop(session, shop.id)
                outcome.departed = True
        outcome.fetch_orders = list(dict.fromkeys(outcome.fetch_orders))
        outcome.fetch_customers = list(dict.fromkeys(outcome.fetch_customers))
        return outcome

    def _fetch(self, delivery_id: int, adapter: PlatformAdapter, context: ShopContext,
               outcome: Outcome) -> str:
        try:
            orders = adapter.fetch_orders(context, outcome.fetch_orders) \
                if outcome.fetch_orders else []
            customers = adapter.fetch_customers(context, outcome.fetch_customers) \
                if outcome.fetch_customers else []
        except PlatformUnavailableError as exc:
            return self._fetch_failed(delivery_id, str(exc), context, adapter, outcome, retry=True)
        except (PlatformError, KeyError) as exc:  # KeyError: credentials lack a needed key
            return self._fetch_failed(delivery_id, f"{type(exc).__name__}: {exc}", context,
                                      adapter, outcome, retry=False)
        with self.runtime.db.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status in FINAL_STATES:
                return delivery.status.value if delivery else "missing"
            changes = repository.upsert_orders(session, context.shop_id, orders)
            if customers:
                repository.upsert_customers(session, context.shop_id, customers)
            if not outcome.voices:
                self._finish(delivery, DeliveryStatus.PROCESSED)
        self._broadcast(context.shop_id, changes)
        if outcome.voices:
            return self._record_voices(delivery_id, context.shop_id, adapter.name, outcome.voices)
        return DeliveryStatus.PROCESSED.value

    def _fetch_failed(self, delivery_id: int, error: str, context: ShopContext,
                      adapter: PlatformAdapter, outcome: Outcome, *, retry: bool) -> str:
        state = self._record_failure(delivery_id, error, retry=retry)
        if state == DeliveryStatus.FAILED.value and outcome.voices:
            # the full order never came, but what the customer said did: keep it, with the
            # order's summary phase 1 stored
            platform_intake.record_voices(self.runtime, context.shop_id, adapter.name,
                                          outcome.voices)
        return state

    def _record_voices(self, delivery_id: int, shop_id: int, platform: str,
                       voices: list[platform_intake.PlatformVoice]) -> str:
        """The last phase: the VOC items, each once, then the row is final. A store failure
        fails the job (the dispatcher's lease brings the row back); anything else is retried
        with the fetch's backoff and, in the end, parked as failed for a human."""
        try:
            platform_intake.record_voices(self.runtime, shop_id, platform, voices)
        except SQLAlchemyError:
            raise
        except Exception as exc:  # noqa: BLE001 — kept on the row, never a loop of failing jobs
            log.exception("delivery %s: recording its VOC items failed", delivery_id)
            return self._record_failure(delivery_id, f"VOC intake: {type(exc).__name__}: {exc}",
                                        retry=True)
        with self.runtime.db.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status in FINAL_STATES:
                return delivery.status.value if delivery else "missing"
            return self._finish(delivery, DeliveryStatus.PROCESSED)

    def _record_failure(self, delivery_id: int, error: str, *, retry: bool) -> str:
        with self.runtime.db.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status in FINAL_STATES:
                return delivery.status.value if delivery else "missing"
            delivery.attempts += 1
            if retry and delivery.attempts < MAX_FETCH_ATTEMPTS:
                return self._park(delivery, error, DeliveryStatus.RETRYING)
            return self._finish(delivery, DeliveryStatus.FAILED, error)

    @staticmethod
    def _park(delivery: WebhookDelivery, error: str, status: DeliveryStatus) -> str:
        delivery.status = status
        delivery.error = error[:2000]
        delivery.next_attempt_at = utcnow() + retry_delay(max(delivery.attempts, 1))
        log.warning("delivery %s will be retried: %s", delivery.id, error)
        return status.value

    @staticmethod
    def _finish(delivery: WebhookDelivery, status: DeliveryStatus, error: str | None = None) -> str:
        delivery.status = status
        delivery.error = error[:2000] if error else None
        delivery.processed_at = utcnow()
        delivery.next_attempt_at = None
        return status.value

    def _forget_in_redis(self, shop: Shop) -> None:
        """Best effort: with Redis down, a job left behind runs and reads the store, where the
        shop is uninstalled (or has no rows left), and the sweeps re-enqueue only from the store."""
        settings = self.runtime.settings
        try:
            forget_shop(self.runtime.redis, shop.id, settings, also_matching=[
                ratelimit.shop_counters_match(settings.queue_prefix, shop.widget_key)])
        except Exception:  # noqa: BLE001 — the store's change is committed; that is what counts
            log.exception("shop %s left, but its jobs could not be removed from redis", shop.id)

    def _broadcast(self, shop_id: int, changes: list[repository.OrderChange]) -> None:
        for change in changes:
            self.runtime.pm.hook.order_synced(shop_id=shop_id, order_id=change.order_id,
                                              platform_order_id=change.platform_order_id,
                                              created=change.created)
