"""Intake tests: a Korean shop with a VOC mailbox, the real mail-in SMTP server on loopback (fed by
smtplib), the outgoing SMTP server that receives our answers, and helpers to read the store."""

from __future__ import annotations

import dataclasses
import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest
from sqlalchemy import select

from ccms_addon.store.models import Merchant, Shop, VocEvent, VocItem
from ccms_addon.voc.mail_in import MailInServer
from tests.loopback import free_port

DOMAIN = "in.ccms.test"
SENDER = "care@ccms.test"
SHOPPER = "minji@example.kr"
KEY = "k1shopkey"
ADDRESS = f"voc-{KEY}@{DOMAIN}"
HOURS = {"timezone": "Asia/Seoul",
         "weekly": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}
#: the largest message the test server takes
MAX_BYTES = 64 * 1024


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER},
        "inbound": {"domain": DOMAIN, "max_bytes": str(MAX_BYTES)}})


@pytest.fixture
def shop(make_shop, runtime):
    made = make_shop("cafe24", "kshop", name="K 상점",
                     merchant=Merchant(name="K", email="owner@kshop.test")).shop
    with runtime.db.session() as s:
        row = s.get(Shop, made.id)
        row.timezone = "Asia/Seoul"
        row.locale = "ko"
        row.settings = {"widget": {"hours": HOURS, "ack_promise_hours": 2},
                        "voc": {"rules": [
                            {"keywords": ["배송", "late", "遅"], "category": "delivery"},
                            {"keywords": ["broken", "파손", "壊れ"], "category": "quality",
                             "severity": "high", "kinds": ["complaint"]}]}}
        row.inbound_key = KEY
    return made


@pytest.fixture
def mail_in(runtime, shop) -> Iterator[MailInServer]:
    """The real ``ccms-addon mail-in`` server, in this process, on the test's store."""
    with MailInServer(runtime, "127.0.0.1", free_port()) as server:
        yield server


def message(body: str = "주문한 셔츠가 아직 안 왔어요.", *, subject: str = "배송 문의",
            sender: str = f"김민지 <{SHOPPER}>", to: str = ADDRESS, charset: str = "utf-8",
            cte: str | None = None, **headers: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = headers.pop("message_id", f"<{abs(hash((body, subject)))}@mail.example.kr>")
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(body, charset=charset, cte=cte)
    return mail


def wire(mail: EmailMessage | bytes) -> bytes:
    """The message as it travels over SMTP: CRLF line ends."""
    raw = mail if isinstance(mail, bytes) else mail.as_bytes(policy=SMTP_POLICY)
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def send(server: MailInServer, mail: EmailMessage | bytes, *, mail_from: str = SHOPPER,
         to: list[str] | None = None) -> dict:
    """smtplib to the mail-in server; returns the refused recipients (raises what smtplib raises)."""
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        return client.sendmail(mail_from, to or [ADDRESS], wire(mail))


def items(runtime) -> list[VocItem]:
    with runtime.db.session() as s:
        return s.scalars(select(VocItem).order_by(VocItem.id)).all()


def events(runtime, item_id: int) -> list[VocEvent]:
    with runtime.db.session() as s:
        return s.scalars(select(VocEvent).where(VocEvent.voc_item_id == item_id)
                         .order_by(VocEvent.id)).all()
