"""The merchant's email about a widget submission: a real SMTP server on loopback (aiosmtpd), a real
RQ worker in burst mode, the real store; exactly once whatever runs twice or breaks half-way."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from datetime import timedelta

import pytest
from rq import Worker
from sqlalchemy import select, update

from ccms_addon.config import Settings
from ccms_addon.jobs import notify
from ccms_addon.jobs.notify import (NOTIFICATIONS_QUEUE, enqueue_merchant_notification,
                                    message_key, notification_job_id, notify_merchant_of_voc,
                                    sweep_unnotified)
from ccms_addon.notifiers.email import SmtpConfigError, SmtpSettings
from ccms_addon.outbox import MAX_ATTEMPTS, delivery_job_id, sweep_due
from ccms_addon.queue import queue
from ccms_addon.store.models import (Merchant, OutboundMessage, OutboundStatus, VocChannel,
                                     VocItem, VocKind, utcnow)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from tests.loopback import free_port

MERCHANT_EMAIL = "owner@acme.test"
SENDER = "care@ccms.test"
SCRIPT = '<script>alert("x")</script> & <b>bold</b>'


@pytest.fixture
def settings(settings, smtp_server) -> Settings:
    """The suite's settings plus CCMS_SMTP_URL / CCMS_SMTP_FROM pointing at the loopback server."""
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER}})


@pytest.fixture
def shop(make_shop):
    # the merchant's email is the subject here: the shopper's acknowledgement (tested in
    # tests/voc_automation) is turned off so every message counted is the merchant's
    return make_shop("shopify", "acme.myshopify.com", name="Acme\r\nBcc: victim@x.test",
                     merchant=Merchant(name="Acme", email=MERCHANT_EMAIL),
                     settings={"voc": {"auto_acknowledge": False}}).shop


def widget_item(runtime, shop_id, body=SCRIPT, **kwargs) -> VocItem:
    new = NewVocItem(kind=VocKind.COMPLAINT, channel=kwargs.pop("channel", VocChannel.WIDGET),
                     body=body, actor="shopper", contact_email="shopper@example.com",
                     contact_phone="010-1234-5678", locale="ko", **kwargs)
    return record_voc_item(runtime, shop_id, new)


def run_worker(runtime) -> None:
    Worker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
           connection=runtime.redis).work(burst=True)


def outbound(runtime) -> list[OutboundMessage]:
    with runtime.db.session() as s:
        return s.scalars(select(OutboundMessage).order_by(OutboundMessage.id)).all()


def test_one_email_even_when_the_job_runs_twice(runtime, shop, smtp_server):
    item = widget_item(runtime, shop.id)
    enqueue_merchant_notification(runtime, item.id, shop_id=shop.id)
    enqueue_merchant_notification(runtime, item.id)  # the same deterministic job id, queued twice
    run_worker(runtime)
    assert notify_merchant_of_voc(item.id) == "sent"  # and once more, in this process
    assert len(smtp_server.messages) == 1
    envelope, _ = smtp_server.messages[0]
    assert envelope.mail_from == SENDER and envelope.rcpt_tos == [MERCHANT_EMAIL]
    [row] = outbound(runtime)
    assert row.idempotency_key == message_key(item.id) == f"voc-created:{item.id}:merchant"
    assert row.status is OutboundStatus.SENT and row.attempts == 1 and row.sent_at is not None
    assert row.recipient == MERCHANT_EMAIL and row.channel == "email"


def test_the_email_is_plain_text_with_the_shoppers_words_verbatim(runtime, shop, smtp_server):
    item = widget_item(runtime, shop.id)
    assert notify_merchant_of_voc(item.id) == "sent"
    [message] = smtp_server.parsed()
    assert message.get_content_type() == "text/plain" and not message.is_multipart()
    assert SCRIPT in message.get_content()
    assert item.reference in message["Subject"] and "\n" not in message["Subject"]
    assert message["Bcc"] is None  # the shop name's CR/LF did not become a header
    digest = hashlib.sha256(message_key(item.id).encode()).hexdigest()[:40]
    assert message["Message-ID"] == f"<{digest}@ccms.test>"
    assert "shopper@example.com" in message.get_content()


def test_a_row_found_delivering_is_parked_unknown_and_never_sent(runtime, shop, smtp_server):
    item = widget_item(runtime, shop.id)
    notify.MerchantNotifier(runtime).record(item.id, message_key(item.id))
    with runtime.db.engine.begin() as conn:  # a worker was sending the content when it died
        conn.execute(update(OutboundMessage).values(status=OutboundStatus.DELIVERING.value))
    assert notify_merchant_of_voc(item.id) == "unknown"
    assert notify_merchant_of_voc(item.id) == "unknown"
    assert smtp_server.messages == []
    assert outbound(runtime)[0].status is OutboundStatus.UNKNOWN


