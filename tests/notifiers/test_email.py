"""The email notifier against a real SMTP server on loopback (aiosmtpd): what arrives, and what each
way of failing is called — the line between "not taken" and "maybe taken" is the point."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from ccms_addon.config import Settings
from ccms_addon.notifiers.email import (DEFAULT_SENDER, SMTP_TIMEOUT, EmailNotifier,
                                        SmtpConfigError, SmtpSettings, build_email,
                                        envelope_address, send_email)
from ccms_addon.outbox import (DeliveryDeferredError, DeliveryOutcomeUnknownError,
                               DeliveryRejectedError, Notifier, NotifierConfigError,
                               OutgoingMessage)

from tests.loopback import SENDER, SMTP_PASSWORD, SMTP_USER, check_login, free_port

RECIPIENT = "owner@acme.test"
KOREAN = "주문하신 상품이 파손되어 도착했습니다. 교환 부탁드립니다."
JAPANESE = "注文した商品が届きません。確認をお願いします。"


def outgoing(**changes) -> OutgoingMessage:
    values = dict(key="voc-created:42:merchant", shop_id=7, channel="email", recipient=RECIPIENT,
                  subject="[에이크미] 새 불만 ACME-000042", locale="ko",
                  body=f"{KOREAN}\n{JAPANESE}\n\nReference: ACME-000042\n")
    values.update(changes)
    return OutgoingMessage(**values)


def config(server, **extra) -> dict[str, str]:
    return {"url": server.url, "from": SENDER, **extra}


def send(server, message=None, **extra) -> None:
    EmailNotifier().send(message or outgoing(), config(server, **extra))


# --------------------------------------------------------------------------------------------------
# What arrives
# --------------------------------------------------------------------------------------------------


def test_is_a_notifier_of_the_email_channel():
    notifier = EmailNotifier()
    assert isinstance(notifier, Notifier)
    assert notifier.channel == "email" and notifier.settings_name == "smtp"


def test_a_plain_text_utf8_mail_with_the_contract_headers(smtp_server):
    send(smtp_server)
    [(envelope, session)] = smtp_server.messages
    assert envelope.mail_from == SENDER and envelope.rcpt_tos == [RECIPIENT]
    [mail] = smtp_server.parsed()
    assert mail["From"] == f"Customer care <{SENDER}>"
    assert mail["To"] == RECIPIENT
    assert mail["Subject"] == "[에이크미] 새 불만 ACME-000042"
    digest = hashlib.sha256(b"voc-created:42:merchant").hexdigest()[:40]
    assert mail["Message-ID"] == f"<{digest}@ccms.test>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Content-Language"] == "ko"
    assert mail["Date"] is not None
    assert not mail.is_multipart() and mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "utf-8"
    assert KOREAN in mail.get_content() and JAPANESE in mail.get_content()
    raw = envelope.original_content
    assert all(byte < 128 for byte in raw)  # 7-bit on the wire: no server needs 8BITMIME
    assert KOREAN.encode() not in raw


def test_starttls_off_sends_in_the_clear_even_when_the_server_offers_it(mail_server, certificate):
    server = mail_server(tls_context=certificate.server_context())
    send(server)
    [(_, session)] = server.messages
    assert session.ssl is None


def test_the_message_id_is_the_same_for_the_same_key(smtp_server):
    send(smtp_server)
    send(smtp_server, outgoing(body="again"))
    send(smtp_server, outgoing(key="voc-created:43:merchant"))
    first, second, other = (mail["Message-ID"] for mail in smtp_server.parsed())
    assert first == second != other


def test_the_sender_may_carry_a_display_name(smtp_server):
    send(smtp_server, **{"from": "Acme 고객센터 <help@acme.test>"})
    [(envelope, _)] = smtp_server.messages
    [mail] = smtp_server.parsed()
    assert envelope.mail_from == "help@acme.test"
    assert mail["From"].addresses[0].display_name == "Acme 고객센터"
    assert mail["Message-ID"].endswith("@acme.test>")


def test_a_subject_cannot_smuggle_a_header(smtp_server):
    send(smtp_server, outgoing(subject="Hello\r\nBcc: victim@evil.test"))
    [mail] = smtp_server.parsed()
    assert mail["Bcc"] is None and mail["Subject"] == "Hello Bcc: victim@evil.test"


def test_a_line_starting_with_a_dot_arrives_intact(smtp_server):
    body = "first\n.\n.hidden\nlast\n"
    send(smtp_server, outgoing(body=body))
    [mail] = smtp_server.parsed()
    assert mail.get_content().splitlines() == body.splitlines()


def test_an_idn_domain_goes_out_in_punycode(smtp_server):
    send(smtp_server, outgoing(recipient="owner@예시.한국"))
    [(envelope, _)] = smtp_server.messages
    assert envelope.rcpt_tos == ["owner@xn--vv4b11d.xn--3e0b707e"]  # IDNA 2003, as browsers
    assert smtp_server.parsed()[0]["To"] == "owner@xn--vv4b11d.xn--3e0b707e"


def test_a_login_is_made_when_the_url_has_credentials(mail_server):
    server = mail_server(authenticator=check_login, auth_require_tls=False)
    url = server.url.replace("smtp://", f"smtp://{SMTP_USER}:s3cret%3Ap%40ss@")
    EmailNotifier().send(outgoing(), {"url": url, "from": SENDER})
    [(_, session)] = server.messages
    assert session.authenticated and session.auth_data.login == SMTP_USER.encode()
    assert SMTP_PASSWORD not in repr(SmtpSettings.from_config({"url": url}))


def test_starttls_upgrades_and_verifies_the_certificate(mail_server, trusted):
    server = mail_server(tls_context=trusted.server_context(), require_starttls=True)
    send(server, url=f"{server.url}?starttls=1")
    [(_, session)] = server.messages
    assert session.ssl is not None


def test_smtps_is_tls_from_the_first_byte(mail_server, trusted):
    server = mail_server(implicit_tls=trusted.server_context())
    send(server)
    assert len(server.messages) == 1


# --------------------------------------------------------------------------------------------------
# Not taken: retry later
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, code", [("mail_451", "451"), ("rcpt_450", "450"),
                                        ("data_command_451", "451"), ("data_451", "451")])
def test_a_4xx_reply_is_deferred(smtp_server, mode, code):
    smtp_server.mode = mode
    with pytest.raises(DeliveryDeferredError, match=code):
        send(smtp_server)
    assert smtp_server.messages == []


def test_a_server_that_cannot_be_reached_is_deferred():
    with pytest.raises(DeliveryDeferredError, match="cannot reach"):
        EmailNotifier().send(outgoing(), {"url": f"smtp://127.0.0.1:{free_port()}"})


def test_a_connection_dropped_at_the_data_command_is_deferred(smtp_server):
    """The content never left: nothing can have been queued, so this is not "unknown"."""
    smtp_server.mode = "data_command_drop"
    with pytest.raises(DeliveryDeferredError, match="DATA"):
        send(smtp_server)


def test_an_untrusted_certificate_is_deferred_and_nothing_is_sent(mail_server, certificate):
    server = mail_server(tls_context=certificate.server_context())
    with pytest.raises(DeliveryDeferredError, match="CERTIFICATE_VERIFY_FAILED"):
        send(server, url=f"{server.url}?starttls=1")
    assert server.messages == [] and server.mail_from_seen == []


# --------------------------------------------------------------------------------------------------
# Refused for good
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, code", [("mail_550", "550"), ("rcpt_550", "550"),
                                        ("data_command_554", "554"), ("data_554", "554")])
def test_a_5xx_reply_is_rejected(smtp_server, mode, code):
    smtp_server.mode = mode
    with pytest.raises(DeliveryRejectedError, match=code):
        send(smtp_server)
    assert smtp_server.messages == []


@pytest.mark.parametrize("recipient", ["no-at-sign", "a@b.test\r\nRCPT TO:<x@evil.test>",
                                       "two@a.test, three@b.test", "사용자@예시.한국", ""])
def test_an_undeliverable_address_is_rejected_before_connecting(smtp_server, recipient):
    with pytest.raises(DeliveryRejectedError, match="address"):
        send(smtp_server, outgoing(recipient=recipient))
    assert smtp_server.mail_from_seen == []


# --------------------------------------------------------------------------------------------------
# Maybe taken: never again
# --------------------------------------------------------------------------------------------------


def test_a_connection_dropped_after_the_content_is_unknown(smtp_server):
    smtp_server.mode = "data_drop"
    with pytest.raises(DeliveryOutcomeUnknownError, match="connection lost"):
        send(smtp_server)


def test_no_answer_after_the_content_is_unknown(smtp_server):
    smtp_server.mode = "data_hang"
    started = time.monotonic()
    with pytest.raises(DeliveryOutcomeUnknownError):
        send(smtp_server, timeout="0.5")
    assert time.monotonic() - started < 4


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def test_settings_from_the_url():
    smtp = SmtpSettings.from_config({"url": "smtp://u%40x:p%3Aw@mail.example.com:2525?starttls=1",
                                     "from": "care@example.com"})
    assert (smtp.host, smtp.port, smtp.user, smtp.password) == ("mail.example.com", 2525, "u@x",
                                                                "p:w")
    assert smtp.starttls and not smtp.implicit_tls and smtp.timeout == SMTP_TIMEOUT
    assert SmtpSettings.from_config({"url": "smtp://mail.example.com"}).port == 25
    implicit = SmtpSettings.from_config({"url": "smtps://mail.example.com"})
    assert implicit.port == 465 and implicit.implicit_tls and not implicit.starttls
    assert SmtpSettings.from_config({"url": "smtp://m.test"}).sender == DEFAULT_SENDER


@pytest.mark.parametrize("settings, match", [
    ({}, "not configured"),
    ({"url": "  "}, "not configured"),
    ({"url": "http://mail.example.com"}, "smtp://"),
    ({"url": "smtp://"}, "smtp://"),
    ({"url": "smtp://mail.example.com:99999"}, "smtp://"),
    ({"url": "smtp://mail.example.com?startls=1"}, "unknown option"),
    ({"url": "smtp://mail.example.com?starttls=maybe"}, "starttls"),
    ({"url": "smtps://mail.example.com?starttls=1"}, "TLS already"),
    ({"url": "smtp://m.test", "from": "not an address"}, "FROM"),
    ({"url": "smtp://m.test", "from": "a@b.test\r\nBcc: x@y.test"}, "one line"),
    ({"url": "smtp://m.test", "timeout": "soon"}, "TIMEOUT"),
])
def test_unusable_settings_are_config_errors(settings, match):
    with pytest.raises(NotifierConfigError, match=match):
        SmtpSettings.from_config(settings)
    with pytest.raises(NotifierConfigError):
        EmailNotifier().send(outgoing(), settings)


def test_from_settings_reads_ccms_smtp_and_falls_back_to_ccms_mail_from(tmp_path):
    env = {"CCMS_VAR_DIR": str(tmp_path), "CCMS_SECRET_KEY": "k"}
    assert SmtpSettings.from_settings(Settings.from_env(env)) is None
    smtp = SmtpSettings.from_settings(Settings.from_env({
        **env, "CCMS_SMTP_URL": "smtp://mail.test:2525", "CCMS_MAIL_FROM": "old@shop.test"}))
    assert (smtp.host, smtp.port, smtp.sender) == ("mail.test", 2525, "old@shop.test")
    with pytest.raises(SmtpConfigError):
        SmtpSettings.from_settings(Settings.from_env({**env, "CCMS_SMTP_URL": "mail.test"}))


def test_a_refused_login_is_a_config_error(mail_server):
    server = mail_server(authenticator=check_login, auth_require_tls=False)
    url = server.url.replace("smtp://", f"smtp://{SMTP_USER}:wrong@")
    with pytest.raises(NotifierConfigError, match="535"):
        EmailNotifier().send(outgoing(), {"url": url})
    assert server.messages == []


def test_credentials_for_a_server_without_auth_are_a_config_error(smtp_server):
    url = smtp_server.url.replace("smtp://", "smtp://user:pw@")
    with pytest.raises(NotifierConfigError, match="AUTH"):
        EmailNotifier().send(outgoing(), {"url": url})


def test_starttls_asked_of_a_server_without_it_is_a_config_error(smtp_server):
    with pytest.raises(NotifierConfigError, match="STARTTLS"):
        send(smtp_server, url=f"{smtp_server.url}?starttls=1")
    assert smtp_server.mail_from_seen == []


def test_a_server_that_requires_starttls_when_it_is_off_is_a_config_error(mail_server,
                                                                          certificate):
    server = mail_server(tls_context=certificate.server_context(), require_starttls=True)
    with pytest.raises(NotifierConfigError, match="530"):
        send(server)


# --------------------------------------------------------------------------------------------------
# The functions jobs.notify uses
# --------------------------------------------------------------------------------------------------


def test_build_email_and_send_email_are_usable_alone(smtp_server):
    smtp = SmtpSettings.from_config(config(smtp_server))
    smtp = dataclasses.replace(smtp, sender_name="Acme")
    send_email(smtp, build_email(smtp, outgoing(subject=None)), RECIPIENT)
    [mail] = smtp_server.parsed()
    assert mail["From"] == f"Acme <{SENDER}>" and mail["Subject"] == ""
    assert envelope_address("  owner@acme.test ") == "owner@acme.test"


# --------------------------------------------------------------------------------------------------
# The handover: the outbox's point of no return
# --------------------------------------------------------------------------------------------------


def test_the_handover_comes_after_the_354_and_before_the_content(smtp_server):
    seen = []

    def handover():
        seen.append(len(smtp_server.messages))

    EmailNotifier().send(outgoing(), config(smtp_server), handover)
    assert seen == [0] and len(smtp_server.messages) == 1


def test_a_refused_handover_sends_nothing_and_does_not_hang(smtp_server):
    from ccms_addon.outbox import HandoverRefusedError

    def refuse():
        raise HandoverRefusedError("taken over")

    with pytest.raises(HandoverRefusedError):
        EmailNotifier().send(outgoing(), config(smtp_server), refuse)
    assert smtp_server.messages == []


def test_no_handover_when_the_server_refuses_the_envelope(smtp_server):
    smtp_server.mode = "rcpt_550"
    seen = []
    with pytest.raises(DeliveryRejectedError):
        EmailNotifier().send(outgoing(), config(smtp_server), lambda: seen.append(1))
    assert seen == []


# --------------------------------------------------------------------------------------------------
# Connections kept between the messages of a batch
# --------------------------------------------------------------------------------------------------


def _peers(server) -> list:
    return [session.peer for _, session in server.messages]


def test_one_notifier_sends_a_batch_over_one_connection(smtp_server):
    notifier = EmailNotifier()
    for n in range(3):
        notifier.send(outgoing(key=f"k{n}"), config(smtp_server))
    assert len(smtp_server.messages) == 3 and len(set(_peers(smtp_server))) == 1
    notifier.connections.close()


def test_a_connection_the_server_dropped_is_replaced_before_anything_is_said(smtp_server):
    notifier = EmailNotifier()
    notifier.send(outgoing(key="first"), config(smtp_server))
    [(client, _, _)] = notifier.connections._kept.values()
    client.sock.shutdown(2)  # the server side is gone: the next RSET cannot be answered
    notifier.send(outgoing(key="second"), config(smtp_server))
    assert len(smtp_server.messages) == 2 and len(set(_peers(smtp_server))) == 2


def test_an_idle_connection_is_not_reused(smtp_server, monkeypatch):
    notifier = EmailNotifier()
    notifier.connections.KEEP_IDLE = 0.0
    notifier.send(outgoing(key="a"), config(smtp_server))
    time.sleep(0.01)
    notifier.send(outgoing(key="b"), config(smtp_server))
    assert len(set(_peers(smtp_server))) == 2


def test_a_failure_closes_the_kept_connection(smtp_server):
    notifier = EmailNotifier()
    notifier.send(outgoing(key="a"), config(smtp_server))
    smtp_server.mode = "rcpt_550"
    with pytest.raises(DeliveryRejectedError):
        notifier.send(outgoing(key="b"), config(smtp_server))
    assert notifier.connections._kept == {}
    smtp_server.mode = "accept"
    notifier.send(outgoing(key="c"), config(smtp_server))
    assert len(set(_peers(smtp_server))) == 2
