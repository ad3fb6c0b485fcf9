"""Actions on a VOC item's order through its platform: refund, return, cancel, resend.

Staff ask for them from the item page (the dashboard) or the merchant API; both go through
:meth:`OrderActions.request`. A request is checked against the order before any platform call —
the same rules the programs' claims follow: a refund within what was paid less what is refunded
or on its way back, in the order's currency and its minor unit; lines and quantities the order
has; a cancel only before shipping, a resend or a return only after — and recorded, in one
transaction, as an ``order_action_requested`` event on the item's timeline. That event's ``data``
is the action's durable record: what to do, its reference (``<item reference>-A<n>``, the n-th
action of the item) and its job state (``queued`` → ``running`` → ``done`` / ``failed``, the
attempts, when it is due). Then an RQ job performs it through the shop's adapter — a refund or a
return through ``settle_claim``, a cancel or a resend through ``order_action`` — and records
``order_action_done`` (with the platform's id) or ``order_action_failed`` (with the message).

Exactly once: the adapter writes the reference into the platform-side record and looks for it
before acting, so a retried job finds what an earlier attempt made. One job at a time holds an
action: a job claims it by a conditional update of the event's data (compare-and-swap on the
stored JSON text), which a second job — a duplicate delivery, a sweep that re-enqueued it — loses.
A platform that cannot be reached (``PlatformUnavailableError``) is retried with a doubling
backoff; a refusal (``PlatformError``) fails at once with its message, for a person to act on.
:func:`sweep_order_actions` (for the dispatcher) re-enqueues actions whose job Redis lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import Text, cast, select, update
from sqlalchemy.orm import Session

from ccms_addon.money import minor_units, quantize
from ccms_addon.platforms import (FinancialStatus, FulfillmentStatus, OrderActionRequest,
                                  PlatformError, PlatformUnavailableError, ReturnLine,
                                  SettlementRequest)
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue, shop_job_id
from ccms_addon.runtime import Runtime, current
from ccms_addon.store.models import (Claim, ClaimStatus, Order, OrderLine, Refund, Shop,
                                     ShopStatus, VocEvent, VocItem, VocStatus, utcnow)
from ccms_addon.voc.lifecycle import add_event, advance
from ccms_addon.voc.service import ItemNotFound, VocActionError

log = logging.getLogger(__name__)

#: what staff can ask for; refund and return are settlements (``settle_claim``), cancel and
#: resend are order actions (``order_action``)
ACTIONS = ("refund", "return", "cancel", "resend")
#: the timeline's event types
REQUESTED, DONE, FAILED = "order_action_requested", "order_action_done", "order_action_failed"
#: job states kept in the requested event's ``data["job"]["status"]``
QUEUED, RUNNING, SUCCEEDED, GAVE_UP = "queued", "running", "done", "failed"
IN_FLIGHT = (QUEUED, RUNNING)

RUN_ORDER_ACTION = "ccms_addon.voc.order_actions.run_order_action"
#: platform retries: 1 minute doubling to 6 hours, 12 attempts (about 20 hours), then failed
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 6 * 3600
MAX_ATTEMPTS = 12
JOB_TIMEOUT = 300
RESULT_TTL = 3600
#: a running job holds its action this long; a job past it was killed (RQ stops it at JOB_TIMEOUT)
LEASE = timedelta(seconds=JOB_TIMEOUT + 60)
#: the sweep looks at actions requested this recently, and gives up on those older than GIVE_UP
SWEEP_WINDOW = timedelta(days=3)
GIVE_UP = timedelta(days=2)
SWEEP_BATCH = 500

#: above any order's total (the store keeps Numeric(20, 4)); a bigger amount is a typo
MAX_AMOUNT = Decimal("1e15")
#: what each action takes (anything else is refused, so a mistaken field is never ignored)
PARAMS: dict[str, frozenset[str]] = {
    "refund": frozenset({"amount", "currency", "lines", "reason", "restock", "notify_customer"}),
    "return": frozenset({"lines", "reason", "restock", "notify_customer"}),
    "cancel": frozenset({"reason", "refund", "restock", "notify_customer"}),
    "resend": frozenset({"lines", "reason", "notify_customer"}),
}
#: payment states in which money was taken (a refund is possible)
PAID_STATES = (FinancialStatus.PAID, FinancialStatus.PARTIALLY_PAID,
               FinancialStatus.PARTIALLY_REFUNDED)
SHIPPED_STATES = (FulfillmentStatus.FULFILLED, FulfillmentStatus.DELIVERED)


class _LineSchema(Schema):
    platform_line_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    quantity = fields.Integer(required=True, strict=True,
                              validate=validate.Range(min=1, max=10_000))


class OrderActionParamsSchema(Schema):
    """The parameters of an order action (which ones apply: :data:`PARAMS`)."""

    class Meta:
        unknown = RAISE

    amount = fields.Decimal(load_default=None, allow_none=True, allow_nan=False,
                            validate=validate.Range(min=Decimal(0), min_inclusive=False,
                                                    max=MAX_AMOUNT))
    currency = fields.String(load_default=None, allow_none=True,
                             validate=validate.Regexp(r"^[A-Za-z]{3}$"))
    lines = fields.List(fields.Nested(_LineSchema), load_default=list,
                        validate=validate.Length(max=250))
    reason = fields.String(load_default="", validate=validate.Length(max=500))
    restock = fields.Boolean(load_default=None, allow_none=True)
    refund = fields.Boolean(load_default=True)
    notify_customer = fields.Boolean(load_default=True)


_PARAMS_SCHEMA = OrderActionParamsSchema()


def action_reference(item_reference: str, sequence: int) -> str:
    """``VOC-2026-000123`` and 2 → ``VOC-2026-000123-A2``: the n-th order action of an item."""
    return f"{item_reference}-A{sequence}"


def order_action_job_id(shop_id: int, event_id: int, attempt: int = 0) -> str:
    return shop_job_id(shop_id, f"order-action-{event_id}"
                                + (f"-retry-{attempt}" if attempt else ""))


def run_order_action(event_id: int) -> str:
    """RQ job: perform the action recorded by the ``order_action_requested`` event ``event_id``."""
    return OrderActions(current()).run(event_id)


@dataclass(frozen=True)
class _Claimed:
    """An action this job holds: the event, its data, the stored JSON text to swap from."""

    event_id: int
    item_id: int
    shop_id: int
    data: dict
    text: str


class OrderActions:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    # ---------------------------------------------------------------------------------------------
    # Asking
    # ---------------------------------------------------------------------------------------------

    def request(self, shop_ids: Collection[int], item_id: int, actor: str, action: str,
                params: Mapping[str, Any] | None = None) -> VocEvent:
        """Ask for ``action`` on the order of VOC item ``item_id``; returns the
        ``order_action_requested`` event (its ``data["reference"]`` names the action; the job
        reports on the same timeline).

        ``shop_ids``: the shops the caller may act for (another shop's item is "not found").
        ``actor``: who asks, as on every timeline (:func:`ccms_addon.voc.service.actor_for`).
        ``action``: ``refund``, ``return``, ``cancel`` or ``resend``. ``params`` (JSON-like):

        * refund — ``amount`` (a decimal string in the order's currency, exact to its minor unit:
          none for KRW or JPY; at most what was paid less what is refunded or on its way back;
          optional when ``lines`` are given: their value), ``currency`` (optional; must be the
          order's), ``lines`` (``[{"platform_line_id", "quantity"}]``), ``restock`` (default
          false), ``reason``, ``notify_customer`` (default true);
        * return — ``lines`` (default every line), ``restock`` (default true), ``reason``,
          ``notify_customer``: the order must have shipped;
        * cancel — ``refund`` (give the payment back, default true), ``restock`` (default true),
          ``reason``, ``notify_customer``: the order must not have shipped nor be cancelled;
        * resend — ``lines`` (default every line), ``reason``, ``notify_customer``: the order
          must have shipped; the lines ship again at no charge.

        Raises :class:`VocActionError`: 404 ``not_found``; 422 with the ``field`` at fault
        (``action``, ``amount``, ``currency``, ``lines``, ``order``…) for a request the policy
        refuses; 409 ``action_in_flight`` when the same action on the order is still running,
        ``shop_inactive`` / ``no_platform`` when the shop cannot be reached. Nothing is written
        when it raises.
        """
        if action not in ACTIONS:
            raise VocActionError(f"Unknown order action {action!r}: use one of "
                                 f"{', '.join(ACTIONS)}.", "unknown_action", field="action")
        values = _load_params(action, params or {})
        with self.runtime.db.session() as session:
            item = session.scalar(select(VocItem).where(VocItem.id == item_id,
                                                        VocItem.shop_id.in_(list(shop_ids))))
            if item is None:
                raise ItemNotFound()
            if item.order_id is None:
                raise VocActionError("This item is not linked to an order.", "no_order",
                                     field="order")
            shop = session.get(Shop, item.shop_id)
            if shop.status is not ShopStatus.ACTIVE:
                raise VocActionError("The shop is uninstalled: its orders cannot be changed "
                                     "from here.", "shop_inactive", 409)
            if shop.platform not in self.runtime.platforms:
                raise VocActionError(f"No adapter for {shop.platform} is installed.",
                                     "no_platform", 409)
            # a conditional no-op write on the order row serialises every action on the order
            # (a row lock on PostgreSQL, the write lock on SQLite) so two requests never both
            # spend the same refundable amount
            session.execute(update(Order).where(Order.id == item.order_id,
                                                Order.shop_id == item.shop_id)
                            .values(updated_at=Order.updated_at))
            order = session.scalar(select(Order).where(Order.id == item.order_id,
                                                       Order.shop_id == item.shop_id))
            if order is None:
                raise VocActionError("The item's order is no longer stored.", "no_order",
                                     field="order")
            lines = list(session.scalars(select(OrderLine).where(
                OrderLine.shop_id == order.shop_id, OrderLine.order_id == order.id)))
            records = _order_records(session, order)
            plan = _policy(action, values, order, lines, records,
                           _committed_elsewhere(session, order, records))
            sequence = 1 + sum(1 for r in records if r.item_id == item.id)
            now = utcnow()
            data = {
                "action": action,
                "reference": action_reference(item.reference, sequence),
                "order_id": order.id, "platform_order_id": order.platform_order_id,
                "order_number": order.number, "currency": order.currency,
                **plan,
                "job": {"status": QUEUED, "attempts": 0, "next_attempt_at": now.isoformat(),
                        "lease_until": None, "error": None, "platform_id": None},
            }
            to = VocStatus.IN_PROGRESS if item.status in (VocStatus.RECEIVED,
                                                           VocStatus.ACKNOWLEDGED) else None
            event = advance(session, item, REQUESTED, actor, to=to,
                            note=plan["reason"] or None, data=data)
            session.flush()
        self._enqueue(order.shop_id, event.id)
        return event

    def _enqueue(self, shop_id: int, event_id: int, attempt: int = 0,
                 delay: timedelta | None = None) -> None:
        job_id = order_action_job_id(shop_id, event_id, attempt)
        try:
            jobs = queue(NOTIFICATIONS_QUEUE, self.runtime.redis, self.runtime.settings)
            if delay is None:
                jobs.enqueue_call(RUN_ORDER_ACTION, args=(event_id,), job_id=job_id,
                                  result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
            else:
                jobs.enqueue_in(delay, RUN_ORDER_ACTION, event_id, job_id=job_id,
                                result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT)
        except Exception:  # noqa: BLE001 — recorded: the sweep enqueues it again
            log.warning("could not enqueue order action %s; the sweep will", event_id)

    # ---------------------------------------------------------------------------------------------
    # Doing (the job)
    # ---------------------------------------------------------------------------------------------

    def run(self, event_id: int) -> str:
        """Perform one requested action; returns what became of it (``done``, ``retrying``,
        ``failed``, or why nothing was done: ``busy``, ``raced``, ``missing``)."""
        claimed = self._claim(event_id)
        if isinstance(claimed, str):
            return claimed
        data = claimed.data
        with self.runtime.db.session() as session:
            shop = session.get(Shop, claimed.shop_id)
            adapter = self.runtime.platforms.get(shop.platform) if shop else None
            reachable = adapter is not None and shop.status is ShopStatus.ACTIVE
            context = self.runtime.shop_context(shop, adapter) if reachable else None
        if context is None:
            return self._failed(claimed, "the shop is uninstalled or its platform adapter is "
                                         "gone: nothing was done")
        lines = tuple(ReturnLine(line["platform_line_id"], int(line["quantity"]))
                      for line in data.get("lines") or ())
        reason = data.get("reason") or ""  # the adapters write the reference before it
        try:
            if data["action"] in ("refund", "return"):
                result = adapter.settle_claim(context, SettlementRequest(
                    platform_order_id=data["platform_order_id"], action=data["action"],
                    reference=data["reference"], currency=data["currency"],
                    amount=Decimal(data["amount"]) if data.get("amount") else None,
                    lines=lines, reason=reason, restock=bool(data.get("restock")),
                    notify_customer=bool(data.get("notify_customer", True))))
                outcome = {"platform_id": result.platform_id, "status": result.status,
                           "result_action": result.action, "detail": result.detail,
                           "amount": str(result.amount) if result.amount is not None else None}
            else:
                result = adapter.order_action(context, OrderActionRequest(
                    platform_order_id=data["platform_order_id"], action=data["action"],
                    reference=data["reference"], lines=lines, reason=reason,
                    refund=bool(data.get("refund", True)), restock=bool(data.get("restock", True)),
                    notify_customer=bool(data.get("notify_customer", True))))
                outcome = {"platform_id": result.platform_id, "status": result.status,
                           "result_action": result.action, "detail": result.detail}
        except PlatformUnavailableError as exc:
            return self._retry(claimed, str(exc))
        except PlatformError as exc:
            return self._failed(claimed, str(exc))
        return self._done(claimed, outcome)

    def _claim(self, event_id: int) -> _Claimed | str:
        now = utcnow()
        with self.runtime.db.session() as session:
            row = session.execute(select(VocEvent.voc_item_id, VocEvent.shop_id,
                                         cast(VocEvent.data, Text))
                                  .where(VocEvent.id == event_id,
                                         VocEvent.type == REQUESTED)).first()
            if row is None:
                return "missing"
            item_id, shop_id, text = row
            data = json.loads(text)
            job = data["job"]
            if job["status"] in (SUCCEEDED, GAVE_UP):
                return job["status"]
            if job["status"] == RUNNING and _when(job.get("lease_until")) > now:
                return "busy"
            job.update(status=RUNNING, attempts=int(job.get("attempts") or 0) + 1,
                       lease_until=(now + LEASE).isoformat())
            stored = _swap(session, event_id, text, data)
            if stored is None:
                return "raced"
        return _Claimed(event_id, item_id, shop_id, data, stored)

    def _settle(self, claimed: _Claimed, job: dict, event_type: str | None, *,
                note: str | None = None, event_data: dict | None = None) -> bool:
        """Swap the action's job state from the one this job claimed, and record ``event_type``
        on the item's timeline in the same transaction; False when another job took it over."""
        data = dict(claimed.data, job=job)
        with self.runtime.db.session() as session:
            if _swap(session, claimed.event_id, claimed.text, data) is None:
                return False
            if event_type:
                item = session.get(VocItem, claimed.item_id)
                add_event(session, item, event_type, "system", note=note, data=event_data)
                item.updated_at = utcnow()
        return True

    def _done(self, claimed: _Claimed, outcome: dict) -> str:
        job = dict(claimed.data["job"], status=SUCCEEDED, lease_until=None, error=None,
                   platform_id=outcome["platform_id"], next_attempt_at=None)
        data = claimed.data
        recorded = self._settle(claimed, job, DONE, note=outcome.get("detail") or None,
                                event_data={"reference": data["reference"],
                                            "action": data["action"], **outcome})
        return SUCCEEDED if recorded else "raced"

    def _failed(self, claimed: _Claimed, error: str) -> str:
        job = dict(claimed.data["job"], status=GAVE_UP, lease_until=None, error=error[:2000],
                   next_attempt_at=None)
        data = claimed.data
        recorded = self._settle(claimed, job, FAILED, note=error[:2000],
                                event_data={"reference": data["reference"],
                                            "action": data["action"]})
        log.warning("order action %s failed: %s", data["reference"], error)
        return GAVE_UP if recorded else "raced"

    def _retry(self, claimed: _Claimed, error: str) -> str:
        attempts = int(claimed.data["job"]["attempts"])
        if attempts >= MAX_ATTEMPTS:
            return self._failed(claimed, f"the platform could not be reached in {attempts} "
                                         f"attempts: {error}")
        delay = timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS))
        job = dict(claimed.data["job"], status=QUEUED, lease_until=None, error=error[:2000],
                   next_attempt_at=(utcnow() + delay).isoformat())
        if not self._settle(claimed, job, None):
            return "raced"
        log.info("order action %s deferred %s: %s", claimed.data["reference"], delay, error)
        self._enqueue(claimed.shop_id, claimed.event_id, attempts, delay)
        return "retrying"