def test_a_row_left_sending_before_the_handover_is_taken_over_and_sent_once(runtime, shop,
                                                                           smtp_server):
    item = widget_item(runtime, shop.id)
    notify.MerchantNotifier(runtime).record(item.id, message_key(item.id))
    with runtime.db.engine.begin() as conn:  # claimed, then the worker died before DATA's 354
        conn.execute(update(OutboundMessage).values(status=OutboundStatus.SENDING.value,
                                                    attempts=1, claimed_at=utcnow()))
    assert sweep_due(runtime, now=utcnow() + timedelta(hours=1)) == 1
    assert notify_merchant_of_voc(item.id) == "sent"
    assert notify_merchant_of_voc(item.id) == "sent"
    assert len(smtp_server.messages) == 1 and outbound(runtime)[0].attempts == 2


def test_an_attempt_taken_over_before_its_handover_sends_nothing(runtime, shop, smtp_server):
    """Two deliverers race: the one whose claim was taken over is fenced off at the handover."""
    from ccms_addon.outbox import Outbox
    item = widget_item(runtime, shop.id)
    notify.MerchantNotifier(runtime).record(item.id, message_key(item.id))
    outbox = Outbox(runtime)
    notifier = outbox.notifiers["email"]
    original = notifier.send
    calls = []

    def slow_first_send(message, config, handover):
        if not calls:  # while the first attempt is before its point of no return, a second one
            calls.append("first")  # takes the row over and sends it
            assert outbox.deliver(message.key) == "sent"
        return original(message, config, handover)

    notifier.send = slow_first_send
    try:
        assert outbox.deliver(message_key(item.id)) == "superseded"
    finally:
        notifier.send = original
    assert len(smtp_server.messages) == 1
    assert outbound(runtime)[0].status is OutboundStatus.SENT


def test_a_connection_lost_during_data_is_unknown_and_not_resent(runtime, shop, smtp_server):
    item = widget_item(runtime, shop.id)
    smtp_server.mode = "data_drop"
    assert notify_merchant_of_voc(item.id) == "unknown"
    smtp_server.mode = "accept"
    assert notify_merchant_of_voc(item.id) == "unknown"
    assert smtp_server.messages == []


