"""An approved claim becomes a return on the platform — here Cafe24's documented admin API on a
loopback server — through a real RQ worker, exactly once, with retries while the platform is
down; the shopper is told the outcome."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord, ReturnLine)
from ccms_addon.programs.claims import (ClaimRequest, Settlement, decide, submit_claim,
                                        sweep_due_settlements)
from ccms_addon.store import repository
from ccms_addon.store.models import (Claim, ClaimStatus, Merchant, OutboundMessage, ProgramKind,
                                     VocEvent, VocItem, VocStatus, utcnow)
from tests.platform_servers.cafe24 import (ACCESS_TOKEN, Cafe24ServerState, make_item, make_order,
                                           running_server)
from tests.programs.conftest import DELIVERED, FREE_RETURN_TERMS, SHOPPER, run_worker

ORDER = "20261120-0000042"
ITEM_1, ITEM_2 = f"{ORDER}-01", f"{ORDER}-02"


@pytest.fixture
def platform():
    state = Cafe24ServerState()
    state.orders[ORDER] = make_order(ORDER, items=[
        make_item(ORDER, 1, "N40"),
        make_item(ORDER, 2, "N40", product_price="12000.00", option_price="0.00", quantity=1)])
    with running_server(state) as base_url:
        state.base_url = base_url
        yield state


@pytest.fixture
def mall(runtime, make_shop, platform, program):
    new = make_shop("cafe24", "claimmall", name="Claim Mall",
                    merchant=Merchant(name="M", email="owner@mall.test"),
                    credentials={"access_token": ACCESS_TOKEN},
                    settings={"api_base_url": platform.base_url})
    from ccms_addon.programs import service
    from ccms_addon.programs.schemas import load_terms
    with runtime.db.session() as session:
        service.create_program(session, new.shop.id, kind=ProgramKind.FREE_RETURN, name="365",
                               terms=load_terms(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS),
                               actor="test")
    record = OrderRecord(
        platform_order_id=ORDER, number=ORDER, currency="KRW", total=Decimal("36000"),
        updated_at=DELIVERED, placed_at=DELIVERED - timedelta(days=2),
        financial_status=FinancialStatus.PAID, fulfillment_status=FulfillmentStatus.DELIVERED,
        email=SHOPPER, customer=CustomerRecord("hong123", email=SHOPPER),
        lines=(OrderLineRecord(ITEM_1, "상품1", 2, Decimal("12000")),
               OrderLineRecord(ITEM_2, "상품2", 1, Decimal("12000"))),
        delivered_at=DELIVERED)
    with runtime.db.session() as session:
        [change] = repository.upsert_orders(session, new.shop.id, [record])
    runtime.pm.hook.order_synced(shop_id=new.shop.id, order_id=change.order_id,
                                 platform_order_id=ORDER, created=True)
    item, claim = submit_claim(runtime, new.shop.id, ClaimRequest(
        kind=ProgramKind.FREE_RETURN, order_id=change.order_id, message="사이즈가 안 맞아요",
        lines=(ReturnLine(ITEM_2, 1),), conditions_accepted=True, contact_email=SHOPPER,
        locale="ko"))
    assert claim.status is ClaimStatus.PENDING, claim.eligibility
    return new, item, claim


def test_an_approved_claim_becomes_one_platform_return(runtime, client, mall, platform,
                                                       smtp_server):
    new, item, claim = mall
    response = client.post(f"/api/v1/claims/{claim.id}/decision",
                           headers={"Authorization": f"Bearer {new.api_token}"},
                           json={"decision": "approve", "note": "택배 기사님이 방문합니다"})
    assert response.status_code == 200 and response.get_json()["status"] == "approved"
    run_worker(runtime)
    with runtime.db.session() as session:
        settled = session.get(Claim, claim.id)
        events = [e.type for e in session.scalars(select(VocEvent).where(
            VocEvent.voc_item_id == item.id).order_by(VocEvent.id))]
        status = session.get(VocItem, item.id).status
    assert settled.status is ClaimStatus.SETTLED and settled.settlement["action"] == "return"
    assert events == ["received", "claim_approved", "claim_settled"]
    assert status is VocStatus.RESPONDED
    [created] = platform.returns[ORDER]
    assert f"CLAIM-{claim.id}" in created["claim_reason"]
    # running the settlement again creates nothing on the platform
    assert Settlement(runtime).run(claim.id) == "settled"
    assert len(platform.returns[ORDER]) == 1
    subjects = [m["Subject"] for m in smtp_server.parsed()]
    assert any(item.reference in s and "승인" in s for s in subjects), subjects


def test_a_platform_outage_is_retried_with_backoff_then_settles(runtime, mall, platform):
    new, item, claim = mall
    platform.fail_status, platform.fail_times = 503, 100
    decide(runtime, new.shop.id, claim.id, approve=True, actor="owner")
    assert Settlement(runtime).run(claim.id) == "retrying"
    with runtime.db.session() as session:
        waiting = session.get(Claim, claim.id)
    assert waiting.status is ClaimStatus.APPROVED and waiting.attempts == 1
    assert waiting.next_attempt_at > utcnow() + timedelta(seconds=30)
    platform.fail_times = 0
    # Redis lost the scheduled retry: the sweep finds the claim once its lease has run out
    assert sweep_due_settlements(runtime) == 0
    assert sweep_due_settlements(runtime, now=utcnow() + timedelta(hours=1)) == 1
    run_worker(runtime)
    with runtime.db.session() as session:
        assert session.get(Claim, claim.id).status is ClaimStatus.SETTLED
        assert session.scalar(select(OutboundMessage.idempotency_key).where(
            OutboundMessage.idempotency_key == f"claim:{claim.id}:decision")) is not None
    assert len(platform.returns[ORDER]) == 1


def test_a_platform_refusal_fails_the_claim_for_a_human(runtime, mall, platform):
    new, item, claim = mall
    del platform.orders[ORDER]  # the order was deleted on the platform
    decide(runtime, new.shop.id, claim.id, approve=True, actor="owner")
    assert Settlement(runtime).run(claim.id) == "failed"
    with runtime.db.session() as session:
        failed = session.get(Claim, claim.id)
        last = session.scalars(select(VocEvent.type).where(
            VocEvent.voc_item_id == item.id).order_by(VocEvent.id.desc())).first()
    assert failed.error and last == "claim_settlement_failed"
