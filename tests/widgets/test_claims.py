"""``POST claims`` and the guarantees in ``GET config``: a shopper claims a free return or a
buyback from the widget, named like an order lookup; the claim is always recorded and the answer
says whether it is inside the terms."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from ccms_addon.programs import service
from ccms_addon.programs.schemas import load_terms
from ccms_addon.store.models import Claim, ClaimStatus, ProgramKind, VocChannel, VocItem
from tests.widgets.test_api import (Widget, error, orders, shop, widget,  # noqa: F401
                                    widget_app)

BUYBACK = {"window_months": 12, "qualifying_events": [{"code": "involuntary_job_loss"}],
           "value_schedule": [{"until_month": 12, "percent": "70"}]}


def _programs(runtime, shop_id):
    with runtime.db.session() as session:
        service.create_program(session, shop_id, kind=ProgramKind.FREE_RETURN, name="365일 무료 반품",
                               terms=load_terms(ProgramKind.FREE_RETURN, {"window_days": 365}),
                               actor="test")
        service.create_program(session, shop_id, kind=ProgramKind.BUYBACK, name="실직 보장",
                               terms=load_terms(ProgramKind.BUYBACK, BUYBACK), actor="test")


def claim(widget: Widget, **fields):
    body = {"program": "free_return", "order_number": "#1001", "contact": "buyer@example.com",
            "message": "Too small", "token": widget.token(), **fields}
    return widget.post("claims", body)


def test_the_config_lists_the_shops_guarantees(runtime, widget_app, shop):
    _programs(runtime, shop.id)
    client = Widget(widget_app.test_client(), shop, widget_app.config["SECRET_KEY"])
    config = client.get("config").get_json()
    kinds = {p["kind"]: p for p in config["programs"]}
    assert kinds["free_return"]["window_days"] == 365
    assert kinds["buyback"]["events"][0]["labels"]["ko"] == "비자발적 실직"


def test_a_free_return_claimed_from_the_widget(runtime, widget, shop, orders):
    _programs(runtime, shop.id)
    answer = claim(widget)
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    # the order predates the programs (no backfill ran): recorded, outside the terms
    assert body["reference"].startswith("VOC-") and body["eligible"] is False
    assert body["reasons"] == ["not_enrolled"]
    with runtime.db.session() as session:
        made = session.scalar(select(Claim))
        item = session.get(VocItem, made.voc_item_id)
    assert made.status is ClaimStatus.INELIGIBLE and item.channel == VocChannel.WIDGET


def test_a_buyback_claim_needs_its_event(runtime, widget, shop, orders):
    _programs(runtime, shop.id)
    missing = claim(widget, program="buyback")
    assert missing.status_code == 422
    assert set(error(missing)["fields"]["json"]) == {"event", "event_date"}
    ok = claim(widget, program="buyback", event="involuntary_job_loss",
               event_date=date.today().isoformat(), evidence="letter")
    assert ok.status_code == 201


def test_a_wrong_contact_is_the_same_404_as_no_order(runtime, widget, shop, orders):
    _programs(runtime, shop.id)
    wrong = claim(widget, contact="someone@else.com")
    nothing = claim(widget, order_number="#9999")
    assert wrong.status_code == nothing.status_code == 404
    assert error(wrong) == error(nothing)
    with runtime.db.session() as session:
        assert session.scalar(select(Claim)) is None


def test_bots_and_foreign_pages_are_refused(runtime, widget, shop, orders):
    _programs(runtime, shop.id)
    assert claim(widget, website="http://spam").status_code == 400
    assert claim(widget, token=widget.token(age=0)).status_code == 422
    foreign = widget.post("claims", {"program": "free_return"}, origin="https://evil.example")
    assert foreign.status_code == 403
