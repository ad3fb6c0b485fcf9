"""The merchant VOC API (/api/v1/voc) on the real store and Redis: the whole lifecycle, intake by
hand and want-slips, validation, the lifecycle's 409s, tenant isolation, keyset pages, bulk
actions, settings and staff."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.staff import add_staff
from ccms_addon.store import repository
from ccms_addon.store.models import (OutboundMessage, Shop, Staff, StaffRole, VocEvent,
                                     VocItem, VocStatus)

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
ITEMS = "/api/v1/voc/items"


def auth(new_shop, staff_email: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {new_shop.api_token}"}
    if staff_email:
        headers["X-Staff-Email"] = staff_email
    return headers


def _order(number: str) -> OrderRecord:
    return OrderRecord(
        platform_order_id=f"o-{number}", number=number, currency="KRW", total=Decimal("15000"),
        updated_at=T0, placed_at=T0, financial_status=FinancialStatus.PAID,
        fulfillment_status=FulfillmentStatus.FULFILLED, email="kim@example.kr",
        customer_name="김민수", customer=CustomerRecord("C1", email="kim@example.kr", name="김민수"),
        lines=(OrderLineRecord("1", "에코백", 1, Decimal("15000"), product_id="P-BAG"),))


@pytest.fixture
def shops(runtime, make_shop):
    """Shop A (with an order and three people) and shop B of another merchant."""
    a = make_shop("shopify", "acme.myshopify.com", name="Acme")
    b = make_shop("shopify", "other.myshopify.com", name="Other")
    with runtime.db.session() as session:
        repository.upsert_orders(session, a.shop.id, [_order("1001")])
        merchant_id = session.get(Shop, a.shop.id).merchant_id
        add_staff(session, merchant_id, "owner@acme.test", "Owner", StaffRole.OWNER)
        add_staff(session, merchant_id, "mina@acme.test", "Mina", StaffRole.AGENT)
        add_staff(session, merchant_id, "lee@acme.test", "Lee", StaffRole.MANAGER)
        other = session.get(Shop, b.shop.id).merchant_id
        add_staff(session, other, "bob@other.test", "Bob", StaffRole.OWNER)
    return a, b


def staff_id(runtime, email: str) -> int:
    with runtime.db.session() as session:
        return session.scalar(select(Staff.id).where(Staff.email == email))


def intake(client, shop, **fields):
    body = {"kind": "complaint", "body": "The bag arrived torn.", "contact_email":
            "kim@example.kr", **fields}
    response = client.post(ITEMS, json=body, headers=auth(shop))
    assert response.status_code == 201, response.json
    return response.json


def test_the_whole_lifecycle_through_the_api(client, runtime, shops):
    a, _ = shops
    item = intake(client, a, channel="phone", order_number="1001", subject="Torn bag",
                  contact_name="김민수", issues=[{"category": "courier", "summary": "rude"}])
    ref = item["reference"]
    assert item["status"] == "received" and item["channel"] == "phone"
    assert item["order_number"] == "1001" and item["product_ref"] == "P-BAG"
    assert item["respond_due_at"] and item["breached"] is False
    assert [i["category"] for i in item["issues"]] == ["courier"]
    assert [e["type"] for e in item["timeline"]] == ["received"]
    assert item["timeline"][0]["actor"] == f"api:shop:{a.shop.id}"

    def act(action, body=None, **kw):
        response = client.post(f"{ITEMS}/{ref}/{action}", json=body if body is not None else {},
                               headers=auth(a, **kw))
        assert response.status_code == 200, (action, response.json)
        return response.json

    assert act("acknowledge", {"notify_customer": False})["status"] == "acknowledged"
    assert act("start", staff_email="mina@acme.test")["status"] == "in_progress"
    mina = staff_id(runtime, "mina@acme.test")
    assigned = act("assign", {"assignee_id": mina})
    assert assigned["assignee"] == {"id": mina, "name": "Mina"}
    act("notes", {"note": "Called the courier."}, staff_email="MINA@acme.test")
    assessed = act("assess", {"category": "delivery", "severity": "high",
                              "issues": [{"category": "packaging", "summary": None}]})
    assert assessed["category"] == "delivery" and assessed["severity"] == "high"
    assert {i["category"] for i in assessed["issues"]} == {"courier", "delivery", "packaging"}
    replied = act("reply", {"message": "We are sending a new bag today."})
    assert replied["status"] == "responded" and replied["responded_at"]
    with runtime.db.session() as session:
        sent = session.scalars(select(OutboundMessage).where(
            OutboundMessage.recipient == "kim@example.kr")).all()
    assert any("We are sending a new bag today." in m.body for m in sent)
    closed = act("close", {"root_cause": "Thin packaging", "prevention_action": "Double box"})
    assert closed["status"] == "closed" and closed["root_cause"] == "Thin packaging"
    assert closed["satisfaction_requested_at"] is not None
    assert all(i["handled"] for i in closed["issues"])
    reopened = act("reopen", {"reason": "The new bag is torn too."})
    assert reopened["status"] == "in_progress" and reopened["reopened_count"] == 1

    timeline = client.get(f"{ITEMS}/{ref}", headers=auth(a)).json["timeline"]
    assert [e["type"] for e in timeline] == [
        "received", "acknowledged", "started", "assigned", "note", "assessed", "reply", "closed",
        "reopened"]
    by_type = {e["type"]: e for e in timeline}
    assert by_type["started"]["actor"] == f"staff:{mina}:Mina"
    assert by_type["note"]["note"] == "Called the courier." and by_type["note"]["actor"].startswith(
        f"staff:{mina}:")
    assert (by_type["closed"]["from_status"], by_type["closed"]["to_status"]) == (
        "responded", "closed")


def test_phone_answers_and_duplicates(client, runtime, shops):
    a, _ = shops
    first = intake(client, a, contact_email=None, contact_phone="010-1234-5678")
    # no address to write to: a reply must be recorded as given on the phone
    refused = client.post(f"{ITEMS}/{first['reference']}/reply", json={"message": "Sorry"},
                          headers=auth(a))
    assert refused.status_code == 422
    assert refused.json["error"]["code"] == "no_contact"
    assert "message" in refused.json["error"]["fields"]["json"]
    told = client.post(f"{ITEMS}/{first['reference']}/reply",
                       json={"message": "Told them on the phone", "given_outside": True},
                       headers=auth(a))
    assert told.status_code == 200 and told.json["status"] == "responded"
    assert told.json["timeline"][-1]["data"] == {"given_outside": True}

    second = intake(client, a, body="Same problem again, calling back.")
    dup = client.post(f"{ITEMS}/{second['reference']}/duplicate",
                      json={"original": first["reference"].lower()}, headers=auth(a))
    assert dup.status_code == 200
    assert dup.json["status"] == "closed" and dup.json["duplicate_of"] == first["reference"]
    missing = client.post(f"{ITEMS}/{second['reference']}/duplicate",
                          json={"original": "VOC-1999-000001"}, headers=auth(a))
    assert missing.status_code == 422 and "original" in missing.json["error"]["fields"]["json"]


def test_a_call_about_an_order_takes_its_contact_from_the_order(client, runtime, shops):
    a, _ = shops
    response = client.post(ITEMS, json={"kind": "inquiry", "body": "Where is my bag?",
                                        "order_number": "#1001"}, headers=auth(a))
    assert response.status_code == 201, response.json
    item = response.json
    assert item["channel"] == "phone" and item["order_number"] == "1001"
    assert item["contact_email"] == "kim@example.kr" and item["contact_name"] == "김민수"
    # so the answer can be written to the caller
    replied = client.post(f"{ITEMS}/{item['reference']}/reply", json={"message": "Tomorrow."},
                          headers=auth(a))
    assert replied.status_code == 200
    assert replied.json["timeline"][-1]["data"]["notifier"] == "email"


def test_want_slip_intake(client, runtime, shops):
    a, _ = shops
    slip = client.post(ITEMS, json={
        "kind": "want_slip",
        "body": "A customer at the counter sighed that the bag strap is short.",
        "category": "product", "occurred_at": (datetime.now(timezone.utc) - timedelta(hours=2))
        .isoformat()}, headers=auth(a, "mina@acme.test"))
    assert slip.status_code == 201, slip.json
    body = slip.json
    assert body["kind"] == "want_slip" and body["channel"] == "staff"
    assert body["contact_email"] is None and body["category"] == "product"
    actor = body["timeline"][0]["actor"]
    assert actor.startswith("staff:") and actor.endswith(":Mina")
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.now(timezone.utc) - created > timedelta(hours=1)
    # a want-slip is the staff's own record: no other channel
    wrong = client.post(ITEMS, json={"kind": "want_slip", "body": "x", "channel": "phone"},
                        headers=auth(a))
    assert wrong.status_code == 422 and "channel" in wrong.json["error"]["fields"]["json"]
    listed = client.get(ITEMS, query_string={"kind": "want_slip"}, headers=auth(a)).json
    assert [i["reference"] for i in listed["items"]] == [body["reference"]]


@pytest.mark.parametrize("body,field", [
    ({"body": "x"}, "kind"),
    ({"kind": "claim", "body": "x"}, "kind"),
    ({"kind": "complaint"}, "body"),
    ({"kind": "complaint", "body": "   "}, "body"),
    ({"kind": "complaint", "body": "a\x00b"}, "body"),
    ({"kind": "complaint", "body": "x", "contact_email": "not-an-email"}, "contact_email"),
    ({"kind": "complaint", "body": "x", "severity": "apocalyptic"}, "severity"),
    ({"kind": "complaint", "body": "x", "channel": "widget"}, "channel"),
    ({"kind": "complaint", "body": "x", "channel": "carrier-pigeon"}, "channel"),
    ({"kind": "complaint", "body": "x", "order_number": "9999"}, "order_number"),
    ({"kind": "complaint", "body": "x", "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ({"kind": "complaint", "body": "x", "occurred_at": "2099-01-01T00:00:00+09:00"}, "occurred_at"),
    ({"kind": "complaint", "body": "x", "occurred_at": "2020-01-01T00:00:00+09:00"}, "occurred_at"),
    ({"kind": "complaint", "body": "x", "issues": [{"category": "Bad Category"}]}, "issues"),
    ({"kind": "complaint", "body": "x", "surprise": 1}, "surprise"),
])
def test_intake_validation_is_422_with_field_errors(client, runtime, shops, body, field):
    a, _ = shops
    response = client.post(ITEMS, json=body, headers=auth(a))
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]["json"]
    with runtime.db.session() as session:
        assert session.scalar(select(VocItem.id)) is None  # nothing half-written


@pytest.mark.parametrize("action,body,field", [
    ("assign", {"assignee_id": "me"}, "assignee_id"),
    ("assign", {}, "assignee_id"),
    ("notes", {"note": ""}, "note"),
    ("notes", {"text": "wrong name"}, "text"),
    ("assess", {}, "_schema"),
    ("assess", {"severity": "x"}, "severity"),
    ("close", {"resolution": "bored"}, "resolution"),
    ("close", {"handled_issue_ids": [2**70]}, "handled_issue_ids"),
    ("reopen", {}, "reason"),
    ("acknowledge", {"notify_customer": "perhaps"}, "notify_customer"),
    ("start", {"now": True}, "now"),
])
def test_action_validation_is_422_with_field_errors(client, shops, action, body, field):
    a, _ = shops
    ref = intake(client, a)["reference"]
    response = client.post(f"{ITEMS}/{ref}/{action}", json=body, headers=auth(a))
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]["json"], response.json


def test_assigning_someone_of_another_merchant_is_refused(client, runtime, shops):
    a, _ = shops
    ref = intake(client, a)["reference"]
    bob = staff_id(runtime, "bob@other.test")
    response = client.post(f"{ITEMS}/{ref}/assign", json={"assignee_id": bob}, headers=auth(a))
    assert response.status_code == 422
    assert response.json["error"]["code"] == "unknown_staff"
    assert response.json["error"]["fields"] == {"json": {"assignee_id": [
        "No such active staff member."]}}


def test_invalid_transitions_are_409(client, shops):
    a, _ = shops
    ref = intake(client, a)["reference"]
    # an unanswered item closes only with a resolution
    unanswered = client.post(f"{ITEMS}/{ref}/close", json={"root_cause": "x"}, headers=auth(a))
    assert unanswered.status_code == 409 and unanswered.json["error"]["code"] == "not_answered"
    assert client.post(f"{ITEMS}/{ref}/reopen", json={"reason": "why"},
                       headers=auth(a)).status_code == 409
    assert client.post(f"{ITEMS}/{ref}/acknowledge", headers=auth(a)).status_code == 200
    again = client.post(f"{ITEMS}/{ref}/acknowledge", headers=auth(a))
    assert again.status_code == 409 and again.json["error"]["code"] == "unchanged"
    spam = client.post(f"{ITEMS}/{ref}/close", json={"resolution": "spam"}, headers=auth(a))
    assert spam.status_code == 200 and spam.json["status"] == "closed"
    assert client.post(f"{ITEMS}/{ref}/start", headers=auth(a)).status_code == 409


def test_a_complaint_closes_with_its_root_cause(client, shops):
    a, _ = shops
    ref = intake(client, a)["reference"]
    client.post(f"{ITEMS}/{ref}/reply", json={"message": "Sorry!"}, headers=auth(a))
    response = client.post(f"{ITEMS}/{ref}/close", json={}, headers=auth(a))
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"json": {"root_cause": [
        "A complaint is closed with its root cause."]}}


def test_another_shops_item_is_404_like_a_missing_one(client, shops):
    a, b = shops
    ref = intake(client, a)["reference"]
    # shop B has an item with the same reference number of its own
    b_ref = intake(client, b)["reference"]
    assert b_ref == ref
    client.post(f"{ITEMS}/{ref}/notes", json={"note": "only in A"}, headers=auth(a))
    seen_by_b = client.get(f"{ITEMS}/{ref}", headers=auth(b)).json
    assert all(e["type"] != "note" for e in seen_by_b["timeline"])

    c_ref = intake(client, a, body="second")["reference"]
    foreign = client.get(f"{ITEMS}/{c_ref}", headers=auth(b))
    missing = client.get(f"{ITEMS}/VOC-2000-000009", headers=auth(b))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json == missing.json
    for action, body in [("acknowledge", {}), ("notes", {"note": "x"}), ("start", {})]:
        assert client.post(f"{ITEMS}/{c_ref}/{action}", json=body,
                           headers=auth(b)).status_code == 404
    assert client.get(ITEMS, query_string={"q": c_ref}, headers=auth(b)).json["items"] == []
    assert client.get(f"{ITEMS}/{c_ref}").status_code == 401
    assert client.get(f"{ITEMS}/{c_ref}",
                      headers={"Authorization": "Bearer nope"}).status_code == 401


def test_staff_of_another_merchant_cannot_act(client, shops):
    a, _ = shops
    ref = intake(client, a)["reference"]
    response = client.post(f"{ITEMS}/{ref}/start", headers=auth(a, "bob@other.test"))
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"headers": {"X-Staff-Email": [
        "Not an active staff member."]}}


def test_roles_limit_what_a_named_person_may_do(client, shops):
    a, _ = shops
    assert client.put("/api/v1/voc/settings", json={"auto_acknowledge": False},
                      headers=auth(a, "mina@acme.test")).status_code == 403
    assert client.post("/api/v1/voc/staff", json={"email": "x@acme.test", "name": "X"},
                       headers=auth(a, "lee@acme.test")).status_code == 403
    assert client.put("/api/v1/voc/settings", json={"auto_acknowledge": False},
                      headers=auth(a, "owner@acme.test")).status_code == 200
    assert client.get("/api/v1/voc/settings", headers=auth(a, "mina@acme.test")).status_code == 200


def test_keyset_pages_with_cursors(client, runtime, shops):
    a, b = shops
    refs = [intake(client, a, body=f"voice {i}")["reference"] for i in range(7)]
    intake(client, b)
    for sort, expected in (("newest", refs[::-1]), ("oldest", refs), ("due", refs)):
        seen, cursor = [], None
        while True:
            query = {"limit": 3, "sort": sort, **({"cursor": cursor} if cursor else {})}
            page = client.get(ITEMS, query_string=query, headers=auth(a)).json
            assert len(page["items"]) <= 3
            seen += [i["reference"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == expected, sort
    # filters combine with pages
    client.post(f"{ITEMS}/{refs[2]}/acknowledge", headers=auth(a))
    acknowledged = client.get(ITEMS, query_string=[("status", "acknowledged")],
                              headers=auth(a)).json["items"]
    assert [i["reference"] for i in acknowledged] == [refs[2]]
    both = client.get(ITEMS, query_string=[("status", "acknowledged"), ("status", "received")],
                      headers=auth(a)).json["items"]
    assert len(both) == 7
    found = client.get(ITEMS, query_string={"q": "voice 4"}, headers=auth(a)).json["items"]
    assert [i["reference"] for i in found] == [refs[4]]
    assert client.get(ITEMS, query_string={"assignee": "none"},
                      headers=auth(a)).json["next_cursor"] is None


@pytest.mark.parametrize("query,field", [
    ({"limit": 0}, "limit"), ({"limit": 1000}, "limit"), ({"sort": "random"}, "sort"),
    ({"status": "lost"}, "status"), ({"cursor": "%%%"}, "cursor"),
    ({"cursor": "MjAyNi0wMS0wMVQwMDowMDowMHw1"}, "cursor"),  # a time without a zone
    ({"created_from": "yesterday"}, "created_from"), ({"assignee": "everyone"}, "assignee"),
    ({"assignee": "99999999999999999999"}, "assignee"), ({"q": "\x00"}, "q"),
    ({"bogus": 1}, "bogus"),
])
def test_inbox_query_validation(client, shops, query, field):
    a, _ = shops
    response = client.get(ITEMS, query_string=query, headers=auth(a))
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]["query"]


def test_bulk_is_partial_success(client, runtime, shops):
    a, b = shops
    refs = [intake(client, a, body=f"voice {i}")["reference"] for i in range(3)]
    client.post(f"{ITEMS}/{refs[1]}/acknowledge", headers=auth(a))
    foreign = [intake(client, b, body=f"b{i}")["reference"] for i in range(4)]
    extra = foreign[-1]  # a reference shop A does not have
    assert extra not in refs
    response = client.post(f"{ITEMS}/bulk", json={
        "action": "acknowledge", "references": [refs[0], refs[1], refs[2], extra],
        "params": {"notify_customer": False}}, headers=auth(a))
    assert response.status_code == 200, response.json
    body = response.json
    assert [(r["reference"], r["ok"], r["code"]) for r in body["results"]] == [
        (refs[0], True, None), (refs[1], False, "unchanged"), (refs[2], True, None),
        (extra, False, "not_found")]
    assert body["succeeded"] == 2 and body["failed"] == 2
    with runtime.db.session() as session:
        statuses = dict(session.execute(select(VocItem.reference, VocItem.status).where(
            VocItem.shop_id == a.shop.id)).all())
        b_statuses = set(session.scalars(select(VocItem.status).where(
            VocItem.shop_id == b.shop.id)))
    assert set(statuses.values()) == {VocStatus.ACKNOWLEDGED}
    assert b_statuses == {VocStatus.RECEIVED}

    mina = staff_id(runtime, "mina@acme.test")
    assigned = client.post(f"{ITEMS}/bulk", json={
        "action": "assign", "references": refs, "params": {"assignee_id": mina}},
        headers=auth(a, "lee@acme.test")).json
    assert assigned["succeeded"] == 3
    with runtime.db.session() as session:
        actors = set(session.scalars(select(VocEvent.actor).where(VocEvent.type == "assigned")))
    assert len(actors) == 1 and actors.pop().endswith(":Lee")
    noted = client.post(f"{ITEMS}/bulk", json={
        "action": "note", "references": refs[:1], "params": {"note": "seen"}}, headers=auth(a))
    assert noted.json["succeeded"] == 1


@pytest.mark.parametrize("body,field", [
    ({"action": "explode", "references": ["VOC-2026-000001"]}, "action"),
    ({"action": "start", "references": []}, "references"),
    ({"action": "assign", "references": ["VOC-2026-000001"], "params": {}}, "params"),
    ({"action": "note", "references": ["VOC-2026-000001"], "params": {"note": 5}}, "params"),
])
def test_bulk_validation(client, shops, body, field):
    a, _ = shops
    response = client.post(f"{ITEMS}/bulk", json=body, headers=auth(a))
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]["json"]


def test_settings_round_trip_with_merge(client, runtime, shops):
    a, _ = shops
    url = "/api/v1/voc/settings"
    defaults = client.get(url, headers=auth(a)).json
    assert defaults["sla_hours"]["complaint"]["high"] == 4 and defaults["auto_acknowledge"] is True
    changed = client.put(url, json={
        "sla_hours": {"complaint": {"high": 3}}, "auto_acknowledge": False,
        "rules": [{"keywords": ["torn", "broken"], "category": "damage", "severity": "high"}],
        "digest": {"hour": 9}}, headers=auth(a))
    assert changed.status_code == 200, changed.json
    merged = changed.json
    assert merged["sla_hours"]["complaint"] == {**defaults["sla_hours"]["complaint"], "high": 3}
    assert merged["digest"] == {**defaults["digest"], "hour": 9}
    assert merged["auto_acknowledge"] is False and merged["rules"][0]["category"] == "damage"
    # a second change keeps what the first set
    again = client.put(url, json={"digest": {"recipients": ["boss@acme.test"]},
                                  "sla_hours": {"complaint": {"low": 30}}}, headers=auth(a)).json
    assert again["digest"]["hour"] == 9 and again["digest"]["recipients"] == ["boss@acme.test"]
    assert again["sla_hours"]["complaint"]["high"] == 3
    assert again["sla_hours"]["complaint"]["low"] == 30
    assert again["auto_acknowledge"] is False
    assert client.get(url, headers=auth(a)).json == again
    # the rules classify the next item
    assert intake(client, a, body="The strap is torn")["category"] == "damage"

    for bad, field in [({"sla_hours": {"complaint": {"high": 0}}}, "sla_hours"),
                       ({"rules": [{"category": "x"}]}, "rules"), ({"colour": "red"}, "colour"),
                       ({"digest": {"hour": 25}}, "digest")]:
        response = client.put(url, json=bad, headers=auth(a))
        assert response.status_code == 422, (bad, response.json)
        assert field in response.json["error"]["fields"]["json"], response.json
    assert client.get(url, headers=auth(a)).json == again  # nothing half-written
    with runtime.db.session() as session:
        assert set(session.get(Shop, a.shop.id).settings["voc"]) == {
            "sla_hours", "auto_acknowledge", "rules", "digest"}  # defaults are not frozen in


def test_staff_list_and_add(client, runtime, shops):
    a, b = shops
    listed = client.get("/api/v1/voc/staff", headers=auth(a)).json
    assert {s["email"] for s in listed} == {"owner@acme.test", "mina@acme.test", "lee@acme.test"}
    assert "password_hash" not in listed[0]
    added = client.post("/api/v1/voc/staff", json={
        "email": "New@Acme.test", "name": "New Person", "role": "manager", "locale": "ko",
        "password": "long enough password"}, headers=auth(a, "owner@acme.test"))
    assert added.status_code == 201, added.json
    assert added.json["email"] == "new@acme.test" and added.json["role"] == "manager"
    assert "password" not in added.json
    taken = client.post("/api/v1/voc/staff", json={"email": "mina@acme.test", "name": "M"},
                        headers=auth(a))
    assert taken.status_code == 422 and "email" in taken.json["error"]["fields"]["json"]
    short = client.post("/api/v1/voc/staff", json={"email": "z@acme.test", "name": "Z",
                                                   "password": "short"}, headers=auth(a))
    assert short.status_code == 422 and "password" in short.json["error"]["fields"]["json"]
    assert "new@acme.test" not in {s["email"] for s in client.get(
        "/api/v1/voc/staff", headers=auth(b)).json}


def test_openapi_documents_every_answer(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
    voc_paths = {p: ops for p, ops in spec["paths"].items() if p.startswith("/api/v1/voc/")}
    assert "/api/v1/voc/items/{reference}/close" in voc_paths
    for path, operations in voc_paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            codes = set(operation["responses"])
            assert {"401", "403", "422"} <= codes, (path, method)
            assert "default" not in codes
            if "{reference}" in path:
                assert "404" in codes, path
            if path.endswith(("/acknowledge", "/start", "/reply", "/close", "/reopen",
                              "/duplicate")):
                assert "409" in codes, path
            header = [p for p in operation["parameters"] if p["in"] == "header"]
            assert [p["name"] for p in header] == ["X-Staff-Email"]


def test_the_owners_board(client, runtime, shops):
    a, b = shops
    first = intake(client, a, body="The lid was cracked when it arrived.", category="damage")
    intake(client, a, kind="want_slip", body="Overheard: the strap is short.", contact_email=None)
    intake(client, b, body="Shop B's voice")
    response = client.get("/api/v1/voc/board", headers=auth(a, "lee@acme.test"))
    assert response.status_code == 200, response.json
    board = response.json
    assert board["new_today"] == 2
    voices = {v["reference"]: v for v in board["new_voices"]}
    assert voices[first["reference"]]["excerpt"] == "The lid was cracked when it arrived."
    assert "Shop B's voice" not in {v["excerpt"] for v in board["new_voices"]}
    assert len(board["series"]) == 30 and board["series"][-1]["total"] == 2
    assert {"resolved_complainers", "never_complained"} <= set(board["repurchase"])
    # an agent works items; the board is for managers and owners
    assert client.get("/api/v1/voc/board",
                      headers=auth(a, "mina@acme.test")).status_code == 403


def test_the_monthly_report_in_three_formats(client, runtime, shops):
    a, _ = shops
    ref = intake(client, a)["reference"]
    client.post(f"{ITEMS}/{ref}/reply", json={"message": "Sorry!"}, headers=auth(a))
    client.post(f"{ITEMS}/{ref}/close", json={"root_cause": "Thin box",
                                              "prevention_action": "Double box"}, headers=auth(a))
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    report = client.get("/api/v1/voc/reports/monthly", query_string={"month": month},
                        headers=auth(a))
    assert report.status_code == 200, report.json
    figures = report.json
    assert figures["received"] == 1 and figures["by_kind"] == {"complaint": 1}
    assert figures["by_channel"] == {"phone": 1}
    assert [p["prevention_action"] for p in figures["prevention_actions"]] == ["Double box"]
    html = client.get("/api/v1/voc/reports/monthly", headers=auth(a),
                      query_string={"month": month, "format": "html", "locale": "ko"})
    assert html.status_code == 200 and html.mimetype == "text/html"
    assert "Double box" in html.get_data(as_text=True)
    pdf = client.get("/api/v1/voc/reports/monthly", headers=auth(a),
                     query_string={"month": month, "format": "pdf"})
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    for bad in ({"month": "2026-13"}, {"month": "1999-12"}, {}, {"month": month, "format": "doc"}):
        response = client.get("/api/v1/voc/reports/monthly", query_string=bad, headers=auth(a))
        assert response.status_code == 422, bad
        assert set(response.json["error"]["fields"]["query"]) & {"month", "format"}


def test_csv_exports(client, runtime, shops):
    import csv
    import io
    a, b = shops
    ref = intake(client, a, body="=HYPERLINK(\"http://evil\")")["reference"]
    intake(client, a, kind="praise", body="Lovely tea")
    intake(client, b, body="other shop")
    client.post(f"{ITEMS}/{ref}/notes", json={"note": "checked"}, headers=auth(a))
    items = client.get("/api/v1/voc/export/items.csv", query_string={"kind": "complaint"},
                       headers=auth(a))
    assert items.status_code == 200 and items.mimetype == "text/csv"
    assert "attachment" in items.headers["Content-Disposition"]
    text = items.data.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    assert [r["reference"] for r in rows] == [ref]
    assert rows[0]["body"].startswith("'=")  # a spreadsheet will not run it
    events = client.get("/api/v1/voc/export/events.csv", headers=auth(a))
    event_rows = list(csv.DictReader(io.StringIO(events.data.decode("utf-8")[1:])))
    assert [r["type"] for r in event_rows] == ["received", "received", "note"]
    assert {r["shop"] for r in event_rows} == {"acme.myshopify.com"}
    later = client.get("/api/v1/voc/export/events.csv", headers=auth(a), query_string={
        "created_from": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()})
    assert len(list(csv.reader(io.StringIO(later.data.decode("utf-8")[1:])))) == 1  # the header
    assert client.get("/api/v1/voc/export/items.csv", query_string={"limit": 5},
                      headers=auth(a)).status_code == 422
    assert client.get("/api/v1/voc/export/items.csv",
                      headers=auth(a, "mina@acme.test")).status_code == 403
