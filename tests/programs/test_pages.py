"""The hosted pages of follow-up links: claim a guarantee, write to the shop, and refuse forged
or expired links. Every page runs under a strict CSP and shows the shopper's words as text."""

from __future__ import annotations

from datetime import timedelta

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from ccms_addon.programs.followups import follow_up_link
from ccms_addon.store.models import Claim, ClaimStatus, FollowUp, ProgramKind, VocChannel, VocItem
from tests.programs.conftest import BUYBACK_TERMS, CHECK_IN_TERMS, FREE_RETURN_TERMS, order_record

XSS = '<img src=x onerror="alert(1)">'


def _link(runtime, step: str) -> str:
    with runtime.db.session() as session:
        follow_up = session.scalar(select(FollowUp).where(FollowUp.step == step))
    return follow_up_link(runtime, follow_up.id, follow_up.shop_id).split("://", 1)[1].split(
        "/", 1)[1]


def test_a_free_return_is_claimed_from_the_reminders_link(runtime, client, program, sync_order):
    program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    sync_order(order_record())
    path = "/" + _link(runtime, "reminder")
    page = client.get(path)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "머그컵" in text and "unused" in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    missing = client.post(path, data={"line-L1": "1"})
    assert missing.status_code == 422
    done = client.post(path, data={"line-L1": "1", "line-L2": "0", "conditions": "1",
                                   "message": XSS})
    body = done.get_data(as_text=True)
    assert done.status_code == 200 and "VOC-" in body and XSS not in body
    with runtime.db.session() as session:
        claim = session.scalar(select(Claim))
        item = session.get(VocItem, claim.voc_item_id)
    assert claim.status is ClaimStatus.PENDING and claim.lines == [
        {"platform_line_id": "L1", "quantity": 1}]
    assert item.channel == VocChannel.FOLLOW_UP and item.body == XSS


def test_a_buyback_claim_asks_for_the_event_and_its_date(runtime, client, program, sync_order):
    program(ProgramKind.BUYBACK, {**BUYBACK_TERMS, "steps": [
        {"key": "ending", "offset_days": 3, "kind": "reminder", "template": "buyback_ending"}]})
    sync_order(order_record())
    path = "/" + _link(runtime, "ending")
    assert "비자발적 실직" in client.get(path).get_data(as_text=True)
    assert client.post(path, data={"message": "laid off"}).status_code == 422
    from ccms_addon.store.models import utcnow
    today = utcnow().date().isoformat()
    done = client.post(path, data={"message": "laid off", "event": "involuntary_job_loss",
                                   "event_date": today, "evidence": "letter.pdf"})
    assert done.status_code == 200
    with runtime.db.session() as session:
        claim = session.scalar(select(Claim))
    assert claim.event == "involuntary_job_loss" and claim.evidence == {"text": "letter.pdf"}


def test_another_messages_link_writes_to_the_shop(runtime, client, program, sync_order):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record())
    path = "/" + _link(runtime, "promo")
    assert client.post(path, data={"message": ""}).status_code == 422
    assert client.post(path, data={"message": "언제 재입고되나요?"}).status_code == 200
    with runtime.db.session() as session:
        item = session.scalar(select(VocItem))
    assert item.body == "언제 재입고되나요?" and item.channel == VocChannel.FOLLOW_UP


def test_forged_tampered_and_expired_links_are_refused(runtime, client, program, sync_order,
                                                       monkeypatch):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record())
    path = "/" + _link(runtime, "arrival")
    assert client.get(path[:-2] + "xx").status_code == 404
    forged = URLSafeTimedSerializer("not-our-key", salt="ccms-link:follow-up").dumps(
        {"f": 1, "s": 1})
    assert client.get(f"/f/{forged}").status_code == 404
    from itsdangerous import timed
    real_now = timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(timed.TimestampSigner, "get_timestamp",
                        lambda self: real_now(self) + int(timedelta(days=500).total_seconds()))
    assert client.get(path).status_code == 410
