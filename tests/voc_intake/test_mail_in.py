"""Email in, end to end: smtplib → the real mail-in SMTP server on loopback → VOC items and events
in the store; our answers go out through the outbox to a second SMTP server, and the customer's
reply to them comes back into the item's thread."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import smtplib
import subprocess
import sys
import time
from datetime import timedelta
from email.header import Header
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from ccms_addon.outbox import Outbox
from ccms_addon.store.db import make_engine
from ccms_addon.store.models import (Merchant, OutboundMessage, Shop, ShopStatus, VocChannel,
                                     VocItem, VocKind, VocStatus, utcnow)
from ccms_addon.voc.inbound import (ensure_inbound_key, inbound_address_for, inbound_key_of,
                                    new_inbound_key)
from ccms_addon.voc.service import VocDesk
from tests.loopback import free_port
from tests.voc_intake.conftest import (ADDRESS, DOMAIN, KEY, MAX_BYTES, SHOPPER, events, items,
                                       message, send, wire)


def test_a_mail_becomes_an_item_with_its_thread(runtime, shop, mail_in):
    mail = message(message_id="<first-1@mail.example.kr>", Content_Language="ko-KR")
    assert send(mail_in, mail) == {}
    [item] = items(runtime)
    assert (item.shop_id, item.channel, item.kind) == (shop.id, "email", VocKind.INQUIRY)
    assert (item.contact_name, item.contact_email) == ("김민지", SHOPPER)
    assert (item.subject, item.body) == ("배송 문의", "주문한 셔츠가 아직 안 왔어요.")
    assert item.thread_ref == "<first-1@mail.example.kr>" and item.locale == "ko"
    assert item.category == "delivery"  # the shop's rules classified it
    [received] = events(runtime, item.id)
    assert received.type == "received" and received.actor == "shopper"
    assert received.data["message_id"] == "<first-1@mail.example.kr>"


def test_a_complaint_rule_makes_it_a_complaint(runtime, shop, mail_in):
    send(mail_in, message("받은 컵이 파손되어 왔습니다. 교환해 주세요.", subject="파손"))
    [item] = items(runtime)
    assert (item.kind, item.category, item.severity) == (VocKind.COMPLAINT, "quality", "high")


def test_the_answer_says_which_item_was_recorded(runtime, shop, mail_in):
    with smtplib.SMTP(mail_in.host, mail_in.port, timeout=10) as client:
        client.ehlo()
        assert "size" in client.esmtp_features
        client.mail(SHOPPER)
        assert client.rcpt(ADDRESS)[0] == 250
        code, answer = client.data(wire(message()))
    [item] = items(runtime)
    assert code == 250 and item.reference in answer.decode()


# --------------------------------------------------------------------------------------------------
# Charsets and languages
# --------------------------------------------------------------------------------------------------


def raw_mail(body: bytes, *, charset: str, cte: str, subject: str, subject_charset: str,
             language: str | None = None) -> bytes:
    """A message as Korean and Japanese mail programs write it: encoded-word subject, body bytes
    in the legacy charset."""
    head = [f"From: {Header('고객', 'utf-8').encode()} <{SHOPPER}>",
            f"To: {ADDRESS}",
            f"Subject: {Header(subject, subject_charset).encode()}",
            f"Message-ID: <{charset}-{cte}@mail.example>",
            "MIME-Version: 1.0",
            f"Content-Type: text/plain; charset={charset}",
            f"Content-Transfer-Encoding: {cte}"]
    if language:
        head.append(f"Content-Language: {language}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body + b"\r\n"


def _qp(text: str) -> bytes:
    import quopri
    return quopri.encodestring(text.encode("utf-8"))


CHARSET_CASES = {
    # EUC-KR as labelled, CP949 as written (똠 and 햏 are outside KS X 1001)
    "euc-kr 8bit": (lambda t: t.encode("cp949"), "euc-kr", "8bit",
                    "똠방각하 햏님, 주문한 상품이 안 왔어요.", "배송 문의", "euc-kr", "ko"),
    "ks_c_5601-1987 base64": (lambda t: base64.encodebytes(t.encode("cp949")), "ks_c_5601-1987",
                              "base64", "환불은 언제 되나요?", "환불", "euc-kr", "ko"),
    "iso-2022-jp 7bit": (lambda t: t.encode("iso2022_jp"), "ISO-2022-JP", "7bit",
                         "注文した商品がまだ届きません。確認してください。", "配送について",
                         "iso-2022-jp", "ja"),
    "shift_jis with NEC specials": (lambda t: t.encode("cp932"), "Shift_JIS", "8bit",
                                    "①番の商品が壊れていました。", "破損", "iso-2022-jp", "ja"),
    "utf-8 base64 japanese": (lambda t: base64.encodebytes(t.encode("utf-8")), "utf-8", "base64",
                              "サイズ交換はできますか？", "交換", "utf-8", "ja"),
    "utf-8 quoted-printable korean": (_qp, "utf-8", "quoted-printable",
                                      "색상이 사진과 달라요 = 교환 원합니다", "색상", "utf-8", "ko"),
}


@pytest.mark.parametrize("case", list(CHARSET_CASES))
def test_korean_and_japanese_mail_in_their_charsets(runtime, shop, mail_in, case):
    encode, charset, cte, text, subject, subject_charset, locale = CHARSET_CASES[case]
    send(mail_in, raw_mail(encode(text), charset=charset, cte=cte, subject=subject,
                           subject_charset=subject_charset))
    [item] = items(runtime)
    assert (item.body, item.subject, item.locale) == (text, subject, locale)
    assert item.contact_name == "고객"


def test_content_language_wins_over_the_script(runtime, shop, mail_in):
    send(mail_in, raw_mail("주문 확인 부탁드립니다".encode(), charset="utf-8", cte="8bit",
                           subject="Order", subject_charset="utf-8", language="en-US"))
    assert items(runtime)[0].locale == "en"


# --------------------------------------------------------------------------------------------------
# HTML, quotes, signatures, attachments
# --------------------------------------------------------------------------------------------------


def test_html_only_mail_is_stored_as_inert_text(runtime, shop, mail_in):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = SHOPPER, ADDRESS, "<b>urgent</b>"
    mail["Message-ID"] = "<html-1@mail.example.kr>"
    mail.set_content(
        "<html><head><style>p{color:red}</style><script>alert('head')</script></head><body>"
        "<p>배송이 <b>너무</b> 늦어요&nbsp;&amp; 연락도 없어요</p>"
        "<img src=x onerror=\"alert(1)\"><script>document.cookie</script>"
        "<div>Order&nbsp;#1001<br>Thanks</div>"
        "<div class=\"gmail_quote\"><blockquote>earlier <i>quoted</i> text</blockquote></div>"
        "</body></html>", subtype="html")
    send(mail_in, mail)
    [item] = items(runtime)
    assert item.body == "배송이 너무 늦어요 & 연락도 없어요\n\nOrder #1001\nThanks"
    assert "alert" not in item.body and "cookie" not in item.body and "quoted" not in item.body
    assert item.subject == "<b>urgent</b>"  # kept as the customer's text; every page escapes it


def test_quoted_reply_and_signature_are_trimmed(runtime, shop, mail_in):
    body = ("네, 목요일까지 기다릴게요.\n"
            "꼭 연락 주세요.\n\n"
            "-- \n김민지 드림\n010-1234-5678\n\n"
            "2026년 11월 20일 (금) 오전 10:00, K 상점 <care@ccms.test>님이 작성:\n"
            "> 안녕하세요, 배송이 늦어져 죄송합니다.\n> 목요일에 도착합니다.\n")
    send(mail_in, message(body))
    assert items(runtime)[0].body == "네, 목요일까지 기다릴게요.\n꼭 연락 주세요."


@pytest.mark.parametrize("quote", [
    "On Fri, Nov 20, 2026 at 10:00 AM K Shop <care@ccms.test> wrote:\n> We are sorry.\n",
    "-----Original Message-----\nFrom: K Shop\nSent: Friday\nSubject: Re\n\nWe are sorry.\n",
    "From: K Shop <care@ccms.test>\nSent: Friday, November 20, 2026 10:00\nTo: me\n\nSorry\n",
    "2026年11月20日(金) 10:00 K Shop <care@ccms.test>:\n> 申し訳ございません。\n",
    "\nSent from my iPhone\n",
])
def test_the_clients_quote_styles(runtime, shop, mail_in, quote):
    send(mail_in, message(f"Still waiting for my order.\n\n{quote}", subject="Re: order"))
    assert items(runtime)[0].body == "Still waiting for my order."


def test_a_mail_that_is_only_a_quote_keeps_its_text(runtime, shop, mail_in):
    send(mail_in, message("> 이 부분이 문제예요\n> 확인해 주세요"))
    assert items(runtime)[0].body == "> 이 부분이 문제예요\n> 확인해 주세요"


def test_attachments_are_listed_not_stored(runtime, shop, mail_in):
    mail = message("영수증과 사진을 첨부합니다.")
    receipt = b"%PDF-1.4 " + os.urandom(2000)
    mail.add_attachment(receipt, maintype="application", subtype="pdf", filename="영수증.pdf")
    mail.add_attachment(b"\x89PNG" + os.urandom(500), maintype="image", subtype="png",
                        filename="broken cup.png")
    send(mail_in, mail)
    [item] = items(runtime)
    assert item.body == "영수증과 사진을 첨부합니다."
    assert events(runtime, item.id)[0].data["attachments"] == [
        {"name": "영수증.pdf", "type": "application/pdf", "size": len(receipt)},
        {"name": "broken cup.png", "type": "image/png", "size": 504}]


# --------------------------------------------------------------------------------------------------
# Threads: replies to our messages come back to their item
# --------------------------------------------------------------------------------------------------


def deliver(runtime) -> None:
    with runtime.db.session() as s:
        keys = s.scalars(select(OutboundMessage.idempotency_key)
                         .where(OutboundMessage.status == "pending")).all()
    for key in keys:
        Outbox(runtime).deliver(key)


def test_a_reply_to_our_answer_joins_the_item_and_reopens_it(runtime, shop, mail_in, smtp_server):
    send(mail_in, message(message_id="<q-1@mail.example.kr>"))
    [item] = items(runtime)
    desk = VocDesk(runtime)
    desk.reply([shop.id], item.id, "staff:1:Lee", "목요일에 도착합니다.")
    deliver(runtime)
    [answer] = [m for m in smtp_server.parsed() if "답변" in m["Subject"]]  # ko reply subject
    assert answer["In-Reply-To"] == "<q-1@mail.example.kr>"
    assert answer["Reply-To"] == ADDRESS

    reply = message("목요일이 지났는데 아직이에요.", subject=f"Re: {answer['Subject']}",
                    message_id="<q-2@mail.example.kr>", In_Reply_To=answer["Message-ID"],
                    References=f"<q-1@mail.example.kr> {answer['Message-ID']}")
    with runtime.db.session() as s:  # the first answer's deadline long gone
        s.get(VocItem, item.id).respond_due_at = utcnow() - timedelta(days=3)
    send(mail_in, reply)
    send(mail_in, reply)  # the sending server retried: recorded once
    [again] = items(runtime)
    assert again.id == item.id and again.status is VocStatus.IN_PROGRESS
    assert again.respond_due_at > utcnow()  # owed an answer again, counted from now
    trail = [(e.type, e.from_status, e.to_status) for e in events(runtime, item.id)]
    assert trail[-1] == ("customer_message", "responded", "in_progress")
    assert [t for t, *_ in trail].count("customer_message") == 1
    assert events(runtime, item.id)[-1].note == "목요일이 지났는데 아직이에요."


def test_a_closed_item_is_reopened_by_a_reply_naming_its_reference(runtime, shop, mail_in):
    send(mail_in, message())
    [item] = items(runtime)
    desk = VocDesk(runtime)
    desk.reply([shop.id], item.id, "staff:1:Lee", "도착했습니다.", given_outside=True)
    desk.close([shop.id], item.id, "staff:1:Lee", ask_satisfaction=False)
    # no In-Reply-To (a new mail), but the subject names the item
    send(mail_in, message("상자가 찌그러져 있었어요", subject=f"{item.reference} 관련"))
    [again] = items(runtime)
    assert again.status is VocStatus.IN_PROGRESS and again.reopened_count == 1
    assert again.closed_at is None
    assert events(runtime, item.id)[-1].type == "customer_message"


def test_someone_else_replying_in_the_thread_opens_their_own_item(runtime, shop, mail_in):
    send(mail_in, message())
    [item] = items(runtime)
    send(mail_in, message("저도 같은 문제가 있어요", subject=f"Re: {item.reference}",
                          sender="other@example.kr", message_id="<o-1@example.kr>"),
         mail_from="other@example.kr")
    first, second = items(runtime)
    assert second.contact_email == "other@example.kr" and second.id != first.id
    assert [e.type for e in events(runtime, first.id)] == ["received"]


def test_a_retried_mail_is_recorded_once(runtime, shop, mail_in):
    mail = message(message_id="<retry-1@mail.example.kr>")
    send(mail_in, mail)
    send(mail_in, mail)
    assert len(items(runtime)) == 1


# --------------------------------------------------------------------------------------------------
# Loops, recipients, size, store failures
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers, mail_from", [
    ({"Auto_Submitted": "auto-replied"}, SHOPPER),
    ({"Precedence": "bulk"}, SHOPPER),
    ({"Precedence": "auto_reply"}, SHOPPER),
    ({"X_Autoreply": "yes"}, SHOPPER),
    ({}, ""),  # MAIL FROM:<>, a bounce
    ({}, "MAILER-DAEMON@mx.example.kr"),
    ({"Return_Path": "<>"}, SHOPPER),
])
def test_auto_replies_and_bounces_are_dropped(runtime, shop, mail_in, headers, mail_from):
    assert send(mail_in, message("부재중입니다. 11월 30일에 돌아옵니다.", **headers),
                mail_from=mail_from) == {}
    assert items(runtime) == []


def test_a_delivery_report_is_dropped(runtime, shop, mail_in):
    report = EmailMessage()
    report["From"], report["To"], report["Subject"] = f"Mail Delivery <{SHOPPER}>", ADDRESS, "x"
    report.set_content("Delivery failed")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; '
                          f'boundary="{report.get_boundary()}"')
    send(mail_in, report)
    assert items(runtime) == []


@pytest.mark.parametrize("recipient", [
    f"voc-unknown@{DOMAIN}", f"voc-{KEY}@elsewhere.test", f"{KEY}@{DOMAIN}",
    f"postmaster@{DOMAIN}"])
def test_unknown_recipients_are_refused_550(runtime, shop, mail_in, recipient):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(mail_in, message(to=recipient), to=[recipient])
    assert refused.value.recipients[recipient][0] == 550
    assert items(runtime) == []


def test_an_uninstalled_shop_takes_no_mail(runtime, shop, mail_in):
    with runtime.db.session() as s:
        s.get(Shop, shop.id).status = ShopStatus.UNINSTALLED
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(mail_in, message())


def test_case_and_plus_tags_reach_the_mailbox(runtime, shop, mail_in):
    recipient = f"VOC-{KEY.upper()}+kakao@{DOMAIN.upper()}"
    refused = send(mail_in, message(to=recipient), to=[recipient, f"voc-nobody@{DOMAIN}"])
    assert list(refused) == [f"voc-nobody@{DOMAIN}"] and len(items(runtime)) == 1


def test_one_mail_to_two_shops_makes_one_item_each(runtime, shop, mail_in, make_shop):
    other = make_shop("shopify", "other.myshopify.com",
                      merchant=Merchant(name="O", email="o@other.test")).shop
    with runtime.db.session() as s:
        other_address = inbound_address_for(runtime, s, s.get(Shop, other.id))
    send(mail_in, message(to=f"{ADDRESS}, {other_address}"), to=[ADDRESS, other_address])
    assert sorted(i.shop_id for i in items(runtime)) == sorted([shop.id, other.id])


def test_a_message_over_the_size_limit_is_refused_552(runtime, shop, mail_in):
    big = message("사진입니다\n" + ("가나다라마바사 " * 10 + "\n") * (MAX_BYTES // 100))
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # SIZE= declared: refused at MAIL
        send(mail_in, big)
    assert refused.value.smtp_code == 552
    with smtplib.SMTP(mail_in.host, mail_in.port, timeout=10) as client:  # no SIZE: after DATA
        client.ehlo()
        client.mail(SHOPPER)
        client.rcpt(ADDRESS)
        assert client.data(wire(big))[0] == 552
    assert items(runtime) == []


@contextlib.contextmanager
def store_down(runtime):
    """The store unreachable (a closed port) for the sessions the mail-in server opens."""
    live_engine = runtime.db.engine
    dead = make_engine("postgresql://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1})
    runtime.db.sessionmaker.configure(bind=dead)
    try:
        yield
    finally:
        runtime.db.sessionmaker.configure(bind=live_engine)
        dead.dispose()


def test_store_down_is_451_and_the_retry_is_recorded(runtime, shop, mail_in):
    mail = message(message_id="<down-1@mail.example.kr>")
    with store_down(runtime):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(mail_in, mail)
    assert refused.value.recipients[ADDRESS][0] == 451

    with smtplib.SMTP(mail_in.host, mail_in.port, timeout=10) as client:  # down after RCPT
        client.ehlo()
        client.mail(SHOPPER)
        assert client.rcpt(ADDRESS)[0] == 250
        with store_down(runtime):
            assert client.data(wire(mail))[0] == 451
    assert items(runtime) == []

    send(mail_in, mail)  # the sending server's retry: kept, once
    [item] = items(runtime)
    assert item.thread_ref == "<down-1@mail.example.kr>"


# --------------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------------


def test_every_shop_gets_its_own_key_on_first_use(runtime, make_shop):
    shops = [make_shop("shopify", f"s{i}.myshopify.com").shop for i in range(3)]
    with runtime.db.session() as s:
        rows = [s.get(Shop, made.id) for made in shops]
        assert all(row.inbound_key is None for row in rows)
        keys = [ensure_inbound_key(s, row) for row in rows]
        assert [ensure_inbound_key(s, row) for row in rows] == keys  # stable
        address = inbound_address_for(runtime, s, rows[0])
    assert len(set(keys)) == 3 and all(len(k) == 16 and k.isalnum() and k.islower() for k in keys)
    assert address == f"voc-{keys[0]}@{DOMAIN}"
    assert inbound_key_of(address.upper(), DOMAIN) == keys[0]
    with runtime.db.session() as s:
        assert s.get(Shop, shops[0].id).inbound_key == keys[0]


def test_a_key_already_given_is_never_replaced(runtime, shop):
    with runtime.db.session() as s:
        row = s.get(Shop, shop.id)
        assert ensure_inbound_key(s, row) == KEY
    assert new_inbound_key() != new_inbound_key()


def test_the_command_runs_the_server_until_stopped(runtime, shop, settings):
    """``ccms-addon mail-in`` as an operator starts it: a process of its own, on the same store."""
    port = free_port()
    env = {**os.environ, "CCMS_DATABASE_URL": settings.database_url,
           "CCMS_REDIS_URL": settings.redis_url, "CCMS_SECRET_KEY": settings.secret_key,
           "CCMS_VAR_DIR": str(settings.var_dir), "CCMS_INBOUND_DOMAIN": DOMAIN}
    process = subprocess.Popen([sys.executable, "-m", "ccms_addon.cli", "mail-in", "--port",
                                str(port)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
                    client.noop()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "mail-in did not start"
                time.sleep(0.2)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail(SHOPPER, [ADDRESS], wire(message()))
        [item] = items(runtime)
        assert item.channel == VocChannel.EMAIL.value
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        process.stderr.close()
