"""Privacy reaches the programs' tables: a redacted customer gets no more messages and loses their
words; a redacted shop loses everything; an uninstalled shop sends nothing more."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from ccms_addon.programs.checkins import record_answer
from ccms_addon.programs.claims import ClaimRequest, submit_claim
from ccms_addon.store import privacy
from ccms_addon.store.models import (Claim, Enrollment, FollowUp, FollowUpStatus, OutboundMessage,
                                     Program, ProgramKind, PrivacyRequest)
from tests.programs.conftest import CHECK_IN_TERMS, FREE_RETURN_TERMS, SHOPPER, order_record


def _setup(runtime, shop, program, sync_order):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    [order_id] = sync_order(order_record())
    with runtime.db.session() as session:
        arrival = session.scalar(select(FollowUp).where(FollowUp.step == "arrival"))
    record_answer(runtime, shop.id, arrival.id, 1, "my private words")
    submit_claim(runtime, shop.id, ClaimRequest(
        kind=ProgramKind.FREE_RETURN, order_id=order_id, message="return", contact_email=SHOPPER,
        conditions_accepted=True, evidence={"photo": "https://x.test/p.jpg"}))
    return order_id


def test_the_export_and_the_redaction_reach_follow_ups_claims_and_messages(runtime, shop, program,
                                                                           sync_order):
    _setup(runtime, shop, program, sync_order)
    with runtime.db.session() as session:
        request = privacy.export_customer_data(session, runtime.box, shop.id,
                                               platform_request_id="r1",
                                               platform_customer_id="C1001", email=SHOPPER)
        export = json.loads(runtime.box.decrypt(request.export_encrypted))
    assert any(f["answer_comment"] == "my private words" for f in export["follow_ups"])
    assert export["claims"][0]["evidence"] == {"photo": "https://x.test/p.jpg"}
    assert any(m["recipient"] == SHOPPER for m in export["messages"])

    with runtime.db.session() as session:
        privacy.redact_customers(session, shop.id, platform_customer_ids=["C1001"])
    with runtime.db.session() as session:
        follow_ups = session.scalars(select(FollowUp)).all()
        assert all(f.answer_comment is None for f in follow_ups)
        assert {f.status for f in follow_ups if f.step != "arrival"} == {FollowUpStatus.CANCELLED}
        assert session.scalar(select(Claim.evidence)) == {}
        assert SHOPPER not in set(session.scalars(select(OutboundMessage.recipient)))


def test_a_redacted_shop_keeps_nothing_of_the_programs(runtime, shop, program, sync_order):
    _setup(runtime, shop, program, sync_order)
    with runtime.db.session() as session:
        privacy.redact_shop(session, shop.id)
    with runtime.db.session() as session:
        for model in (Program, Enrollment, FollowUp, Claim, OutboundMessage):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
        assert session.scalar(select(func.count()).select_from(PrivacyRequest)) == 1


def test_an_uninstalled_shop_sends_no_more_follow_ups(runtime, shop, program, sync_order):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record())
    with runtime.db.session() as session:
        privacy.uninstall_shop(session, shop.id)
    with runtime.db.session() as session:
        assert set(session.scalars(select(FollowUp.status))) == {FollowUpStatus.CANCELLED}
