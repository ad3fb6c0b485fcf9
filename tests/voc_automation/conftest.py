"""VOC automation tests: a Korean shop (Asia/Seoul, default business hours Mon–Fri 09:00–18:00,
acknowledgement promised within 1 business hour), its team in three languages, mail to a real
SMTP server on loopback and jobs run by a real RQ worker."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from rq import SimpleWorker
from sqlalchemy import select

from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.staff import add_staff
from ccms_addon.store.models import (Merchant, OutboundMessage, Shop, StaffRole, VocChannel,
                                     VocEvent, VocItem, VocKind)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.service import VocDesk
from tests.browser.conftest import live_server  # noqa: F401 — shared fixture

SENDER = "care@ccms.test"
PUBLIC_URL = "https://care.example.test"
SHOPPER = "shopper@example.com"
MERCHANT_EMAIL = "boss@kshop.test"
SEOUL = ZoneInfo("Asia/Seoul")
#: the customer's words: markup and a second line, to be quoted verbatim and stay inert
WORDS = '배송이 너무 늦어요 <script>alert("x")</script> & <b>bold</b>\n두 번째 줄입니다.'


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, public_url=PUBLIC_URL, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER}})


@pytest.fixture
def shop(runtime, make_shop):
    new = make_shop("cafe24", "kshop", name="K 상점",
                    merchant=Merchant(name="K", email=MERCHANT_EMAIL),
                    settings={"widget": {"ack_promise_hours": 1}})
    with runtime.db.session() as session:
        row = session.get(Shop, new.shop.id)
        row.timezone, row.locale = "Asia/Seoul", "ko"
    return row


def set_voc_settings(runtime, shop_id: int, **values) -> None:
    with runtime.db.session() as session:
        row = session.get(Shop, shop_id)
        row.settings = {**row.settings, "voc": {**row.settings.get("voc", {}), **values}}


@pytest.fixture
def team(runtime, shop):
    """owner (ko), manager (ja), two agents (en, ko) and a viewer, by name."""
    people = {}
    with runtime.db.session() as session:
        for name, role, locale in (("owner", StaffRole.OWNER, "ko"),
                                   ("manager", StaffRole.MANAGER, "ja"),
                                   ("agent", StaffRole.AGENT, "en"),
                                   ("agent2", StaffRole.AGENT, "ko"),
                                   ("viewer", StaffRole.VIEWER, "en")):
            people[name] = add_staff(session, shop.merchant_id, f"{name}@kshop.test",
                                     name.title(), role, locale=locale)
    return people


def new_item(runtime, shop_id: int, **overrides):
    values = dict(kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body=WORDS, actor="shopper",
                  contact_email=SHOPPER, contact_name="김민수", locale="ko", severity="high")
    values.update(overrides)
    return record_voc_item(runtime, shop_id, NewVocItem(**values))


#: a comment that tries to leave its text box and run
XSS = '</textarea><script>alert("x")</script><img src=x onerror=alert(1)> & "quoted"'


def closed_item(runtime, shop, **overrides) -> VocItem:
    item = new_item(runtime, shop.id, **overrides)
    desk = VocDesk(runtime)
    desk.reply([shop.id], item.id, "staff:1:Kim", "새 상품을 보내드렸습니다.")
    return desk.close([shop.id], item.id, "staff:1:Kim", root_cause="courier lost the parcel")


@pytest.fixture
def link(runtime, shop, smtp_server) -> tuple[VocItem, str]:
    """A closed item and the path of the link its customer received by email."""
    item = closed_item(runtime, shop)
    run_worker(runtime)
    [mail] = [m for m in smtp_server.parsed() if "만족" in m["Subject"]]
    assert mail["To"] == SHOPPER
    url = re.search(rf"{re.escape(PUBLIC_URL)}/s/\S+", mail.get_content()).group(0)
    return item, url[len(PUBLIC_URL):]


def run_worker(runtime) -> None:
    """A real RQ worker in burst mode on the notifications queue (in this process)."""
    SimpleWorker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True, with_scheduler=False)


def outbound(runtime, prefix: str = "") -> list[OutboundMessage]:
    with runtime.db.session() as session:
        return session.scalars(select(OutboundMessage)
                               .where(OutboundMessage.idempotency_key.startswith(prefix))
                               .order_by(OutboundMessage.id)).all()


def events(runtime, item_id: int, type_: str | None = None) -> list[VocEvent]:
    with runtime.db.session() as session:
        query = select(VocEvent).where(VocEvent.voc_item_id == item_id)
        if type_:
            query = query.where(VocEvent.type == type_)
        return session.scalars(query.order_by(VocEvent.id)).all()


def friday_evening() -> datetime:
    """19:00 in Seoul on a Friday at least ten days ago (its weekend and Monday are past too)."""
    day = datetime.now(SEOUL).date() - timedelta(days=10)
    while day.weekday() != 4:
        day -= timedelta(days=1)
    return datetime.combine(day, time(19, 0), SEOUL).astimezone(timezone.utc)


def seoul(friday: datetime, days: int, clock: str) -> datetime:
    """``days`` after ``friday`` at ``clock`` (HH:MM[:SS]) Seoul time, in UTC."""
    local = (friday.astimezone(SEOUL) + timedelta(days=days)).date()
    return datetime.combine(local, time.fromisoformat(clock), SEOUL).astimezone(timezone.utc)
