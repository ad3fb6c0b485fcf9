"""The RQ job that sends follow-ups, each exactly once.

``send_follow_ups(ids)`` takes the follow-ups the scheduler grouped (due in the same minute) and,
for each, decides, then acts in one transaction:

- **cancel** when a stop condition holds: shop uninstalled, enrollment cancelled, order cancelled
  or refunded;
- **skip** (recorded with its reason) when it must not be sent: a marketing step without the
  shopper's consent, no address for the channel (e.g. Shopify's protected customer data not
  granted), a guarantee reminder after the guarantee ended;
- **postpone** a marketing step while a complaint on the order is open (a day at a time), and any
  step that would land in the shopper's quiet hours (to their end);
- **send**: render the text in the shopper's language, then record the outbox message (key
  ``followup:<id>``) and mark the follow-up ``dispatched`` in the same commit, and hand the key to
  the outbox, which sends it at most once. A job that runs again finds ``dispatched`` and only asks
  the outbox to finish what it started.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from babel.dates import format_date
from sqlalchemy import select, update
from sqlalchemy.orm import Session, configure_mappers

from ccms_addon.links import make_link
from ccms_addon.outbox import OutgoingMessage, Outbox, record
from ccms_addon.programs import templates
from ccms_addon.programs.enrollment import STOPPING_FINANCIAL, stop_orders
from ccms_addon.programs.schedule import outside_quiet_hours, zone
from ccms_addon.runtime import Runtime, current
from ccms_addon.store.models import (Customer, Enrollment, EnrollmentStatus, FollowUp,
                                     FollowUpStatus, Order, Program, ProgramVersion, Shop,
                                     ShopStatus, VocItem, VocKind, VocStatus, utcnow)

log = logging.getLogger(__name__)

#: a marketing step waits this long at a time while a complaint on its order is open …
POSTPONE_STEP = timedelta(days=1)
#: … at most this many times, then it is skipped
MAX_POSTPONES = 14
#: a job that runs this much before its row's due time puts the row back (early re-enqueue)
EARLY_TOLERANCE = timedelta(minutes=1)
#: the hosted page a follow-up's link opens, and the link's purpose
PAGE_PATH = "/f"
LINK_PURPOSE = "follow-up"
#: which order field a channel delivers to, best first
RECIPIENT_FIELDS = {"email": ("email",), "webhook": ("phone", "email")}
#: the kinds of VOC items whose open state pauses marketing messages
PAUSING_KINDS = (VocKind.COMPLAINT, VocKind.CLAIM)


def message_key(follow_up_id: int) -> str:
    return f"followup:{follow_up_id}"


def follow_up_link(runtime: Runtime, follow_up_id: int, shop_id: int, query: str = "") -> str:
    return make_link(runtime.settings, PAGE_PATH, LINK_PURPOSE, {"f": follow_up_id, "s": shop_id},
                     query)


def warm_up(runtime: Runtime) -> None:
    """Load what every send needs once, in a forking worker's parent, so its work-horses inherit
    it instead of each paying for it: compiled templates, CLDR date formats, the notifiers and
    the email machinery."""
    from email.message import EmailMessage
    from email.policy import SMTP
    templates.warm_up()
    for locale in ("ko", "en", "ja"):
        format_date(utcnow().date(), "long", locale=locale)
    for name in ("Asia/Seoul", "Asia/Tokyo", "UTC"):
        zone(name)
    Outbox(runtime).notifiers  # noqa: B018 — builds and caches the registry
    message = EmailMessage(policy=SMTP)
    message["Subject"] = "warm-up 준비"
    message.set_content("준비", charset="utf-8")
    message.as_bytes()
    # SQLAlchemy compiles each statement once per engine and caches it: run a send's reads and
    # writes against ids that do not exist, so each work-horse does not compile them again
    # (measured: ~100 ms of a ~190 ms job in a forked child)
    configure_mappers()
    with runtime.db.session() as session:
        for model in (FollowUp, Enrollment, Shop, Order, ProgramVersion, Program, Customer):
            session.get(model, 0)
        FollowUpSender._complaint_open(session, Order(id=0, shop_id=0))
        probe = FollowUp(id=0, shop_id=0, order_id=0, postponed=0)
        FollowUpSender._close(session, probe, FollowUpStatus.SKIPPED, None)
        FollowUpSender._reschedule(session, probe, utcnow())
        session.rollback()
    Outbox(runtime).warm_up()


def send_follow_ups(follow_up_ids: list[int], *, now: datetime | None = None) -> dict[int, str]:
    """RQ job. What happened to each: ``sent``, ``pending`` (the outbox retries), ``skipped``,
    ``cancelled``, ``postponed``, ``not_due``, ``missing``… One follow-up's failure (a store
    error) fails the job after the others had their turn; RQ's retry then redoes only what is
    not done (each one is idempotent). ``now``: the clock, for tests that run a job at its time."""
    sender = FollowUpSender(current())
    outcomes: dict[int, str] = {}
    failed: Exception | None = None
    for follow_up_id in follow_up_ids:
        try:
            outcomes[follow_up_id] = sender.run(follow_up_id, now=now)
        except Exception as exc:  # noqa: BLE001 — the rest of the batch still gets its turn
            log.exception("follow-up %s could not be sent", follow_up_id)
            failed = failed or exc
    if failed is not None:
        raise failed
    return outcomes


@dataclass
class _Decision:
    action: str                      # send | skip | cancel | postpone
    reason: str | None = None
    until: datetime | None = None
    message: OutgoingMessage | None = None
    counts_as_postpone: bool = False


class FollowUpSender:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.outbox = Outbox(runtime)

    def run(self, follow_up_id: int, *, now: datetime | None = None) -> str:
        now = now or utcnow()
        claimed = None
        with self.runtime.db.session() as session:
            follow_up = session.get(FollowUp, follow_up_id)
            if follow_up is None:
                return "missing"
            if follow_up.status is FollowUpStatus.DISPATCHED:
                key = message_key(follow_up.id)
            elif follow_up.status in (FollowUpStatus.SKIPPED, FollowUpStatus.CANCELLED):
                return follow_up.status.value
            elif follow_up.due_at > now + EARLY_TOLERANCE:
                self._reschedule(session, follow_up, follow_up.due_at)
                return "not_due"
            else:
                decision = self._decide(session, follow_up, now)
                outcome = self._apply(session, follow_up, decision, now)
                if outcome == "dispatched":
                    claimed = decision.message.key
                elif outcome == "dispatched_before":
                    key = decision.message.key
                else:
                    return outcome
        if claimed:
            return self.outbox.deliver_claimed(claimed)
        return self.outbox.deliver(key)

    # -- deciding -----------------------------------------------------------------------------

    def _decide(self, session: Session, follow_up: FollowUp, now: datetime) -> _Decision:
        enrollment = session.get(Enrollment, follow_up.enrollment_id)
        shop = session.get(Shop, follow_up.shop_id)
        order = session.get(Order, follow_up.order_id)
        if shop is None or shop.status is not ShopStatus.ACTIVE:
            return _Decision("cancel", "shop uninstalled")
        if enrollment is None or enrollment.status is not EnrollmentStatus.ACTIVE:
            return _Decision("cancel", enrollment.cancelled_reason if enrollment else "unenrolled")
        if order is None or order.cancelled_at is not None:
            return _Decision("cancel", "order cancelled")
        if order.financial_status in STOPPING_FINANCIAL:
            return _Decision("cancel", "order refunded")
        version = session.get(ProgramVersion, enrollment.program_version_id)
        step = next((s for s in version.terms.get("steps") or () if s["key"] == follow_up.step),
                    None)
        if step is None:
            return _Decision("skip", "the step is not in the enrollment's terms")
        if follow_up.channel not in self.outbox.notifiers:
            return _Decision("skip", f"no notifier for the channel {follow_up.channel!r}")
        recipient = self._recipient(session, order, follow_up.channel)
        if not recipient:
            return _Decision("skip", "no address for the channel (contact data not available)")
        marketing = follow_up.purpose == "marketing"
        if marketing and not order.accepts_marketing:
            return _Decision("skip", "no marketing consent")
        if follow_up.kind == "reminder" and enrollment.ends_at and enrollment.ends_at <= now:
            return _Decision("skip", "the guarantee has ended")
        if marketing and self._complaint_open(session, order):
            if follow_up.postponed >= MAX_POSTPONES:
                return _Decision("skip", "a complaint on the order stayed open")
            return _Decision("postpone", "a complaint on the order is open",
                             until=now + POSTPONE_STEP, counts_as_postpone=True)
        allowed = outside_quiet_hours(now, enrollment.timezone, version.terms["quiet_hours"])
        if allowed > now:
            return _Decision("postpone", "quiet hours", until=allowed)
        program = session.get(Program, enrollment.program_id)
        return _Decision("send", message=self._compose(follow_up, step, shop, order, enrollment,
                                                       program, recipient, now))

    @staticmethod
    def _recipient(session: Session, order: Order, channel: str) -> str | None:
        customer = session.get(Customer, order.customer_id) if order.customer_id else None
        for name in RECIPIENT_FIELDS.get(channel, ("email",)):
            value = getattr(order, name, None) or (getattr(customer, name, None) if customer
                                                   else None)
            if value:
                return value
        return None

    @staticmethod
    def _complaint_open(session: Session, order: Order) -> bool:
        return session.scalar(
            select(VocItem.id).where(VocItem.shop_id == order.shop_id,
                                     VocItem.order_id == order.id,
                                     VocItem.kind.in_(PAUSING_KINDS),
                                     VocItem.status != VocStatus.CLOSED).limit(1)) is not None

    def _compose(self, follow_up: FollowUp, step: dict, shop: Shop, order: Order,
                 enrollment: Enrollment, program: Program, recipient: str,
                 now: datetime) -> OutgoingMessage:
        locale, text = templates.pick(step.get("template"), step.get("texts"),
                                      templates.languages(enrollment.locale, shop.locale))
        link = follow_up_link(self.runtime, follow_up.id, shop.id)
        context = dict(shop_name=shop.name or shop.domain, customer_name=order.customer_name,
                       order_number=order.number, program_name=program.name, link=link,
                       window_ends_on=None, days_left=None, scores=[], reference=None,
                       amount=None, note=None)
        if enrollment.ends_at:
            ends_local = enrollment.ends_at.astimezone(zone(enrollment.timezone))
            context["window_ends_on"] = format_date(ends_local.date(), "long", locale=locale)
            context["days_left"] = max((enrollment.ends_at - now).days, 0)
        if follow_up.kind == "check_in":
            context["scores"] = [
                dict(value=n, label=label,
                     link=follow_up_link(self.runtime, follow_up.id, shop.id, f"score={n}"))
                for n, label in enumerate(templates.score_labels(locale), start=1)]
        subject, body = templates.render(text, context)
        return OutgoingMessage(
            key=message_key(follow_up.id), shop_id=shop.id, channel=follow_up.channel,
            recipient=recipient, subject=subject, body=body, locale=locale,
            data=dict(purpose=follow_up.purpose, kind=follow_up.kind, step=follow_up.step,
                      order_number=order.number, link=link,
                      scores=[s["link"] for s in context["scores"]]))

    # -- acting -------------------------------------------------------------------------------

    def _apply(self, session: Session, follow_up: FollowUp, decision: _Decision,
               now: datetime) -> str:
        if decision.action == "postpone":
            self._reschedule(session, follow_up, decision.until,
                             postponed=follow_up.postponed + decision.counts_as_postpone)
            log.info("follow-up %s postponed to %s: %s", follow_up.id, decision.until,
                     decision.reason)
            return "postponed"
        if decision.action == "cancel":
            stop_orders(session, follow_up.shop_id, [follow_up.order_id], decision.reason)
            self._close(session, follow_up, FollowUpStatus.CANCELLED, decision.reason)
            return FollowUpStatus.CANCELLED.value
        if decision.action == "skip":
            self._close(session, follow_up, FollowUpStatus.SKIPPED, decision.reason)
            return FollowUpStatus.SKIPPED.value
        moved = session.execute(
            update(FollowUp)
            .where(FollowUp.id == follow_up.id,
                   FollowUp.status.in_((FollowUpStatus.SCHEDULED, FollowUpStatus.QUEUED)))
            .values(status=FollowUpStatus.DISPATCHED, dispatched_at=now, lease_until=None))
        if moved.rowcount != 1:
            return "raced"
        if not record(session.connection(), decision.message, claim=True):
            return "dispatched_before"  # the message exists: the outbox owns it
        return "dispatched"

    @staticmethod
    def _close(session: Session, follow_up: FollowUp, status: FollowUpStatus,
               reason: str | None) -> None:
        session.execute(update(FollowUp)
                        .where(FollowUp.id == follow_up.id,
                               FollowUp.status.in_((FollowUpStatus.SCHEDULED,
                                                    FollowUpStatus.QUEUED)))
                        .values(status=status, skip_reason=reason, lease_until=None))

    @staticmethod
    def _reschedule(session: Session, follow_up: FollowUp, until: datetime,
                    postponed: int | None = None) -> None:
        values = dict(status=FollowUpStatus.SCHEDULED, due_at=until, lease_until=None)
        if postponed is not None:
            values["postponed"] = postponed
        session.execute(update(FollowUp)
                        .where(FollowUp.id == follow_up.id,
                               FollowUp.status.in_((FollowUpStatus.SCHEDULED,
                                                    FollowUpStatus.QUEUED)))
                        .values(**values))
