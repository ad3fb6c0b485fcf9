"""The merchant API for programs and claims: validation with field errors, versions, decisions,
and another shop's ids answered 404 like missing ones."""

from __future__ import annotations

import pytest

from ccms_addon.programs.claims import ClaimRequest, submit_claim
from ccms_addon.store.models import Merchant, ProgramKind
from tests.programs.conftest import BUYBACK_TERMS, FREE_RETURN_TERMS, SHOPPER, order_record


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(runtime, make_shop):
    a = make_shop("cafe24", "malla", merchant=Merchant(name="A", email="a@a.test"))
    b = make_shop("cafe24", "mallb", merchant=Merchant(name="B"))
    return a, b


def test_a_program_is_created_validated_and_versioned(client, tokens):
    a, _ = tokens
    bad = client.post("/api/v1/programs", headers=auth(a.api_token), json={
        "kind": "buyback", "name": "x", "terms": {**BUYBACK_TERMS, "value_schedule": [
            {"until_month": 6, "percent": "60"}, {"until_month": 12, "percent": "80"}]}})
    assert bad.status_code == 422
    assert "value_schedule" in bad.get_json()["error"]["fields"]["json"]["terms"]
    made = client.post("/api/v1/programs", headers=auth(a.api_token), json={
        "kind": "free_return", "name": "365 days", "terms": FREE_RETURN_TERMS})
    assert made.status_code == 201, made.get_json()
    program = made.get_json()
    assert (program["version"], program["terms"]["window_days"]) == (1, 365)
    again = client.post("/api/v1/programs", headers=auth(a.api_token), json={
        "kind": "free_return", "name": "365 days", "terms": FREE_RETURN_TERMS})
    assert again.status_code == 409
    changed = client.patch(f"/api/v1/programs/{program['id']}", headers=auth(a.api_token),
                           json={"terms": {**FREE_RETURN_TERMS, "window_days": 100},
                                 "status": "paused"})
    assert changed.status_code == 200
    assert (changed.get_json()["version"], changed.get_json()["status"]) == (2, "paused")
    bad_terms = client.patch(f"/api/v1/programs/{program['id']}", headers=auth(a.api_token),
                             json={"terms": {"window_days": 0}})
    assert bad_terms.status_code == 422
    listed = client.get("/api/v1/programs", headers=auth(a.api_token)).get_json()
    assert [p["name"] for p in listed] == ["365 days"]


def test_another_shops_programs_and_claims_are_404(client, tokens, runtime):
    a, b = tokens
    made = client.post("/api/v1/programs", headers=auth(a.api_token), json={
        "kind": "free_return", "name": "r", "terms": FREE_RETURN_TERMS}).get_json()
    assert client.get(f"/api/v1/programs/{made['id']}",
                      headers=auth(b.api_token)).status_code == 404
    assert client.patch(f"/api/v1/programs/{made['id']}", headers=auth(b.api_token),
                        json={"status": "paused"}).status_code == 404
    assert client.get("/api/v1/programs", headers=auth(b.api_token)).get_json() == []
    assert client.get("/api/v1/claims/1", headers=auth(b.api_token)).status_code == 404
    assert client.post("/api/v1/claims/1/decision", headers=auth(b.api_token),
                       json={"decision": "approve"}).status_code == 404


def test_claims_are_listed_and_decided(client, runtime, new_shop, program, sync_order):
    shop = new_shop.shop
    program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    [order_id] = sync_order(order_record())
    item, claim = submit_claim(runtime, shop.id, ClaimRequest(
        kind=ProgramKind.FREE_RETURN, order_id=order_id, message="too small",
        conditions_accepted=True, contact_email=SHOPPER))
    headers = auth(new_shop.api_token)
    [listed] = client.get("/api/v1/claims?status=pending", headers=headers).get_json()
    assert listed["reference"] == item.reference and listed["amount"] == "45000"
    assert client.get("/api/v1/claims?status=bogus", headers=headers).status_code == 422
    bad = client.post(f"/api/v1/claims/{claim.id}/decision", headers=headers,
                      json={"decision": "maybe"})
    assert bad.status_code == 422 and "decision" in bad.get_json()["error"]["fields"]["json"]
    rejected = client.post(f"/api/v1/claims/{claim.id}/decision", headers=headers,
                           json={"decision": "reject", "note": "worn"})
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "rejected"
    again = client.post(f"/api/v1/claims/{claim.id}/decision", headers=headers,
                        json={"decision": "approve"})
    assert again.status_code == 409
    assert client.get(f"/api/v1/claims/{claim.id}", headers=headers).get_json()[
        "decision_note"] == "worn"