# --------------------------------------------------------------------------------------------------
# The sweep (run by the dispatcher)
# --------------------------------------------------------------------------------------------------


def sweep_order_actions(runtime: Runtime, *, now: datetime | None = None) -> int:
    """Re-enqueue order actions whose job was lost (Redis restarted, a worker was killed): one
    queued and due for longer than :data:`LEASE`, or running past its lease. Actions left
    unfinished :data:`GIVE_UP` after they were asked for are failed for a person to look at.
    Returns how many were enqueued."""
    now = now or utcnow()
    actions = OrderActions(runtime)
    due: list[tuple[int, int]] = []
    for event_id, item_id, shop_id, created_at, text in _recent_actions(runtime, now):
        data = json.loads(text)
        job = data["job"]
        if job["status"] not in IN_FLIGHT:
            continue
        lost = ((job["status"] == QUEUED and _when(job.get("next_attempt_at")) <= now - LEASE)
                or (job["status"] == RUNNING and _when(job.get("lease_until")) <= now))
        if not lost:
            continue
        claimed = _Claimed(event_id, item_id, shop_id, data, text)
        if created_at <= now - GIVE_UP:
            actions._failed(claimed, "the action was not finished in time (its job kept being "
                                     "lost): check the order on the platform before asking again")
            continue
        job = dict(job, status=QUEUED, lease_until=None, next_attempt_at=now.isoformat())
        if actions._settle(claimed, job, None):
            due.append((shop_id, event_id))
    for shop_id, event_id in due:
        actions._enqueue(shop_id, event_id)
    return len(due)


