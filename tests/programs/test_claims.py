"""Guarantee claims: eligibility against the enrollment's own terms, the merchant's decision
through the API, and the shopper told once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from ccms_addon.platforms import ReturnLine
from ccms_addon.programs import service
from ccms_addon.programs.claims import ClaimRequest, DecisionError, decide, submit_claim
from ccms_addon.store.models import (Claim, ClaimStatus, OutboundMessage, Program, ProgramKind,
                                     VocEvent, VocItem, VocKind, VocStatus, utcnow)
from tests.programs.conftest import (BUYBACK_TERMS, DELIVERED, FREE_RETURN_TERMS, SHOPPER,
                                     order_record)


def claim(runtime, shop_id, order_id, kind, **kwargs):
    request = ClaimRequest(kind=kind, order_id=order_id, message=kwargs.pop("message", "please"),
                           contact_email=SHOPPER, contact_name="김민수", locale="ko", **kwargs)
    return submit_claim(runtime, shop_id, request)


def test_a_free_return_inside_the_window_is_pending_with_its_amount(runtime, shop, program,
                                                                    sync_order):
    program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    [order_id] = sync_order(order_record())
    item, made = claim(runtime, shop.id, order_id, ProgramKind.FREE_RETURN,
                       conditions_accepted=True, lines=(ReturnLine("L2", 1),))
    assert made.status is ClaimStatus.PENDING and made.amount == Decimal("15000")
    assert made.lines == [{"platform_line_id": "L2", "quantity": 1}]
    assert (item.kind, item.reference.startswith("VOC-")) == (VocKind.CLAIM, True)
    with runtime.db.session() as session:  # the shopper hears it was received
        [message] = session.scalars(select(OutboundMessage)).all()
    assert message.recipient == SHOPPER and item.reference in message.subject


def test_outside_the_window_or_the_conditions_is_recorded_as_ineligible(runtime, shop, program,
                                                                        sync_order):
    program(ProgramKind.FREE_RETURN, {**FREE_RETURN_TERMS, "window_days": 1})
    [order_id] = sync_order(order_record(delivered=DELIVERED - timedelta(days=10)))
    item, made = claim(runtime, shop.id, order_id, ProgramKind.FREE_RETURN)
    assert made.status is ClaimStatus.INELIGIBLE
    assert set(made.eligibility["reasons"]) == {"window_ended", "conditions_not_accepted"}
    assert item.kind is VocKind.CLAIM  # still recorded: ISO 10002 records every complaint


def test_an_order_without_the_program_is_not_enrolled(runtime, shop, sync_order, program):
    program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    [order_id] = sync_order(order_record())
    _, made = claim(runtime, shop.id, order_id, ProgramKind.BUYBACK, event="involuntary_job_loss",
                    event_date=utcnow())
    assert made.eligibility["reasons"] == ["not_enrolled"]


@pytest.mark.parametrize("months_after, percent, amount", [
    (1, "100.00", Decimal("45000")), (4, "80.00", Decimal("36000")),
    (11, "60.00", Decimal("27000"))])
def test_a_buyback_follows_the_value_schedule(runtime, shop, program, sync_order, months_after,
                                              percent, amount):
    program(ProgramKind.BUYBACK, {**BUYBACK_TERMS, "cap": None})
    delivered = utcnow() - timedelta(days=31 * months_after + 5)
    [order_id] = sync_order(order_record(delivered=delivered))
    _, made = claim(runtime, shop.id, order_id, ProgramKind.BUYBACK, event="involuntary_job_loss",
                    event_date=delivered + timedelta(days=31 * months_after - 20),
                    evidence={"note": "termination letter attached"})
    assert made.status is ClaimStatus.PENDING, made.eligibility
    assert made.eligibility["percent"] == percent and made.amount == amount


def test_a_buyback_is_capped_and_needs_its_event_and_evidence(runtime, shop, program, sync_order):
    program(ProgramKind.BUYBACK, BUYBACK_TERMS)
    [order_id] = sync_order(order_record())
    _, capped = claim(runtime, shop.id, order_id, ProgramKind.BUYBACK,
                      event="involuntary_job_loss", event_date=utcnow(),
                      evidence={"note": "letter"})
    assert capped.amount == Decimal("45000")  # under the 50,000 KRW cap
    _, wrong = claim(runtime, shop.id, order_id, ProgramKind.BUYBACK, event="divorce",
                     event_date=utcnow() + timedelta(days=2))
    assert set(wrong.eligibility["reasons"]) == {"event_not_covered", "event_date_in_future",
                                                  "evidence_missing"}


def test_terms_changed_later_do_not_change_an_enrolled_order(runtime, shop, program, sync_order):
    created = program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    [order_id] = sync_order(order_record())
    with runtime.db.session() as session:
        service.new_version(session, session.get(Program, created.id),
                            {**FREE_RETURN_TERMS, "window_days": 1}, actor="test")
    _, made = claim(runtime, shop.id, order_id, ProgramKind.FREE_RETURN, conditions_accepted=True)
    assert made.status is ClaimStatus.PENDING  # still the 365 days it was sold with


def test_a_rejection_is_told_to_the_shopper_once_and_cannot_be_redecided(runtime, shop, program,
                                                                         sync_order,
                                                                         smtp_server):
    program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    [order_id] = sync_order(order_record())
    item, made = claim(runtime, shop.id, order_id, ProgramKind.FREE_RETURN,
                       conditions_accepted=True)
    decide(runtime, shop.id, made.id, approve=False, actor="owner", note="사용 흔적이 있습니다")
    with pytest.raises(DecisionError):
        decide(runtime, shop.id, made.id, approve=True, actor="owner")
    with pytest.raises(LookupError):
        decide(runtime, shop.id + 1, made.id, approve=True, actor="owner")
    with runtime.db.session() as session:
        stored = session.get(Claim, made.id)
        events = [e.type for e in session.scalars(select(VocEvent).where(
            VocEvent.voc_item_id == item.id))]
        messages = session.scalars(select(OutboundMessage.idempotency_key)).all()
        status = session.get(VocItem, item.id).status
    assert stored.status is ClaimStatus.REJECTED and stored.decided_by == "owner"
    assert events == ["received", "claim_rejected"] and status is VocStatus.RESPONDED
    assert sorted(messages) == [f"claim:{made.id}:decision", f"claim:{made.id}:received"]


def test_todays_date_is_never_in_the_future(runtime, shop, program, sync_order):
    from ccms_addon.programs.claims import event_moment
    program(ProgramKind.BUYBACK, BUYBACK_TERMS)
    [order_id] = sync_order(order_record())
    _, made = claim(runtime, shop.id, order_id, ProgramKind.BUYBACK, event="involuntary_job_loss",
                    event_date=event_moment(utcnow().date()), evidence={"note": "letter"})
    assert made.status is ClaimStatus.PENDING, made.eligibility