def test_a_deferral_is_retried_later_and_sent_once(runtime, shop, smtp_server):
    item = widget_item(runtime, shop.id)
    smtp_server.mode = "data_451"
    assert notify_merchant_of_voc(item.id) == "pending"
    [row] = outbound(runtime)
    assert row.attempts == 1 and row.next_attempt_at > utcnow() and "451" in row.error
    scheduled = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).scheduled_job_registry
    assert delivery_job_id(shop.id, message_key(item.id), 1) in scheduled.get_job_ids()
    smtp_server.mode = "accept"
    assert notify_merchant_of_voc(item.id) == "not_due"  # too early: nothing sent
    assert smtp_server.messages == []
    with runtime.db.engine.begin() as conn:
        conn.execute(update(OutboundMessage)
                     .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    assert notify_merchant_of_voc(item.id) == "sent"
    assert len(smtp_server.messages) == 1
    [row] = outbound(runtime)
    assert row.status is OutboundStatus.SENT and row.attempts == 2


def test_an_unreachable_server_is_a_deferral(runtime, shop, smtp_server):
    runtime.settings = dataclasses.replace(runtime.settings, platforms={
        **runtime.settings.platforms, "smtp": {"url": f"smtp://127.0.0.1:{free_port()}"}})
    item = widget_item(runtime, shop.id)
    assert notify_merchant_of_voc(item.id) == "pending"
    assert outbound(runtime)[0].attempts == 1


def test_a_refused_recipient_fails_for_good(runtime, shop, smtp_server):
    item = widget_item(runtime, shop.id)
    smtp_server.mode = "rcpt_550"
    assert notify_merchant_of_voc(item.id) == "failed"
    smtp_server.mode = "accept"
    assert notify_merchant_of_voc(item.id) == "failed"
    assert smtp_server.messages == [] and "550" in outbound(runtime)[0].error


def test_too_many_deferrals_fail(runtime, shop, smtp_server):
    item = widget_item(runtime, shop.id)
    notify.MerchantNotifier(runtime).record(item.id, message_key(item.id))
    with runtime.db.engine.begin() as conn:
        conn.execute(update(OutboundMessage).values(attempts=MAX_ATTEMPTS - 1))
    smtp_server.mode = "data_451"
    assert notify_merchant_of_voc(item.id) == "failed"


def test_a_merchant_without_email_is_skipped_with_a_log_line(runtime, make_shop, smtp_server,
                                                            caplog):
    shop = make_shop("cafe24", "nomail").shop
    item = widget_item(runtime, shop.id)
    with caplog.at_level(logging.INFO, logger="ccms_addon.jobs.notify"):
        assert notify_merchant_of_voc(item.id) == "no_recipient"
    assert "has no email" in caplog.text and outbound(runtime) == []


def test_without_smtp_nothing_is_sent(runtime, shop, smtp_server):
    runtime.settings = dataclasses.replace(runtime.settings, platforms={})
    item = widget_item(runtime, shop.id)
    assert notify_merchant_of_voc(item.id) == "not_configured"
    assert sweep_unnotified(runtime) == 0
    assert notify_merchant_of_voc(10 ** 9) == "not_configured"


def test_a_missing_item_does_nothing(runtime, smtp_server):
    assert notify_merchant_of_voc(10 ** 9) == "missing"


def test_the_sweeps_enqueue_lost_and_due_notifications(runtime, shop, make_shop, smtp_server):
    lost = widget_item(runtime, shop.id)
    sent = widget_item(runtime, shop.id)
    young = widget_item(runtime, shop.id)
    staff = widget_item(runtime, shop.id, channel=VocChannel.STAFF)
    silent = widget_item(runtime, make_shop("cafe24", "nomail").shop.id)
    ancient = widget_item(runtime, shop.id)
    assert notify_merchant_of_voc(sent.id) == "sent"
    now = utcnow()
    with runtime.db.engine.begin() as conn:
        conn.execute(update(VocItem).where(VocItem.id != young.id)
                     .values(created_at=now - timedelta(minutes=10)))
        conn.execute(update(VocItem).where(VocItem.id == ancient.id)
                     .values(created_at=now - timedelta(days=30)))
    q = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    q.empty()
    assert sweep_unnotified(runtime) == 1
    assert q.get_job_ids() == [notification_job_id(lost.shop_id, lost.id)]
    run_worker(runtime)
    assert len(smtp_server.messages) == 2
    assert sweep_unnotified(runtime) == 0
    assert {staff.id, silent.id, young.id, ancient.id}.isdisjoint(
        int(r.idempotency_key.split(":")[1]) for r in outbound(runtime))

    smtp_server.mode = "data_451"  # a deferred message comes back through the outbox's sweep
    assert notify_merchant_of_voc(young.id) == "pending"
    assert sweep_unnotified(runtime) == 0 and sweep_due(runtime) == 0
    assert sweep_due(runtime, now=utcnow() + timedelta(hours=1)) == 1


def test_smtp_settings_from_the_environment():
    env = {"CCMS_SECRET_KEY": "k", "CCMS_VAR_DIR": "/tmp/ccms-notify-test",
           "CCMS_SMTP_URL": "smtps://us%40er:p%3Ass@mail.example.com", "CCMS_MAIL_FROM": "a@b.test"}
    smtp = SmtpSettings.from_settings(Settings.from_env(env))
    assert (smtp.host, smtp.port, smtp.user, smtp.password) == ("mail.example.com", 465, "us@er",
                                                                "p:ss")
    assert smtp.implicit_tls and not smtp.starttls and smtp.sender == "a@b.test"
    env.update(CCMS_SMTP_URL="smtp://relay:2525?starttls=1", CCMS_SMTP_FROM="c@d.test")
    smtp = SmtpSettings.from_settings(Settings.from_env(env))
    assert (smtp.port, smtp.starttls, smtp.sender, smtp.user) == (2525, True, "c@d.test", None)
    env["CCMS_SMTP_URL"] = "http://relay"
    with pytest.raises(SmtpConfigError):
        SmtpSettings.from_settings(Settings.from_env(env))
    del env["CCMS_SMTP_URL"]
    assert SmtpSettings.from_settings(Settings.from_env(env)) is None


def test_the_sweep_parks_a_send_cut_off_mid_handover_and_never_resends_it(runtime, shop,
                                                                         smtp_server):
    item = widget_item(runtime, shop.id)
    notify.MerchantNotifier(runtime).record(item.id, message_key(item.id))
    with runtime.db.engine.begin() as conn:
        conn.execute(update(OutboundMessage).values(status=OutboundStatus.DELIVERING.value,
                                                    attempts=1, claimed_at=utcnow()))
    assert sweep_due(runtime) == 0  # a live attempt may still be sending: left alone
    assert outbound(runtime)[0].status is OutboundStatus.DELIVERING
    assert sweep_due(runtime, now=utcnow() + timedelta(hours=1)) == 0
    assert outbound(runtime)[0].status is OutboundStatus.UNKNOWN
    assert smtp_server.messages == []
