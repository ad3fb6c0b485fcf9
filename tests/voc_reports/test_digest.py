"""The owner's daily digest: sent once per person and local day through a real SMTP server on
loopback (the outbox and a real RQ worker), only in the digest's local hour, plain text with the
shoppers' words verbatim."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from rq import Worker
from sqlalchemy import select

from ccms_addon.outbox import Outbox
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.store.models import (OutboundMessage, OutboundStatus, Shop, VocChannel,
                                     VocKind, utcnow)
from ccms_addon.voc.digest import digest_key, send_due_digests
from tests.voc_reports.conftest import OWNER, SEOUL

BOSS = "boss@kshop.test"
WORDS = '<b>상자가</b> 찢어져 왔어요\n두 번째 줄 & "따옴표"'


def last_nine_thirty() -> datetime:
    """The latest 09:30 in Seoul that is not in the future."""
    now = utcnow().astimezone(SEOUL)
    at = now.replace(hour=9, minute=30, second=0, microsecond=0)
    return (at if at <= now else at - timedelta(days=1)).astimezone(timezone.utc)


@pytest.fixture
def digest_shop(runtime, shop):
    with runtime.db.session() as session:
        row = session.get(Shop, shop.id)
        row.settings = {**(row.settings or {}),
                        "voc": {"digest": {"hour": 9, "recipients": [BOSS]}}}
    return shop


def run_worker(runtime) -> None:
    Worker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
           connection=runtime.redis).work(burst=True)


def test_sent_once_at_the_local_hour(runtime, digest_shop, other_shop, voc, smtp_server):
    at = last_nine_thirty()
    voc(VocKind.COMPLAINT, WORDS, at=at - timedelta(hours=1), contact_name="김민수",
        category="packaging")
    voc(VocKind.WANT_SLIP, "직원이 들은 불만", at=at - timedelta(hours=2), channel=VocChannel.STAFF)
    voc(VocKind.COMPLAINT, "어제 일", at=at - timedelta(hours=25))
    voc(VocKind.COMPLAINT, "다른 가게의 목소리", at=at - timedelta(hours=1), shop_id=other_shop.id)

    assert send_due_digests(runtime, at - timedelta(minutes=31)) == 0  # 08:59 in Seoul
    assert send_due_digests(runtime, at) == 2
    assert send_due_digests(runtime, at + timedelta(minutes=20)) == 0  # the same hour again
    run_worker(runtime)
    day = at.astimezone(SEOUL).date()
    for recipient in (OWNER, BOSS):  # delivering again sends nothing
        assert Outbox(runtime).deliver(digest_key(digest_shop.merchant_id, day, recipient)) == "sent"
    ours = [m for m in smtp_server.parsed() if m["To"] in (OWNER, BOSS)]
    assert sorted(m["To"] for m in ours) == sorted([OWNER, BOSS])
    with runtime.db.session() as session:
        rows = session.scalars(select(OutboundMessage).where(
            OutboundMessage.data.is_not(None)).order_by(OutboundMessage.id)).all()
    digests = [r for r in rows if r.idempotency_key.startswith("voc-digest:")]
    assert len(digests) == 2 and all(r.status is OutboundStatus.SENT for r in digests)

    message = next(m for m in ours if m["To"] == OWNER)
    assert message.get_content_type() == "text/plain"
    assert message["Subject"] == f"[K] {day.isoformat()} 고객의 목소리"
    body = message.get_content().replace("\r\n", "\n")
    assert "지난 24시간 새 VOC: 2건" in body
    assert "    <b>상자가</b> 찢어져 왔어요\n    두 번째 줄 & \"따옴표\"" in body
    assert "김민수 · packaging" in body and "직원이 들은 불만" in body
    assert "어제 일" not in body and "다른 가게의 목소리" not in body
    assert "packaging — 1건" in body
    assert "현재 SLA 초과" in body


def test_the_next_day_brings_a_new_digest_and_the_hour_follows_the_zone(runtime, digest_shop):
    at = last_nine_thirty()
    assert send_due_digests(runtime, at) == 2
    assert send_due_digests(runtime, at + timedelta(days=1)) == 2
    # 09:30 in Seoul is 00:30 UTC: a shop in UTC with the same hour is not due then
    with runtime.db.session() as session:
        session.get(Shop, digest_shop.id).timezone = "UTC"
    assert send_due_digests(runtime, at + timedelta(days=2)) == 0
    assert send_due_digests(runtime, at + timedelta(days=2, hours=9)) == 2


def test_no_digest_when_disabled_or_nobody_to_tell(runtime, digest_shop, other_shop):
    at = last_nine_thirty()
    with runtime.db.session() as session:
        session.get(Shop, digest_shop.id).settings = {"voc": {"digest": {"enabled": False,
                                                                         "hour": 9}}}
        session.get(Shop, other_shop.id).settings = {"voc": {"digest": {"hour": 9}}}
        session.get(Shop, other_shop.id).timezone = "Asia/Seoul"
    # the other merchant has no owner on file and no recipients: nobody to send to
    assert send_due_digests(runtime, at) == 0