def _recent_actions(runtime: Runtime, now: datetime):
    """Every action asked for within :data:`SWEEP_WINDOW`, in pages by id. The shop filter lets
    the (shop_id, created_at) index of the events serve the time range."""
    after = 0
    while True:
        with runtime.db.session() as session:
            rows = session.execute(
                select(VocEvent.id, VocEvent.voc_item_id, VocEvent.shop_id, VocEvent.created_at,
                       cast(VocEvent.data, Text))
                .where(VocEvent.type == REQUESTED, VocEvent.id > after,
                       VocEvent.shop_id.in_(select(Shop.id)),
                       VocEvent.created_at >= now - SWEEP_WINDOW)
                .order_by(VocEvent.id).limit(SWEEP_BATCH)).all()
        yield from rows
        if len(rows) < SWEEP_BATCH:
            return
        after = rows[-1][0]


# --------------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """One action already asked for on the order (any of its items)."""

    item_id: int
    action: str
    status: str
    amount: Decimal
    platform_id: str | None


def _load_params(action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise VocActionError("The parameters are not an object.", "invalid", field="params")
    for name in sorted(params):
        if name not in PARAMS[action]:
            raise VocActionError(f"{name!r} is not a parameter of a {action}.", "invalid",
                                 field=str(name))
    try:
        return _PARAMS_SCHEMA.load(dict(params))
    except ValidationError as exc:
        field, messages = _first_error(exc.messages)
        raise VocActionError(f"{field}: {messages}", "invalid", field=field) from None


def _first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    """The first field error of a marshmallow message tree as (dotted field, text)."""
    if isinstance(messages, dict):
        key = sorted(messages, key=str)[0]
        return _first_error(messages[key], f"{prefix}.{key}" if prefix else str(key))
    if isinstance(messages, list) and messages and not isinstance(messages[0], str):
        return _first_error(messages[0], prefix)
    return prefix or "params", " ".join(messages) if isinstance(messages, list) else str(messages)


def _order_records(session: Session, order: Order) -> list[_Record]:
    """Every order action asked for on any item of ``order`` (the order row is locked)."""
    rows = session.execute(
        select(VocEvent.voc_item_id, VocEvent.data)
        .join(VocItem, VocItem.id == VocEvent.voc_item_id)
        .where(VocItem.shop_id == order.shop_id, VocItem.order_id == order.id,
               VocEvent.shop_id == order.shop_id, VocEvent.type == REQUESTED)).all()
    records = []
    for item_id, data in rows:
        data = data or {}
        job = data.get("job") or {}
        records.append(_Record(item_id, data.get("action", ""), job.get("status", ""),
                               Decimal(data.get("committed") or 0), job.get("platform_id")))
    return records


def _committed_elsewhere(session: Session, order: Order, records: list[_Record]) -> Decimal:
    """Money already given back or on its way back: the platform's refunds, refunds and returns
    of order actions still running (or done, until the platform's refund arrives), and the
    guarantee claims approved but not yet seen refunded."""
    refunds = session.execute(select(Refund.platform_refund_id, Refund.amount).where(
        Refund.shop_id == order.shop_id, Refund.platform_order_id == order.platform_order_id,
        Refund.currency == order.currency)).all()
    seen = {platform_id for platform_id, _ in refunds}
    total = sum((amount for _, amount in refunds), Decimal(0))
    for record in records:
        # a done refund counts until the platform's refund arrives; a done cancel's refund
        # cannot be matched to the platform's refunds, and nothing is left after it anyway
        if record.status in IN_FLIGHT or (record.status == SUCCEEDED and (
                record.action == "cancel"
                or (record.action == "refund" and record.platform_id not in seen))):
            total += record.amount
    for status, amount, settlement in session.execute(
            select(Claim.status, Claim.amount, Claim.settlement).where(
                Claim.shop_id == order.shop_id, Claim.order_id == order.id,
                Claim.status.in_((ClaimStatus.APPROVED, ClaimStatus.SETTLED)))).all():
        if amount is None:
            continue
        if status is ClaimStatus.APPROVED or (
                (settlement or {}).get("action") == "refund"
                and (settlement or {}).get("platform_id") not in seen):
            total += amount
    return total


def _policy(action: str, values: dict[str, Any], order: Order, lines: list[OrderLine],
            records: list[_Record], committed: Decimal) -> dict[str, Any]:
    """The action's checked plan (what the job will ask the platform for), or
    :class:`VocActionError` naming the field at fault."""
    cancelled = order.cancelled_at is not None
    in_flight = [r for r in records if r.action == action and r.status in IN_FLIGHT]
    if in_flight and action != "refund":
        raise VocActionError(f"A {action} of this order is already on its way.",
                             "action_in_flight", 409, field="action")
    chosen = _lines(values["lines"], lines)
    plan: dict[str, Any] = {
        "reason": " ".join(values["reason"].split()),
        "notify_customer": values["notify_customer"],
        "lines": [{"platform_line_id": line_id, "quantity": quantity}
                  for line_id, quantity in chosen],
    }
    value_of = {line.platform_line_id: line.unit_price for line in lines}
    if action == "cancel":
        if cancelled or any(r.action == "cancel" and r.status == SUCCEEDED for r in records):
            raise VocActionError("The order is already cancelled.", "order_cancelled",
                                 field="order")
        if order.fulfillment_status is not FulfillmentStatus.UNFULFILLED:
            raise VocActionError("Only an order that has not shipped can be cancelled "
                                 f"(it is {order.fulfillment_status.value}): return it instead.",
                                 "order_shipped", field="order")
        paid = order.total if order.financial_status in PAID_STATES else Decimal(0)
        plan.update(refund=values["refund"],
                    restock=True if values["restock"] is None else values["restock"],
                    # a cancel with its refund gives back everything paid
                    committed=format(paid if values["refund"] else Decimal(0), "f"))
        return plan
    if action in ("resend", "return"):
        if cancelled:
            raise VocActionError("The order is cancelled.", "order_cancelled", field="order")
        if order.fulfillment_status not in SHIPPED_STATES and not (
                action == "return" and order.fulfillment_status is FulfillmentStatus.PARTIAL):
            verb = "sent again" if action == "resend" else "returned"
            raise VocActionError(f"Only a shipped order can be {verb} (it is "
                                 f"{order.fulfillment_status.value}).", "order_not_shipped",
                                 field="order")
        if action == "resend":
            return plan
        every = chosen or [(line.platform_line_id, line.quantity) for line in lines]
        worth = quantize(sum((value_of[i] * q for i, q in every), Decimal(0)), order.currency)
        _within(order, worth, committed, "lines")
        plan.update(restock=True if values["restock"] is None else values["restock"],
                    committed=str(worth))
        return plan
    # refund
    if values["currency"] and values["currency"].upper() != order.currency.upper():
        raise VocActionError(f"The order is in {order.currency}: give the amount in "
                             f"{order.currency}.", "currency_mismatch", field="currency")
    amount = values["amount"]
    if amount is None:
        if not chosen:
            raise VocActionError("Give the amount to refund, or the lines whose value to refund.",
                                 "required", field="amount")
        amount = quantize(sum((value_of[i] * q for i, q in chosen), Decimal(0)), order.currency)
    elif quantize(amount, order.currency) != amount:
        digits = minor_units(order.currency)
        raise VocActionError(
            f"{order.currency} has no minor unit: give a whole amount." if digits == 0 else
            f"{order.currency} amounts have at most {digits} decimals.", "amount_precision",
            field="amount")
    if order.financial_status not in PAID_STATES:
        raise VocActionError(f"Nothing was paid on this order that could be refunded (its "
                             f"payment is {order.financial_status.value}).", "nothing_paid",
                             field="amount")
    _within(order, amount, committed, "amount")
    plan.update(amount=format(amount, "f"), committed=format(amount, "f"),
                restock=bool(values["restock"]))
    return plan


def _within(order: Order, amount: Decimal, committed: Decimal, field: str) -> None:
    """``amount`` fits in what was paid less what is refunded or on its way back."""
    paid = order.total if order.financial_status in PAID_STATES else Decimal(0)
    left = max(quantize(paid - committed, order.currency), Decimal(0))
    if amount > left:
        raise VocActionError(
            f"{format(quantize(amount, order.currency), 'f')} {order.currency} is more than the "
            f"{format(left, 'f')} {order.currency} left to refund on this order (paid "
            f"{format(quantize(paid, order.currency), 'f')}, refunded or on its way back "
            f"{format(quantize(committed, order.currency), 'f')}).", "amount_too_high",
            field=field)


def _lines(wanted: list[dict[str, Any]], lines: list[OrderLine]) -> list[tuple[str, int]]:
    """The asked lines, merged per line and checked against the order's."""
    by_id = {line.platform_line_id: line for line in lines}
    totals: dict[str, int] = {}
    for entry in wanted:
        totals[entry["platform_line_id"]] = totals.get(entry["platform_line_id"], 0) \
            + entry["quantity"]
    first = {}
    for index, entry in enumerate(wanted):
        first.setdefault(entry["platform_line_id"], index)
    for line_id, quantity in totals.items():
        index = first[line_id]
        line = by_id.get(line_id)
        if line is None:
            raise VocActionError(f"The order has no line {line_id}.", "unknown_line",
                                 field=f"lines.{index}.platform_line_id")
        if quantity > line.quantity:
            raise VocActionError(f"Line {line_id} has {line.quantity}, not {quantity}.",
                                 "quantity_too_high", field=f"lines.{index}.quantity")
    return list(totals.items())


# --------------------------------------------------------------------------------------------------
# The action's record: compare-and-swap on the event's stored JSON
# --------------------------------------------------------------------------------------------------


def _swap(session: Session, event_id: int, expected: str, data: dict) -> str | None:
    """Replace the event's data if its stored text is still ``expected``; the new stored text,
    or None when another job changed it first. JSON text comparison works the same on SQLite
    (TEXT) and PostgreSQL (``json`` keeps its input text)."""
    moved = session.execute(update(VocEvent).where(VocEvent.id == event_id,
                                                   cast(VocEvent.data, Text) == expected)
                            .values(data=data)).rowcount
    if moved != 1:
        return None
    return session.scalar(select(cast(VocEvent.data, Text)).where(VocEvent.id == event_id))


def _when(value: str | None) -> datetime:
    return datetime.fromisoformat(value) if value else datetime.min.replace(tzinfo=utcnow().tzinfo)
