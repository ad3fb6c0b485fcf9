"""Guarantees that name collections: the members are read from the platform (here Cafe24's
documented category API on a loopback server), an order is covered by the members at its
enrollment, and a claim is judged by the members as they were then."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from rq import SimpleWorker
from sqlalchemy import func, select

from ccms_addon.cli import main
from ccms_addon.platforms import OrderLineRecord
from ccms_addon.programs.claims import ClaimRequest, submit_claim
from ccms_addon.programs.collections import (collection_states, due_shops, refresh_job_id,
                                             sync_collection)
from ccms_addon.programs.enrollment import sweep_unenrolled
from ccms_addon.queue import DELIVERIES_QUEUE, queue
from ccms_addon.store.models import (ClaimStatus, CollectionMember, Enrollment, Merchant,
                                     ProgramKind, utcnow)
from tests.platform_servers.cafe24 import ACCESS_TOKEN, Cafe24ServerState, running_server
from tests.programs.conftest import FREE_RETURN_TERMS, SHOPPER, order_record

KITCHEN = "27"
TERMS = {**FREE_RETURN_TERMS, "products": {"collection_ids": [KITCHEN]}}


@pytest.fixture
def platform():
    state = Cafe24ServerState()
    state.categories[KITCHEN] = {"category_name": "주방용품", "product_nos": ["101", "303"]}
    with running_server(state) as base_url:
        state.base_url = base_url
        yield state


@pytest.fixture
def new_shop(make_shop, platform):
    """The Korean shop of the programs tests, installed (a token) against the loopback Cafe24."""
    return make_shop("cafe24", "kshop", name="K 상점",
                     merchant=Merchant(name="K", email="owner@kshop.test"),
                     credentials={"access_token": ACCESS_TOKEN},
                     settings={"api_base_url": platform.base_url})


def _enrolled(runtime, order_id) -> bool:
    with runtime.db.session() as session:
        return bool(session.scalar(select(func.count()).select_from(Enrollment)
                                   .where(Enrollment.order_id == order_id)))


def _claim(runtime, shop, order_id, *lines):
    from ccms_addon.platforms import ReturnLine
    return submit_claim(runtime, shop.id, ClaimRequest(
        kind=ProgramKind.FREE_RETURN, order_id=order_id, message="반품할게요",
        lines=tuple(ReturnLine(line, 1) for line in lines), conditions_accepted=True,
        contact_email=SHOPPER, locale="ko"))[1]


def test_an_order_is_covered_by_the_members_read_from_the_platform(runtime, shop, program,
                                                                    sync_order, platform):
    program(ProgramKind.FREE_RETURN, TERMS)
    result = sync_collection(runtime, shop.id, KITCHEN)
    assert (result.outcome, result.title, result.products, result.added) == \
        ("synced", "주방용품", 2, 2)
    assert platform.calls[-1]["args"] == {"shop_no": "1", "display_group": "1", "limit": "50000"}

    # the mug (101) is in the kitchen category, the T-shirt (202) is not
    [order_id] = sync_order(order_record("1001"))
    assert _enrolled(runtime, order_id)
    claim = _claim(runtime, shop, order_id, "L1")
    assert claim.status is ClaimStatus.PENDING, claim.eligibility
    outside = _claim(runtime, shop, order_id, "L2")
    assert outside.status is ClaimStatus.INELIGIBLE
    assert outside.eligibility["reasons"] == ["line_not_covered:L2"]

    # an order of T-shirts only is not covered at all
    [other] = sync_order(order_record_with("1002", "202"))
    assert not _enrolled(runtime, other)


def order_record_with(number: str, product_id: str):
    """An order of one line, of the given product."""
    return dataclasses.replace(order_record(number), lines=(
        OrderLineRecord("L1", "상품", 1, Decimal("15000"), product_id=product_id),))


def test_a_product_moved_out_later_keeps_the_guarantee_it_was_sold_with(runtime, shop, program,
                                                                         sync_order, platform):
    program(ProgramKind.FREE_RETURN, TERMS)
    sync_collection(runtime, shop.id, KITCHEN)
    [sold_before] = sync_order(order_record_with("2001", "101"))
    assert _enrolled(runtime, sold_before)

    platform.categories[KITCHEN]["product_nos"] = ["303", "404"]
    result = sync_collection(runtime, shop.id, KITCHEN, now=utcnow() + timedelta(seconds=1))
    assert (result.added, result.removed, result.products) == (1, 1, 2)
    with runtime.db.session() as session:
        rows = session.execute(select(CollectionMember.product_id, CollectionMember.removed_at)
                               .order_by(CollectionMember.id)).all()
    assert [(p, removed is not None) for p, removed in rows] == \
        [("101", True), ("303", False), ("404", False)]

    [sold_after] = sync_order(order_record_with("2002", "101"))
    assert not _enrolled(runtime, sold_after)
    # the order sold while the mug was in the category can still be returned
    assert _claim(runtime, shop, sold_before, "L1").status is ClaimStatus.PENDING


def test_orders_enrolled_before_the_first_read_are_caught_up_by_the_sweep(runtime, shop, program,
                                                                          sync_order):
    program(ProgramKind.FREE_RETURN, TERMS)
    [order_id] = sync_order(order_record("3001"))
    assert not _enrolled(runtime, order_id)  # members not known yet
    sync_collection(runtime, shop.id, KITCHEN)
    assert sweep_unenrolled(runtime.db) == 1
    assert _enrolled(runtime, order_id)


def test_a_deleted_category_covers_nothing_and_a_failed_read_changes_nothing(
        runtime, shop, program, sync_order, platform):
    program(ProgramKind.FREE_RETURN, TERMS)
    sync_collection(runtime, shop.id, KITCHEN)

    platform.fail_status, platform.fail_times, platform.retry_after = 503, 50, None
    down = sync_collection(runtime, shop.id, KITCHEN)
    assert down.outcome == "unavailable"
    with runtime.db.session() as session:
        [state] = collection_states(session, shop.id, [KITCHEN])
        current = session.scalar(select(func.count()).select_from(CollectionMember)
                                 .where(CollectionMember.removed_at.is_(None)))
    assert state["products"] == 2 and current == 2 and "503" in state["error"]
    # retried by the sweep only after a pause, and at once when it is over
    assert shop.id not in due_shops(runtime)
    assert shop.id in due_shops(runtime, utcnow() + timedelta(minutes=16))

    platform.fail_times = 0
    del platform.categories[KITCHEN]
    gone = sync_collection(runtime, shop.id, KITCHEN)
    assert gone.outcome == "not_found" and gone.removed == 2
    [order_id] = sync_order(order_record("4001"))
    assert not _enrolled(runtime, order_id)


def test_the_sweep_reads_collections_never_read_or_a_day_old(runtime, shop, program):
    assert due_shops(runtime) == []
    program(ProgramKind.FREE_RETURN, TERMS)
    assert due_shops(runtime) == [shop.id]
    sync_collection(runtime, shop.id, KITCHEN)
    assert due_shops(runtime) == []
    assert due_shops(runtime, utcnow() + timedelta(days=1, minutes=1)) == [shop.id]


def test_the_api_saves_terms_with_collections_and_a_worker_reads_them(runtime, client, new_shop,
                                                                      platform):
    auth = {"Authorization": f"Bearer {new_shop.api_token}"}
    bad = client.post("/api/v1/programs", headers=auth, json={
        "kind": "free_return", "name": "주방 365",
        "terms": {**TERMS, "products": {"collection_ids": ["gid://shopify/Collection/1"]}}})
    assert bad.status_code == 422
    assert "collection_ids" in json.dumps(bad.get_json())

    created = client.post("/api/v1/programs", headers=auth, json={
        "kind": "free_return", "name": "주방 365", "terms": TERMS})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["collections"] == [
        {"id": KITCHEN, "title": None, "products": None, "synced_at": None, "error": None}]
    jobs = queue(DELIVERIES_QUEUE, runtime.redis, runtime.settings).job_ids
    assert refresh_job_id(new_shop.shop.id) in jobs

    SimpleWorker([queue(DELIVERIES_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True, with_scheduler=False)
    program_id = created.get_json()["id"]
    [state] = client.get(f"/api/v1/programs/{program_id}", headers=auth).get_json()["collections"]
    assert (state["title"], state["products"], state["error"]) == ("주방용품", 2, None)
    assert state["synced_at"] is not None


def test_the_cli_reads_collections_with_a_progress_bar(runtime, settings, shop, program,
                                                       platform):
    env = {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
           "CCMS_SECRET_KEY": "test-secret-key", "CCMS_VAR_DIR": str(settings.var_dir)}
    result = CliRunner().invoke(main, ["programs", "collections", "--shop", str(shop.id)], env=env)
    assert result.exit_code == 1 and "name no collection" in result.output

    program(ProgramKind.FREE_RETURN, TERMS)
    result = CliRunner().invoke(main, ["programs", "collections", "--shop", str(shop.id)], env=env)
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    assert (line["collection"], line["outcome"], line["products"]) == (KITCHEN, "synced", 2)

    missing = CliRunner().invoke(main, ["programs", "collections", "--shop", str(shop.id),
                                        "--collection", "999"], env=env)
    assert missing.exit_code == 1 and '"not_found"' in missing.output
