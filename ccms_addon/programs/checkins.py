"""A shopper's answer to a check-in (1–5). A low answer opens a complaint (channel ``follow_up``)
linked to the order, so the merchant hears what most unhappy customers never say.

The first answer is the one that counts for the complaint: answering again updates the score and
the comment but never opens a second complaint (a conditional UPDATE claims the right to open it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update

from ccms_addon.jobs.notify import notify_merchant_soon
from ccms_addon.voc.settings import ack_promise_hours
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (Enrollment, FollowUp, Order, ProgramVersion, Shop, VocChannel,
                                     VocItem, VocKind, utcnow)
from ccms_addon.voc.intake import NewVocItem, record_voc_item

@dataclass(frozen=True)
class CheckInResult:
    score: int
    complaint_reference: str | None
    opened_complaint: bool


class NotACheckInError(ValueError):
    pass


def record_answer(runtime: Runtime, shop_id: int, follow_up_id: int, score: int,
                  comment: str | None = None) -> CheckInResult:
    if not 1 <= score <= 5:
        raise ValueError("score must be 1 to 5")
    comment = (comment or "").strip() or None
    with runtime.db.session() as session:
        follow_up = session.get(FollowUp, follow_up_id)
        if follow_up is None or follow_up.shop_id != shop_id or follow_up.kind != "check_in":
            raise NotACheckInError("not a check-in of this shop")
        follow_up.answer = score
        if comment is not None:
            follow_up.answer_comment = comment
        follow_up.answered_at = utcnow()
        enrollment = session.get(Enrollment, follow_up.enrollment_id)
        terms = session.get(ProgramVersion, enrollment.program_version_id).terms
        step = next((s for s in terms.get("steps") or () if s["key"] == follow_up.step), {})
        low = score <= step.get("low_score", 2)
        existing = follow_up.voc_item_id
        claimed = False
        if low and not follow_up.complaint_opened:
            claimed = session.execute(
                update(FollowUp).where(FollowUp.id == follow_up.id,
                                       FollowUp.complaint_opened.is_(False))
                .values(complaint_opened=True)).rowcount == 1
        order = session.get(Order, follow_up.order_id)
        shop = session.get(Shop, shop_id)
    if not claimed:
        reference = None
        if existing:
            with runtime.db.session() as session:
                item = session.get(VocItem, existing)
                reference = item.reference if item else None
        return CheckInResult(score, reference, False)
    body = comment or f"The shopper rated order {order.number} {score} out of 5 on a check-in."
    item = record_voc_item(runtime, shop_id, NewVocItem(
        kind=VocKind.COMPLAINT, channel=VocChannel.FOLLOW_UP, body=body, actor="shopper",
        subject=f"Low check-in score ({score}/5) for order {order.number}",
        locale=enrollment.locale, contact_name=order.customer_name, contact_email=order.email,
        contact_phone=order.phone, order_id=order.id, customer_id=order.customer_id,
        category="satisfaction",
        ack_promise_hours=ack_promise_hours(shop),
        event_data={"follow_up_id": follow_up_id, "step": follow_up.step, "score": score}))
    with runtime.db.session() as session:
        session.execute(update(FollowUp).where(FollowUp.id == follow_up_id)
                        .values(voc_item_id=item.id))
    notify_merchant_soon(runtime, item.id, shop_id=item.shop_id)
    return CheckInResult(score, item.reference, True)
