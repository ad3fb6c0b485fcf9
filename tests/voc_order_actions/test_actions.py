"""Each order action on each platform, asked from a VOC item and performed by the job through the
shop's adapter against the platform's loopback imitation, exactly once, on the item's timeline."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from ccms_addon.platforms import OrderActionRequest, ReturnLine, SettlementRequest
from ccms_addon.store.models import VocStatus, utcnow
from ccms_addon.voc.order_actions import (DONE, FAILED, REQUESTED, OrderActions,
                                          sweep_order_actions)
from tests.voc_order_actions.conftest import (CAFE24_ORDER, SHOPIFY_ORDER, WOO_ORDER,
                                              item_status, run_worker, timeline)

PLATFORMS = ("shopify", "cafe24", "woocommerce")
#: the order is shipped for everything but a cancel
SHIPPED = {"refund": True, "return": True, "resend": True, "cancel": False}


def params_for(action: str, scene) -> dict:
    platform = scene.platform
    if action == "refund":
        # one unit of the first line; Cafe24 refunds only an item's whole value
        return {"amount": format(platform.unit_price, "f"), "currency": platform.currency,
                "lines": [{"platform_line_id": platform.line, "quantity": 1}],
                "reason": "arrived  broken"}
    if action == "return":
        return {"lines": [{"platform_line_id": platform.line, "quantity": 1}],
                "reason": "wrong size"}
    if action == "cancel":
        return {"reason": "ordered twice"}
    return {"lines": [{"platform_line_id": platform.line, "quantity": 1}],
            "reason": "lost in transit"}


@pytest.mark.parametrize("name", PLATFORMS)
@pytest.mark.parametrize("action", ("refund", "return", "cancel", "resend"))
def test_each_action_on_each_platform(runtime, scene_for, name, action):
    scene = scene_for(name, SHIPPED[action])
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff:1:Kim", action,
                            params_for(action, scene))

    reference = f"{scene.reference}-A1"
    assert event.type == REQUESTED and event.data["reference"] == reference
    assert event.data["job"]["status"] == "queued"
    assert scene.platform.count(action) == 0  # nothing reaches the platform before the job

    run_worker(runtime)  # a real RQ worker runs the job the request enqueued

    assert scene.platform.count(action) == 1
    events = timeline(runtime, scene.item_id)
    assert [e.type for e in events] == ["received", REQUESTED, DONE]
    done = events[-1]
    assert done.data["reference"] == reference and done.data["action"] == action
    assert done.data["platform_id"] and done.data["status"] in ("created", "requested")
    assert done.note  # the platform's own words on what it did
    requested = events[1]
    assert requested.to_status == "in_progress" and requested.actor == "staff:1:Kim"
    assert requested.data["job"]["status"] == "done"
    assert requested.data["job"]["platform_id"] == done.data["platform_id"]
    assert item_status(runtime, scene.item_id) is VocStatus.IN_PROGRESS


def test_the_reference_reaches_the_platform_record(runtime, scene_for):
    scene = scene_for("shopify", True)
    actions = OrderActions(runtime)
    actions.request([scene.shop_id], scene.item_id, "staff", "resend",
                    {"reason": "lost in transit"})
    second = actions.request([scene.shop_id], scene.item_id, "staff", "refund",
                             {"amount": "10.00"})
    run_worker(runtime)

    fake = scene.platform.server.state.settlement
    (draft,) = fake.draft_orders.values()
    assert draft["tags"] == [f"{scene.reference}-A1", "ccms-replacement"]
    assert draft["total"] == 0  # every line at no charge, the custom item too
    assert draft["input"]["lineItems"] == [
        {"variantId": "gid://shopify/ProductVariant/4401", "quantity": 2},
        {"title": "Gift wrap", "quantity": 1,
         "originalUnitPriceWithCurrency": {"amount": "0", "currencyCode": "USD"}}]
    assert draft["input"]["shippingAddress"]["countryCode"] == "CA"
    assert draft["input"]["purchasingEntity"] == {"customerId": "gid://shopify/Customer/207119551"}
    (refund,) = fake.orders[str(SHOPIFY_ORDER)].refunds
    assert refund["note"] == f"{scene.reference}-A2"
    assert second.data["reference"] == f"{scene.reference}-A2"


def test_cancel_options_reach_the_platform(runtime, scene_for):
    scene = scene_for("cafe24", False)
    OrderActions(runtime).request([scene.shop_id], scene.item_id, "staff", "cancel",
                                  {"refund": False, "restock": False, "reason": "changed mind"})
    run_worker(runtime)

    state = scene.platform.server
    (claim,) = state.cancellations[CAFE24_ORDER]
    assert claim["status"] == "canceling"  # no refund: the merchant completes it in the admin
    assert claim["claim_reason"] == f"{scene.reference}-A1: changed mind"
    assert state.restocked == {} and state.refunds == []


def test_woocommerce_cancel_refunds_what_is_left_then_cancels(runtime, scene_for):
    scene = scene_for("woocommerce", False)
    OrderActions(runtime).request([scene.shop_id], scene.item_id, "staff", "cancel",
                                  {"reason": "ordered twice"})
    run_worker(runtime)

    site = scene.platform.server
    order = site.orders[WOO_ORDER]
    assert order["status"] == "cancelled"
    assert {"key": "ccms_reference", "value": f"{scene.reference}-A1"} in [
        {k: m[k] for k in ("key", "value")} for m in order["meta_data"]]
    (refund,) = site.refunds[WOO_ORDER]
    assert refund["amount"] == "57.50" and refund["line_items"] == []
    assert site.restocked == {502: 2}  # WooCommerce's own restock of a cancelled order
    (note,) = site.notes[WOO_ORDER]
    assert note["note"].startswith(f"{scene.reference}-A1: order cancelled")
    assert note["customer_note"] is False


@pytest.mark.parametrize("name", PLATFORMS)
@pytest.mark.parametrize("action", ("refund", "return", "cancel", "resend"))
def test_a_job_run_twice_acts_once(runtime, scene_for, name, action):
    scene = scene_for(name, SHIPPED[action])
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff", action,
                            params_for(action, scene))

    assert actions.run(event.id) == "done"
    assert actions.run(event.id) == "done"  # a duplicate delivery of the job
    run_worker(runtime)  # and the enqueued copy

    assert scene.platform.count(action) == 1
    assert [e.type for e in timeline(runtime, scene.item_id)].count(DONE) == 1


@pytest.mark.parametrize("name", PLATFORMS)
@pytest.mark.parametrize("action", ("refund", "cancel", "resend"))
def test_a_job_that_died_after_the_platform_acted_finds_its_record(runtime, scene_for, name,
                                                                  action):
    """The worker was killed between the platform's answer and the commit: the next attempt
    finds the platform record by its reference and creates nothing."""
    scene = scene_for(name, SHIPPED[action])
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff", action,
                            params_for(action, scene))
    data = event.data
    adapter = runtime.platforms[name]
    from ccms_addon.store.models import Shop
    with runtime.db.session() as session:
        context = runtime.shop_context(session.get(Shop, scene.shop_id), adapter)
    lines = tuple(ReturnLine(l["platform_line_id"], l["quantity"]) for l in data["lines"])
    if action == "refund":
        adapter.settle_claim(context, SettlementRequest(
            data["platform_order_id"], "refund", data["reference"], data["currency"],
            amount=Decimal(data["amount"]), lines=lines))
    else:
        adapter.order_action(context, OrderActionRequest(
            data["platform_order_id"], action, data["reference"], lines=lines))
    assert scene.platform.count(action) == 1

    assert actions.run(event.id) == "done"

    assert scene.platform.count(action) == 1
    done = timeline(runtime, scene.item_id)[-1]
    assert done.type == DONE and done.data["status"] == "already_existed"


def test_a_running_action_is_not_taken_by_a_second_job(runtime, scene_for):
    scene = scene_for("woocommerce", True)
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff", "resend", {})
    claimed = actions._claim(event.id)  # a first job holds it (the platform call is under way)
    assert not isinstance(claimed, str)

    assert actions.run(event.id) == "busy"
    assert scene.platform.count("resend") == 0
    # its holder finishes; the second job's copy then finds it done
    assert actions._done(claimed, {"platform_id": "x", "status": "created",
                                   "result_action": "resend", "detail": "made"}) == "done"
    assert actions.run(event.id) == "done"


@pytest.mark.parametrize("name", PLATFORMS)
def test_a_platform_outage_is_retried_with_backoff_then_done(runtime, scene_for, name):
    scene = scene_for(name, True)
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff", "resend",
                            params_for("resend", scene))
    scene.platform.fail_next(503, 1)

    assert actions.run(event.id) == "retrying"
    waiting = timeline(runtime, scene.item_id)[-1]
    job = waiting.data["job"]
    assert waiting.type == REQUESTED and job["status"] == "queued" and job["attempts"] == 1
    assert "503" in job["error"] or "unavailable" in job["error"].lower()
    from datetime import datetime
    assert datetime.fromisoformat(job["next_attempt_at"]) > utcnow() + timedelta(seconds=50)
    assert scene.platform.count("resend") == 0

    assert actions.run(event.id) == "done"  # the scheduled retry
    assert scene.platform.count("resend") == 1
    assert timeline(runtime, scene.item_id)[-2].data["job"]["attempts"] == 2


def test_a_lost_job_is_enqueued_again_by_the_sweep(runtime, scene_for, redis_conn):
    scene = scene_for("cafe24", True)
    actions = OrderActions(runtime)
    actions.request([scene.shop_id], scene.item_id, "staff", "return",
                    params_for("return", scene))
    redis_conn.flushdb()  # Redis lost the job

    assert sweep_order_actions(runtime) == 0  # not yet: its job may still be on its way
    later = utcnow() + timedelta(minutes=10)
    assert sweep_order_actions(runtime, now=later) == 1
    assert sweep_order_actions(runtime, now=later) == 0  # leased again, not enqueued twice
    run_worker(runtime)

    assert scene.platform.count("return") == 1
    assert timeline(runtime, scene.item_id)[-1].type == DONE


def test_a_job_killed_while_running_is_taken_over_after_its_lease(runtime, scene_for):
    scene = scene_for("shopify", False)
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff", "cancel", {})
    assert not isinstance(actions._claim(event.id), str)  # then the worker was SIGKILLed

    assert sweep_order_actions(runtime) == 0
    assert sweep_order_actions(runtime, now=utcnow() + timedelta(minutes=7)) == 1
    run_worker(runtime)

    assert scene.platform.count("cancel") == 1
    assert timeline(runtime, scene.item_id)[-2].data["job"]["attempts"] == 2


def test_an_action_never_finished_is_failed_for_a_person(runtime, scene_for, redis_conn):
    scene = scene_for("shopify", True)
    actions = OrderActions(runtime)
    actions.request([scene.shop_id], scene.item_id, "staff", "resend", {})
    redis_conn.flushdb()

    assert sweep_order_actions(runtime, now=utcnow() + timedelta(days=2, minutes=1)) == 0
    failed = timeline(runtime, scene.item_id)[-1]
    assert failed.type == FAILED and "not finished in time" in failed.note
    assert scene.platform.count("resend") == 0


@pytest.mark.parametrize("name", PLATFORMS)
def test_a_platform_refusal_fails_at_once_with_its_message(runtime, scene_for, name):
    scene = scene_for(name, True)
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff", "resend", {})
    scene.platform.delete_order()

    assert actions.run(event.id) == "failed"
    assert actions.run(event.id) == "failed"  # no retry, nothing more

    events = timeline(runtime, scene.item_id)
    assert [e.type for e in events] == ["received", REQUESTED, FAILED]
    assert "no order" in events[-1].note.lower()
    assert events[1].data["job"] == dict(events[1].data["job"], status="failed", attempts=1)


def test_a_cancel_the_platform_refuses_is_failed(runtime, scene_for):
    """The store still thinks the order is unshipped; the platform knows better."""
    scene = scene_for("shopify", True, store_fulfilled=False)
    actions = OrderActions(runtime)
    event = actions.request([scene.shop_id], scene.item_id, "staff", "cancel", {})

    assert actions.run(event.id) == "failed"
    failed = timeline(runtime, scene.item_id)[-1]
    assert failed.type == FAILED and "fulfilled line items" in failed.note


def test_the_sweep_reads_every_recent_action_page_by_page(runtime, scene_for, redis_conn,
                                                          monkeypatch):
    from ccms_addon.voc import order_actions
    monkeypatch.setattr(order_actions, "SWEEP_BATCH", 2)
    scene = scene_for("shopify", True)
    actions = OrderActions(runtime)
    done = actions.request([scene.shop_id], scene.item_id, "staff", "refund", {"amount": "1.00"})
    assert actions.run(done.id) == "done"
    for amount in ("2.00", "3.00", "4.00"):
        actions.request([scene.shop_id], scene.item_id, "staff", "refund", {"amount": amount})
    redis_conn.flushdb()

    assert sweep_order_actions(runtime, now=utcnow() + timedelta(minutes=10)) == 3
    run_worker(runtime)
    assert scene.platform.count("refund") == 4
