"""Guarantee claims: eligibility against the enrollment's terms, the merchant's decision, and the
platform-side refund or return.

A claim is always recorded — a VOC item of kind ``claim`` and a ``Claim`` row, in one transaction —
even when it falls outside the terms (``ineligible``, with the reasons): ISO 10002 asks that every
complaint be recorded, and the merchant may still make an exception. Approving one hands it to
:func:`settle_claim`, an RQ job that asks the platform's adapter to create the refund or return
(idempotent by the claim's reference) and retries with backoff while the platform is unreachable;
the dispatcher's sweep (:func:`sweep_due_settlements`) re-enqueues what Redis lost. The shopper
is told the outcome through the outbox, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ccms_addon.jobs.notify import notify_merchant_soon
from ccms_addon.money import format_amount, quantize
from ccms_addon.outbox import OutgoingMessage, Outbox, record
from ccms_addon.platforms import (PlatformError, PlatformUnavailableError, ReturnLine,
                                  SettlementRequest)
from ccms_addon.programs import templates
from ccms_addon.programs.schedule import add_months
from ccms_addon.programs.collections import covered_products, named_collections
from ccms_addon.programs.enrollment import line_covered
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue, shop_job_id
from ccms_addon.runtime import Runtime, current
from ccms_addon.store.models import (Claim, ClaimStatus, Enrollment, EnrollmentStatus, Order,
                                     OrderLine, Program, ProgramKind, ProgramVersion, Shop,
                                     ShopStatus, VocChannel, VocItem, VocKind, VocStatus, utcnow)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.settings import ack_promise_hours
from ccms_addon.voc.lifecycle import add_event, advance

log = logging.getLogger(__name__)

SETTLE_CLAIM = "ccms_addon.programs.claims.settle_claim"
#: platform retries: 1 minute doubling to 6 hours, then a human is asked (status failed)
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 6 * 3600
MAX_ATTEMPTS = 12
RESULT_TTL = 3600
JOB_TIMEOUT = 300


class ClaimError(ValueError):
    """The claim cannot be recorded as asked (no such order, no such program): a 4xx."""


class DecisionError(ValueError):
    """The claim is not in a state this decision applies to."""


@dataclass(frozen=True)
class ClaimRequest:
    """What a shopper asks for. ``lines`` empty means every covered line of the order."""

    kind: ProgramKind
    order_id: int
    message: str
    actor: str = "shopper"
    channel: VocChannel = VocChannel.WIDGET
    event: str | None = None
    event_date: datetime | None = None
    lines: tuple[ReturnLine, ...] = ()
    evidence: dict = field(default_factory=dict)
    conditions_accepted: bool = False
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class Assessment:
    eligible: bool
    reasons: tuple[str, ...]
    amount: Decimal | None
    percent: Decimal | None
    lines: tuple[ReturnLine, ...]

    def as_json(self) -> dict:
        return {"eligible": self.eligible, "reasons": list(self.reasons),
                "percent": str(self.percent) if self.percent is not None else None}


def event_moment(day: date) -> datetime:
    """A shopper gives the event's date, not its time: noon UTC of that day, or now if that is
    later than now (today's date entered in the morning is not "in the future")."""
    return min(datetime.combine(day, time(12), tzinfo=timezone.utc), utcnow())


def _band_percent(terms: dict, anchor: datetime, event_date: datetime) -> Decimal | None:
    for band in terms["value_schedule"]:
        if event_date <= add_months(anchor, band["until_month"]):
            return Decimal(band["percent"])
    return None


def assess(kind: ProgramKind, terms: dict, enrollment: Enrollment | None, order: Order,
           order_lines: list[OrderLine], request: ClaimRequest, now: datetime,
           in_collections: frozenset[str] = frozenset()) -> Assessment:
    """Check a claim against the terms the order was enrolled under. Pure: reads, writes nothing.
    ``in_collections``: the order's products that were in the terms' collections at enrollment."""
    reasons: list[str] = []
    if enrollment is None:
        reasons.append("not_enrolled")
    elif enrollment.status is not EnrollmentStatus.ACTIVE:
        reasons.append("enrollment_cancelled")
    rules = terms.get("products") or {}
    by_id = {line.platform_line_id: line for line in order_lines}
    wanted = request.lines or tuple(
        ReturnLine(line.platform_line_id, line.quantity) for line in order_lines
        if line_covered(rules, line.product_id, line.sku, in_collections))
    chosen: list[ReturnLine] = []
    for want in wanted:
        line = by_id.get(want.platform_line_id)
        if line is None or not line_covered(rules, line.product_id, line.sku, in_collections):
            reasons.append(f"line_not_covered:{want.platform_line_id}")
        elif not 1 <= want.quantity <= line.quantity:
            reasons.append(f"quantity_too_high:{want.platform_line_id}")
        else:
            chosen.append(want)
    if not wanted:
        reasons.append("no_covered_line")
    price = sum((by_id[c.platform_line_id].unit_price * c.quantity for c in chosen), Decimal(0))
    percent = None
    if enrollment is not None and kind is ProgramKind.FREE_RETURN:
        if enrollment.ends_at and now > enrollment.ends_at:
            reasons.append("window_ended")
        if terms.get("conditions") and not request.conditions_accepted:
            reasons.append("conditions_not_accepted")
        percent = Decimal(100)
    elif enrollment is not None and kind is ProgramKind.BUYBACK:
        codes = {event["code"] for event in terms["qualifying_events"]}
        if request.event not in codes:
            reasons.append("event_not_covered")
        if request.event_date is None:
            reasons.append("event_date_missing")
        elif request.event_date > now:
            reasons.append("event_date_in_future")
        elif request.event_date < enrollment.anchor_at or (
                enrollment.ends_at and request.event_date > enrollment.ends_at):
            reasons.append("event_outside_window")
        else:
            percent = _band_percent(terms, enrollment.anchor_at, request.event_date)
            if percent is None:
                reasons.append("event_outside_window")
        if terms.get("evidence_required") and not any(request.evidence.values()):
            reasons.append("evidence_missing")
    amount = None
    if percent is not None and chosen:
        amount = quantize(price * percent / 100, order.currency)
        cap = terms.get("cap")
        if cap and cap["currency"] == order.currency:
            amount = min(amount, Decimal(cap["amount"]))
    return Assessment(not reasons, tuple(reasons), amount, percent, tuple(chosen))


def submit_claim(runtime: Runtime, shop_id: int, request: ClaimRequest) -> tuple[VocItem, Claim]:
    """Record a claim (eligible or not) and tell the shopper it was received."""
    now = utcnow()
    with runtime.db.session() as session:
        order = session.scalar(select(Order).where(Order.shop_id == shop_id,
                                                   Order.id == request.order_id))
        if order is None:
            raise ClaimError("No such order.")
        found = session.execute(
            select(Enrollment, ProgramVersion.terms)
            .join(Program, Program.id == Enrollment.program_id)
            .join(ProgramVersion, ProgramVersion.id == Enrollment.program_version_id)
            .where(Enrollment.shop_id == shop_id, Enrollment.order_id == order.id,
                   Program.kind == request.kind)
            .order_by(Enrollment.id.desc()).limit(1)).first()
        enrollment, terms = found if found else (None, {})
        lines = list(session.scalars(select(OrderLine).where(OrderLine.shop_id == shop_id,
                                                             OrderLine.order_id == order.id)))
        in_collections = frozenset()
        if enrollment is not None and named_collections(terms):
            in_collections = covered_products(session, shop_id, named_collections(terms),
                                              (line.product_id for line in lines),
                                              as_of=enrollment.created_at)
        assessment = assess(request.kind, terms, enrollment, order, lines, request, now,
                            in_collections)
        shop = session.get(Shop, shop_id)
        ack_hours = ack_promise_hours(shop)
        order_number, currency = order.number, order.currency
    claim_holder: list[Claim] = []

    def attach(session: Session, item: VocItem) -> None:
        claim = Claim(shop_id=shop_id, voc_item_id=item.id,
                      enrollment_id=enrollment.id if enrollment else None, order_id=order.id,
                      program_kind=request.kind,
                      status=ClaimStatus.PENDING if assessment.eligible else ClaimStatus.INELIGIBLE,
                      event=request.event, event_date=request.event_date,
                      eligibility=assessment.as_json(), amount=assessment.amount,
                      currency=currency,
                      lines=[{"platform_line_id": l.platform_line_id, "quantity": l.quantity}
                             for l in assessment.lines],
                      evidence=dict(request.evidence), attempts=0, created_at=now,
                      updated_at=now)
        session.add(claim)
        session.flush()
        claim_holder.append(claim)
        contact = request.contact_email
        if contact:
            record(session.connection(), _shopper_message(
                runtime, shop, claim, item.reference, order_number, request.contact_name,
                contact, request.locale, "claim_received", key=f"claim:{claim.id}:received"))

    item = record_voc_item(runtime, shop_id, NewVocItem(
        kind=VocKind.CLAIM, channel=request.channel, body=request.message, actor=request.actor,
        subject=f"{request.kind.value.replace('_', ' ')} claim for order {order_number}",
        locale=request.locale, contact_name=request.contact_name,
        contact_email=request.contact_email, contact_phone=request.contact_phone,
        order_id=order.id, customer_id=order.customer_id, category=request.kind.value,
        ack_promise_hours=ack_hours,
        event_data={"claim": assessment.as_json(), "event": request.event}, attach=attach))
    claim = claim_holder[0]
    notify_merchant_soon(runtime, item.id, shop_id=item.shop_id)
    if request.contact_email:
        _deliver_soon(runtime, shop_id, [f"claim:{claim.id}:received"])
    return item, claim


def _shopper_message(runtime: Runtime, shop: Shop, claim: Claim, reference: str,
                     order_number: str, name: str | None, email: str, locale: str | None,
                     template: str, *, key: str, note: str | None = None) -> OutgoingMessage:
    chosen, text = templates.pick(template, None, templates.languages(locale, shop.locale))
    amount = (f"{format_amount(claim.amount, claim.currency)} {claim.currency}"
              if claim.amount is not None and claim.currency else None)
    subject, body = templates.render(text, dict(
        shop_name=shop.name or shop.domain, customer_name=name, order_number=order_number,
        reference=reference, amount=amount, note=note, link=runtime.settings.public_url,
        program_name=None, window_ends_on=None, days_left=None, scores=[]))
    return OutgoingMessage(key=key, shop_id=shop.id, channel="email", recipient=email,
                           subject=subject, body=body, locale=chosen,
                           data={"purpose": "transactional", "claim_reference": reference})


def _deliver_soon(runtime: Runtime, shop_id: int, keys: list[str]) -> None:
    """Hand messages to RQ; if Redis is down the outbox sweep sends them later."""
    from ccms_addon.outbox import enqueue
    try:
        enqueue(runtime, keys, shop_id=shop_id)
    except Exception:  # noqa: BLE001
        log.warning("could not enqueue %s; the outbox sweep will", keys)


# --------------------------------------------------------------------------------------------------
# The merchant's decision
# --------------------------------------------------------------------------------------------------

DECIDABLE = (ClaimStatus.PENDING, ClaimStatus.INELIGIBLE)


def decide(runtime: Runtime, shop_id: int, claim_id: int, *, approve: bool, actor: str,
           note: str | None = None, amount: Decimal | None = None) -> Claim:
    """Approve (→ settlement job) or reject (→ the shopper is told) a claim of this shop.

    ``amount`` overrides the assessed amount (an exception, a goodwill gesture). Raises
    ``LookupError`` for another shop's or a missing claim, :class:`DecisionError` when the claim
    was already decided.
    """
    now = utcnow()
    with runtime.db.session() as session:
        claim = session.scalar(select(Claim).where(Claim.shop_id == shop_id, Claim.id == claim_id))
        if claim is None:
            raise LookupError("No such claim.")
        target = ClaimStatus.APPROVED if approve else ClaimStatus.REJECTED
        values = dict(status=target, decided_by=actor, decided_at=now, decision_note=note,
                      updated_at=now, next_attempt_at=now if approve else None)
        if approve and amount is not None:
            values["amount"] = quantize(amount, claim.currency)
        moved = session.execute(update(Claim).where(Claim.id == claim.id,
                                                    Claim.status.in_(DECIDABLE))
                                .values(**values)).rowcount
        if moved != 1:
            raise DecisionError(f"The claim is already {claim.status.value}.")
        session.refresh(claim)
        item = session.get(VocItem, claim.voc_item_id)
        advance(session, item, "claim_approved" if approve else "claim_rejected", actor,
                to=VocStatus.IN_PROGRESS if approve else VocStatus.RESPONDED, note=note,
                data={"amount": str(claim.amount) if claim.amount is not None else None})
        key = None
        if not approve and item.contact_email:
            order = session.get(Order, claim.order_id) if claim.order_id else None
            key = f"claim:{claim.id}:decision"
            record(session.connection(), _shopper_message(
                runtime, session.get(Shop, shop_id), claim, item.reference,
                order.number if order else "", item.contact_name, item.contact_email,
                item.locale, "claim_rejected", key=key, note=note))
    if approve:
        enqueue_settlement(runtime, shop_id, claim.id)
    elif key:
        _deliver_soon(runtime, shop_id, [key])
    return claim


def settlement_job_id(shop_id: int, claim_id: int, attempt: int = 0) -> str:
    return shop_job_id(shop_id, f"settle-claim-{claim_id}"
                                + (f"-retry-{attempt}" if attempt else ""))


def enqueue_settlement(runtime: Runtime, shop_id: int, claim_id: int, attempt: int = 0) -> None:
    try:
        queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).enqueue_call(
            SETTLE_CLAIM, args=(claim_id,), job_id=settlement_job_id(shop_id, claim_id, attempt),
            result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
    except Exception:  # noqa: BLE001 — the sweep finds approved claims that are due
        log.warning("could not enqueue the settlement of claim %s; the sweep will", claim_id)


# --------------------------------------------------------------------------------------------------
# Settlement on the platform
# --------------------------------------------------------------------------------------------------


def settle_claim(claim_id: int) -> str:
    """RQ job: create the platform-side refund or return of an approved claim."""
    return Settlement(current()).run(claim_id)


def claim_reference(claim_id: int) -> str:
    return f"CLAIM-{claim_id}"


class Settlement:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def run(self, claim_id: int) -> str:
        with self.runtime.db.session() as session:
            claim = session.get(Claim, claim_id)
            if claim is None:
                return "missing"
            if claim.status is not ClaimStatus.APPROVED:
                return claim.status.value
            shop = session.get(Shop, claim.shop_id)
            order = session.get(Order, claim.order_id) if claim.order_id else None
            adapter = self.runtime.platforms.get(shop.platform)
            if order is None or adapter is None or shop.status is not ShopStatus.ACTIVE:
                return self._fail(claim_id, "the order, the shop or its platform is gone")
            context = self.runtime.shop_context(shop, adapter)
            terms = {}
            if claim.enrollment_id:
                enrollment = session.get(Enrollment, claim.enrollment_id)
                terms = session.get(ProgramVersion, enrollment.program_version_id).terms
            free_return = claim.program_kind is ProgramKind.FREE_RETURN
            request = SettlementRequest(
                platform_order_id=order.platform_order_id,
                action="return" if free_return else "refund",
                reference=claim_reference(claim.id), currency=order.currency,
                amount=claim.amount,
                lines=tuple(ReturnLine(l["platform_line_id"], int(l["quantity"]))
                            for l in claim.lines or ()),
                reason=f"{claim.program_kind.value.replace('_', ' ')} guarantee "
                       f"{claim_reference(claim.id)}",
                restock=bool(terms.get("restock", free_return)))
        try:
            result = adapter.settle_claim(context, request)
        except PlatformUnavailableError as exc:
            return self._retry(claim_id, str(exc))
        except PlatformError as exc:
            return self._fail(claim_id, str(exc))
        return self._settled(claim_id, result)

    def _settled(self, claim_id: int, result) -> str:
        now = utcnow()
        with self.runtime.db.session() as session:
            claim = session.get(Claim, claim_id)
            moved = session.execute(update(Claim).where(Claim.id == claim_id,
                                                        Claim.status == ClaimStatus.APPROVED)
                                    .values(status=ClaimStatus.SETTLED, settled_at=now,
                                            next_attempt_at=None, error=None, updated_at=now,
                                            settlement={"action": result.action,
                                                        "platform_id": result.platform_id,
                                                        "status": result.status,
                                                        "detail": result.detail})).rowcount
            if moved != 1:
                return "raced"
            session.refresh(claim)
            item = session.get(VocItem, claim.voc_item_id)
            advance(session, item, "claim_settled", "system", to=VocStatus.RESPONDED,
                    data={"action": result.action, "platform_id": result.platform_id})
            key = None
            if item.contact_email:
                order = session.get(Order, claim.order_id)
                key = f"claim:{claim.id}:decision"
                record(session.connection(), _shopper_message(
                    self.runtime, session.get(Shop, claim.shop_id), claim, item.reference,
                    order.number, item.contact_name, item.contact_email, item.locale,
                    "claim_approved", key=key, note=claim.decision_note))
        if key:
            Outbox(self.runtime).deliver(key)
        return ClaimStatus.SETTLED.value

    def _retry(self, claim_id: int, error: str) -> str:
        with self.runtime.db.session() as session:
            claim = session.get(Claim, claim_id)
            attempts = claim.attempts + 1
            if attempts >= MAX_ATTEMPTS:
                return self._fail(claim_id, f"platform unreachable after {attempts} attempts: "
                                            f"{error}")
            delay = timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** (attempts - 1),
                                          RETRY_MAX_SECONDS))
            claim.attempts, claim.error = attempts, error[:2000]
            claim.next_attempt_at = utcnow() + delay
            shop_id = claim.shop_id
        log.info("settlement of claim %s deferred %s: %s", claim_id, delay, error)
        try:
            queue(NOTIFICATIONS_QUEUE, self.runtime.redis, self.runtime.settings).enqueue_in(
                delay, SETTLE_CLAIM, claim_id,
                job_id=settlement_job_id(shop_id, claim_id, attempts),
                result_ttl=RESULT_TTL, job_timeout=JOB_TIMEOUT)
        except Exception:  # noqa: BLE001
            log.warning("could not schedule the retry of claim %s; the sweep will", claim_id)
        return "retrying"

    def _fail(self, claim_id: int, error: str) -> str:
        with self.runtime.db.session() as session:
            claim = session.get(Claim, claim_id)
            if claim.status is not ClaimStatus.APPROVED:
                return claim.status.value
            claim.status, claim.error, claim.next_attempt_at = ClaimStatus.FAILED, error[:2000], None
            item = session.get(VocItem, claim.voc_item_id)
            add_event(session, item, "claim_settlement_failed", "system", note=error[:2000])
        log.warning("settlement of claim %s failed: %s", claim_id, error)
        return ClaimStatus.FAILED.value


#: an approved claim whose settlement has not finished this long after it was due is re-enqueued
SETTLEMENT_LEASE = timedelta(minutes=10)


def sweep_due_settlements(runtime: Runtime, *, now: datetime | None = None) -> int:
    """Re-enqueue approved claims whose settlement job is due and may have been lost."""
    now = now or utcnow()
    with runtime.db.session() as session:
        due = session.execute(
            select(Claim.shop_id, Claim.id).where(Claim.status == ClaimStatus.APPROVED,
                                                  or_(Claim.next_attempt_at.is_(None),
                                                      Claim.next_attempt_at
                                                      <= now - SETTLEMENT_LEASE))
            .limit(200)).all()
        if due:
            session.execute(update(Claim).where(Claim.id.in_([r.id for r in due]))
                            .values(next_attempt_at=now))
    for shop_id, claim_id in due:
        enqueue_settlement(runtime, shop_id, claim_id)
    return len(due)
