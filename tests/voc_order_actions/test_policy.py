"""The policy an order action is checked against before any platform call — the programs' claim
rules: a refund within what was paid less what is refunded or on its way back, exact in the
order's currency; lines the order has; a cancel only before shipping, a resend only after; an
active shop; an item linked to an order — refused as a 4xx naming the field, writing nothing."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.store.models import (Claim, ClaimStatus, FinancialStatus, Merchant, Order, Refund,
                                     Shop, ShopStatus, VocChannel, VocEvent, VocKind, utcnow)
from ccms_addon.store.models import ProgramKind
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.order_actions import OrderActions
from ccms_addon.voc.service import VocActionError
from tests.voc_order_actions.conftest import (CAFE24_ITEM_1, CAFE24_ITEM_2, CAFE24_ORDER,
                                              SHOPIFY_LINE_A, timeline)


def refused(runtime, scene, action: str, params: dict, *, shop_ids=None) -> VocActionError:
    """Ask, expect a refusal, and check nothing was written or enqueued."""
    before = len(timeline(runtime, scene.item_id))
    jobs = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    queued = jobs.count
    with pytest.raises(VocActionError) as caught:
        OrderActions(runtime).request(shop_ids or [scene.shop_id], scene.item_id, "staff",
                                      action, params)
    assert len(timeline(runtime, scene.item_id)) == before
    assert jobs.count == queued
    return caught.value


def check(error: VocActionError, status: int, code: str, field: str | None) -> None:
    assert (error.status, error.code, error.field) == (status, code, field), str(error)


@pytest.fixture
def krw(scene_for):
    """A Cafe24 order of 36000 KRW, shipped: item 1 is 2 × 12000, item 2 is 1 × 12000."""
    return scene_for("cafe24", True)


def test_a_refund_above_what_was_paid_is_refused(runtime, krw):
    error = refused(runtime, krw, "refund", {"amount": "36001"})
    check(error, 422, "amount_too_high", "amount")
    assert "36000 KRW left" in str(error)


def test_refunds_already_made_count(runtime, krw):
    with runtime.db.session() as session:
        session.add(Refund(shop_id=krw.shop_id, platform_refund_id="C1",
                           platform_order_id=CAFE24_ORDER, amount=Decimal("24000"),
                           currency="KRW"))
    check(refused(runtime, krw, "refund", {"amount": "12001"}), 422, "amount_too_high", "amount")
    event = OrderActions(runtime).request([krw.shop_id], krw.item_id, "staff", "refund",
                                          {"amount": "12000"})
    assert event.data["amount"] == "12000"


def test_refunds_on_their_way_count(runtime, krw):
    """Two requests cannot spend the same refundable amount, whichever item asks."""
    actions = OrderActions(runtime)
    actions.request([krw.shop_id], krw.item_id, "staff", "refund", {"amount": "30000"})
    other = record_voc_item(runtime, krw.shop_id, NewVocItem(
        kind=VocKind.COMPLAINT, channel=VocChannel.PHONE, body="refund me", actor="staff",
        order_id=krw.order_id))
    with pytest.raises(VocActionError) as caught:
        actions.request([krw.shop_id], other.id, "staff", "refund", {"amount": "6001"})
    check(caught.value, 422, "amount_too_high", "amount")
    actions.request([krw.shop_id], other.id, "staff", "refund", {"amount": "6000"})


def test_a_return_on_its_way_counts_and_an_approved_claim_too(runtime, krw):
    actions = OrderActions(runtime)
    actions.request([krw.shop_id], krw.item_id, "staff", "return",
                    {"lines": [{"platform_line_id": CAFE24_ITEM_2, "quantity": 1}]})
    with runtime.db.session() as session:
        session.add(Claim(shop_id=krw.shop_id, voc_item_id=krw.item_id, order_id=krw.order_id,
                          program_kind=ProgramKind.BUYBACK, status=ClaimStatus.APPROVED,
                          amount=Decimal("20000"), currency="KRW", attempts=0,
                          created_at=utcnow(), updated_at=utcnow()))
    check(refused(runtime, krw, "refund", {"amount": "4001"}), 422, "amount_too_high", "amount")


def test_a_refund_is_exact_in_the_currencys_minor_unit(runtime, krw, scene_for):
    error = refused(runtime, krw, "refund", {"amount": "100.5"})
    check(error, 422, "amount_precision", "amount")
    assert "KRW has no minor unit" in str(error)
    usd = scene_for("shopify", True)
    error = refused(runtime, usd, "refund", {"amount": "10.005"})
    check(error, 422, "amount_precision", "amount")
    assert "2 decimals" in str(error)


def test_a_refund_is_in_the_orders_currency(runtime, krw):
    check(refused(runtime, krw, "refund", {"amount": "10", "currency": "USD"}), 422,
          "currency_mismatch", "currency")


def test_a_refund_needs_an_amount_or_lines(runtime, krw):
    check(refused(runtime, krw, "refund", {}), 422, "required", "amount")
    event = OrderActions(runtime).request(
        [krw.shop_id], krw.item_id, "staff", "refund",
        {"lines": [{"platform_line_id": CAFE24_ITEM_1, "quantity": 2}]})
    assert event.data["amount"] == "24000"  # the lines' value


def test_nothing_paid_nothing_refunded(runtime, krw):
    with runtime.db.session() as session:
        session.execute(update(Order).where(Order.id == krw.order_id)
                        .values(financial_status=FinancialStatus.PENDING))
    check(refused(runtime, krw, "refund", {"amount": "1000"}), 422, "nothing_paid", "amount")


@pytest.mark.parametrize(("params", "field", "code"), [
    ({"amount": "-5"}, "amount", "invalid"),
    ({"amount": "NaN"}, "amount", "invalid"),
    ({"amount": "abc"}, "amount", "invalid"),
    ({"amount": "1e100"}, "amount", "invalid"),
    ({"amount": "0"}, "amount", "invalid"),
    ({"amount": "10", "colour": "red"}, "colour", "invalid"),
    ({"amount": "10", "lines": "all"}, "lines", "invalid"),
    ({"amount": "10", "lines": [{"platform_line_id": CAFE24_ITEM_1, "quantity": 0}]},
     "lines.0.quantity", "invalid"),
    ({"amount": "10", "lines": [{"platform_line_id": CAFE24_ITEM_1, "quantity": "2"}]},
     "lines.0.quantity", "invalid"),
    ({"amount": "10", "reason": "x" * 501}, "reason", "invalid"),
    ({"amount": "10", "lines": [{"platform_line_id": "nope", "quantity": 1}]},
     "lines.0.platform_line_id", "unknown_line"),
    ({"amount": "10", "lines": [{"platform_line_id": CAFE24_ITEM_2, "quantity": 1},
                                {"platform_line_id": CAFE24_ITEM_1, "quantity": 2},
                                {"platform_line_id": CAFE24_ITEM_1, "quantity": 1}]},
     "lines.1.quantity", "quantity_too_high"),
])
def test_bad_parameters_name_their_field(runtime, krw, params, field, code):
    check(refused(runtime, krw, "refund", params), 422, code, field)


def test_parameters_of_another_action_are_refused(runtime, krw):
    check(refused(runtime, krw, "resend", {"amount": "10"}), 422, "invalid", "amount")
    check(refused(runtime, krw, "cancel", {"lines": []}), 422, "invalid", "lines")
    check(refused(runtime, krw, "explode", {}), 422, "unknown_action", "action")


def test_a_shipped_order_is_not_cancelled(runtime, krw):
    error = refused(runtime, krw, "cancel", {})
    check(error, 422, "order_shipped", "order")
    assert "return it instead" in str(error)


def test_a_cancelled_order_is_not_cancelled_again_nor_sent_again(runtime, scene_for):
    scene = scene_for("shopify", False)
    with runtime.db.session() as session:
        session.execute(update(Order).where(Order.id == scene.order_id)
                        .values(cancelled_at=utcnow()))
    check(refused(runtime, scene, "cancel", {}), 422, "order_cancelled", "order")
    check(refused(runtime, scene, "resend", {}), 422, "order_cancelled", "order")


def test_an_unshipped_order_is_not_sent_again_nor_returned(runtime, scene_for):
    scene = scene_for("woocommerce", False)
    check(refused(runtime, scene, "resend", {}), 422, "order_not_shipped", "order")
    check(refused(runtime, scene, "return", {}), 422, "order_not_shipped", "order")


def test_a_second_cancel_while_one_is_on_its_way_is_refused(runtime, scene_for):
    scene = scene_for("shopify", False)
    OrderActions(runtime).request([scene.shop_id], scene.item_id, "staff", "cancel", {})
    check(refused(runtime, scene, "cancel", {}), 409, "action_in_flight", "action")
    # and a cancel with its refund leaves nothing to refund meanwhile
    check(refused(runtime, scene, "refund", {"amount": "1.00"}), 422, "amount_too_high", "amount")


def test_an_item_without_an_order_has_no_order_actions(runtime, krw):
    loose = record_voc_item(runtime, krw.shop_id, NewVocItem(
        kind=VocKind.INQUIRY, channel=VocChannel.WIDGET, body="hello", actor="shopper"))
    with pytest.raises(VocActionError) as caught:
        OrderActions(runtime).request([krw.shop_id], loose.id, "staff", "refund",
                                      {"amount": "1000"})
    check(caught.value, 422, "no_order", "order")


def test_an_uninstalled_shop_is_not_acted_for(runtime, krw):
    with runtime.db.session() as session:
        session.execute(update(Shop).where(Shop.id == krw.shop_id)
                        .values(status=ShopStatus.UNINSTALLED))
    check(refused(runtime, krw, "refund", {"amount": "1000"}), 409, "shop_inactive", None)


def test_another_shops_item_is_not_found(runtime, krw, make_shop):
    other = make_shop("cafe24", "othermall", merchant=Merchant(name="O")).shop
    error = refused(runtime, krw, "refund", {"amount": "1000"}, shop_ids=[other.id])
    check(error, 404, "not_found", None)
    with runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(VocEvent)
                              .where(VocEvent.shop_id == other.id)) == 0


def test_a_refusal_in_the_job_is_not_retried_and_a_good_request_goes_through(runtime, krw):
    """The policy lets through what the platform allows: a partial refund in KRW."""
    event = OrderActions(runtime).request(
        [krw.shop_id], krw.item_id, "staff", "refund",
        {"amount": "12000", "lines": [{"platform_line_id": CAFE24_ITEM_2, "quantity": 1}],
         "restock": True})
    assert event.data["amount"] == "12000" and event.data["restock"] is True
    assert OrderActions(runtime).run(event.id) == "done"
    assert krw.platform.count("refund") == 1


def test_the_sequence_of_references_is_per_item(runtime, scene_for):
    scene = scene_for("shopify", True)
    actions = OrderActions(runtime)
    first = actions.request([scene.shop_id], scene.item_id, "staff", "refund",
                            {"amount": "5.00"})
    second = actions.request([scene.shop_id], scene.item_id, "staff", "refund",
                             {"amount": "5.00",
                              "lines": [{"platform_line_id": str(SHOPIFY_LINE_A),
                                         "quantity": 1}]})
    assert [first.data["reference"], second.data["reference"]] == [
        f"{scene.reference}-A1", f"{scene.reference}-A2"]


def test_two_refunds_asked_at_once_cannot_both_spend_the_rest(runtime, krw):
    """Two people press "refund" on the same order at the same moment: the order row is the
    lock, so the second sees the first's refund on its way."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def ask() -> None:
        barrier.wait()
        try:
            event = OrderActions(runtime).request([krw.shop_id], krw.item_id, "staff", "refund",
                                                  {"amount": "30000"})
            outcomes.append(event.data["reference"])
        except VocActionError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == sorted([f"{krw.reference}-A1", "amount_too_high"])
