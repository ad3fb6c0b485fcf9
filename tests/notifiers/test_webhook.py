"""The webhook notifier against a real HTTP receiver on loopback that verifies every signature with
:func:`verify_signature`, as a receiver must; and each answer's classification."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ccms_addon.notifiers.webhook import (MIN_SECRET_LENGTH, USER_AGENT, WebhookNotifier,
                                          WebhookSettings, build_payload, sign, verify_signature)
from ccms_addon.outbox import (DeliveryDeferredError, DeliveryRejectedError, Notifier,
                               NotifierConfigError, OutgoingMessage)

from tests.loopback import WEBHOOK_SECRET, free_port

KOREAN = "[에이크미] 교환 신청이 접수되었습니다. 접수번호 ACME-000042"
JAPANESE = "ご注文の返品を受け付けました。"


def outgoing(**changes) -> OutgoingMessage:
    values = dict(key="program:free_return:42:shopper", shop_id=7, channel="webhook",
                  recipient="+82-10-1234-5678", subject="교환 접수", locale="ko",
                  body=f"{KOREAN}\n{JAPANESE}",
                  data={"purpose": "free_return", "reference": "ACME-000042",
                        "links": ["https://acme.test/r/ACME-000042"], "amount": Decimal("12900"),
                        "due": datetime(2024, 5, 1, 9, 30)})
    values.update(changes)
    return OutgoingMessage(**values)


def send(receiver, message=None, notifier=None, **config) -> None:
    (notifier or WebhookNotifier()).send(message or outgoing(),
                                         {"url": receiver.url, "secret": WEBHOOK_SECRET, **config})


# --------------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------------


def test_is_a_notifier_of_the_webhook_channel():
    notifier = WebhookNotifier()
    assert isinstance(notifier, Notifier)
    assert notifier.channel == "webhook" and notifier.settings_name == "webhook"
    assert notifier.timeout == (5.0, 15.0)


def test_a_signed_json_post_with_the_contract_headers(receiver):
    before = int(time.time())
    send(receiver)
    [request] = receiver.requests
    assert request.verified and request.path == "/hooks/ccms"
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == "program:free_return:42:shopper"
    assert headers["user-agent"] == USER_AGENT
    stamp = int(headers["x-ccms-timestamp"])
    assert before <= stamp <= time.time()
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + request.body,
                        hashlib.sha256).hexdigest()
    assert headers["x-ccms-signature"] == f"v1={expected}"
    document = json.loads(request.body)
    assert set(document) == {"id", "channel", "shop_id", "recipient", "subject", "body", "locale",
                             "data", "sent_at"}
    assert document["id"] == "program:free_return:42:shopper"
    assert (document["channel"], document["shop_id"], document["locale"]) == ("webhook", 7, "ko")
    assert document["recipient"] == "+82-10-1234-5678" and document["subject"] == "교환 접수"
    assert document["data"] == {"purpose": "free_return", "reference": "ACME-000042",
                                "links": ["https://acme.test/r/ACME-000042"], "amount": "12900",
                                "due": "2024-05-01T09:30:00Z"}
    assert datetime.strptime(document["sent_at"], "%Y-%m-%dT%H:%M:%SZ")


def test_korean_and_japanese_travel_as_utf8_unescaped(receiver):
    send(receiver)
    [request] = receiver.requests
    assert KOREAN.encode("utf-8") in request.body and JAPANESE.encode("utf-8") in request.body
    assert json.loads(request.body.decode("utf-8"))["body"] == f"{KOREAN}\n{JAPANESE}"


def test_the_shops_own_url_and_secret_are_used(receiver):
    receiver.secret = "shop-7-own-secret-abcdef"
    send(receiver, url=receiver.url.replace("/hooks/ccms", "/shop/7"), secret=receiver.secret)
    [request] = receiver.requests
    assert request.verified and request.path == "/shop/7"


def test_a_signature_made_with_another_secret_is_refused_by_the_receiver(receiver):
    receiver.secret = "not-the-secret-we-sign-with"
    with pytest.raises(DeliveryRejectedError, match="401"):
        send(receiver)
    assert receiver.requests[0].verified is False


def test_a_payload_json_cannot_carry_is_rejected_without_a_request(receiver):
    with pytest.raises(DeliveryRejectedError, match="JSON"):
        send(receiver, outgoing(data={"oops": object()}))
    assert receiver.requests == []


def test_build_payload_is_deterministic_for_a_given_moment():
    moment = datetime(2024, 5, 1, 0, 0, tzinfo=timezone.utc)
    assert build_payload(outgoing(), moment) == build_payload(outgoing(), moment)
    assert b'"sent_at":"2024-05-01T00:00:00Z"' in build_payload(outgoing(), moment)


# --------------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_accepted(receiver, status):
    receiver.status = status
    if status == 204:
        receiver.body = b""
    send(receiver)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_not_now_answers_are_deferred(receiver, status):
    receiver.status = status
    with pytest.raises(DeliveryDeferredError, match=str(status)) as caught:
        send(receiver)
    assert caught.value.retry_after is None


def test_retry_after_is_carried_by_a_deferral(receiver):
    receiver.status = 429
    receiver.headers = {"Retry-After": "120"}
    receiver.body = b'{"error":"slow down"}'
    with pytest.raises(DeliveryDeferredError, match=r"Retry-After: 120") as caught:
        send(receiver)
    assert caught.value.retry_after == 120.0
    assert "slow down" in str(caught.value)


def test_retry_after_as_an_http_date(receiver):
    receiver.status = 503
    receiver.headers = {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}
    with pytest.raises(DeliveryDeferredError, match="Retry-After: Wed, 21 Oct 2099") as caught:
        send(receiver)
    assert caught.value.retry_after > 3600


@pytest.mark.parametrize("status", [400, 403, 404, 410, 413, 422])
def test_other_4xx_are_rejected(receiver, status):
    receiver.status = status
    receiver.body = b'{"error":"recipient unknown"}'
    with pytest.raises(DeliveryRejectedError, match=rf"{status}.*recipient unknown"):
        send(receiver)


def test_a_redirect_is_not_followed_and_is_a_config_error(receiver):
    receiver.status = 308
    receiver.headers = {"Location": "https://elsewhere.test/hook"}
    with pytest.raises(NotifierConfigError, match="https://elsewhere.test/hook"):
        send(receiver)
    assert len(receiver.requests) == 1


def test_a_refused_connection_is_deferred():
    with pytest.raises(DeliveryDeferredError, match="connection failed"):
        WebhookNotifier().send(outgoing(), {"url": f"http://127.0.0.1:{free_port()}/h",
                                            "secret": WEBHOOK_SECRET})


def test_no_answer_is_deferred_because_the_receiver_deduplicates(receiver):
    """The request may have been acted on; Idempotency-Key makes the retry safe (the contract)."""
    receiver.status = "hang"
    started = time.monotonic()
    with pytest.raises(DeliveryDeferredError, match="safe to retry"):
        send(receiver, notifier=WebhookNotifier(read_timeout=0.5))
    assert time.monotonic() - started < 5
    assert receiver.requests[0].verified


def test_a_connection_dropped_after_sending_is_deferred(receiver):
    receiver.status = "drop"
    with pytest.raises(DeliveryDeferredError, match="connection failed"):
        send(receiver)
    assert len(receiver.requests) == 1


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://hooks.example.com/ccms", "http://127.0.0.1:8080/h",
                                 "http://127.8.9.10/h", "http://localhost:9000/h",
                                 "http://[::1]:9000/h"])
def test_accepted_urls(url):
    assert WebhookSettings.from_config({"url": url, "secret": WEBHOOK_SECRET}).url == url


@pytest.mark.parametrize("config, match", [
    ({"secret": WEBHOOK_SECRET}, "not configured"),
    ({"url": "ftp://hooks.example.com/x", "secret": WEBHOOK_SECRET}, "https://"),
    ({"url": "hooks.example.com/x", "secret": WEBHOOK_SECRET}, "https://"),
    ({"url": "http://hooks.example.com/x", "secret": WEBHOOK_SECRET}, "loopback"),
    ({"url": "http://10.0.0.5/x", "secret": WEBHOOK_SECRET}, "loopback"),
    ({"url": "https://u:p@hooks.example.com/x", "secret": WEBHOOK_SECRET}, "credentials"),
    ({"url": "https://hooks.example.com:99999/x", "secret": WEBHOOK_SECRET}, "port"),
    ({"url": "https://hooks.example.com/x"}, "SECRET"),
    ({"url": "https://hooks.example.com/x", "secret": "x" * (MIN_SECRET_LENGTH - 1)}, "SECRET"),
])
def test_unusable_settings_are_config_errors(receiver, config, match):
    with pytest.raises(NotifierConfigError, match=match):
        WebhookNotifier().send(outgoing(), config)
    assert receiver.requests == []


def test_the_secret_is_not_in_the_repr():
    assert WEBHOOK_SECRET not in repr(WebhookSettings.from_config(
        {"url": "https://h.example.com", "secret": WEBHOOK_SECRET}))


# --------------------------------------------------------------------------------------------------
# verify_signature, the receivers' helper
# --------------------------------------------------------------------------------------------------

BODY = '{"id":"k","body":"안녕하세요"}'.encode()
NOW = 1_714_550_000


def test_verify_signature_accepts_what_sign_makes():
    signature = sign(WEBHOOK_SECRET, NOW, BODY)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert verify_signature(WEBHOOK_SECRET, str(NOW), BODY, signature, now=NOW)
    assert verify_signature(WEBHOOK_SECRET, NOW, BODY.decode(), signature, now=NOW + 300)
    assert verify_signature(WEBHOOK_SECRET.encode(), str(NOW), BODY, signature, now=NOW - 300)


def test_verify_signature_accepts_one_of_several_during_a_rotation():
    header = f"v1={'0' * 64}, {sign(WEBHOOK_SECRET, NOW, BODY)}"
    assert verify_signature(WEBHOOK_SECRET, str(NOW), BODY, header, now=NOW)


@pytest.mark.parametrize("secret, timestamp, body, signature, now", [
    ("another-secret-0123456789", str(NOW), BODY, None, NOW),          # wrong key
    (WEBHOOK_SECRET, str(NOW), BODY + b" ", None, NOW),                # body changed
    (WEBHOOK_SECRET, str(NOW + 1), BODY, None, NOW),                   # timestamp changed
    (WEBHOOK_SECRET, str(NOW), BODY, None, NOW + 301),                 # too old: a replay
    (WEBHOOK_SECRET, str(NOW), BODY, None, NOW - 301),                 # from the future
    (WEBHOOK_SECRET, "17e8", BODY, None, NOW),                         # not digits
    (WEBHOOK_SECRET, None, BODY, None, NOW),                           # no timestamp header
    (WEBHOOK_SECRET, str(NOW), BODY, "", NOW),                         # no signature header
    (WEBHOOK_SECRET, str(NOW), BODY, "v0=abc", NOW),                   # another scheme
    (WEBHOOK_SECRET, str(NOW), BODY, "v1=한국", NOW),                   # not ASCII
    ("", str(NOW), BODY, None, NOW),                                   # no secret
])
def test_verify_signature_refuses(secret, timestamp, body, signature, now):
    if signature is None:
        signature = sign(WEBHOOK_SECRET, NOW, BODY)
    assert verify_signature(secret, timestamp, body, signature, now=now) is False


def test_verify_signature_tolerance_is_adjustable():
    signature = sign(WEBHOOK_SECRET, NOW, BODY)
    assert not verify_signature(WEBHOOK_SECRET, str(NOW), BODY, signature, now=NOW + 61,
                                tolerance=60)
    assert verify_signature(WEBHOOK_SECRET, str(NOW), BODY, signature, now=NOW + 60, tolerance=60)


def test_a_refused_handover_sends_no_request(receiver):
    from ccms_addon.outbox import HandoverRefusedError

    def refuse():
        raise HandoverRefusedError("taken over")

    with pytest.raises(HandoverRefusedError):
        WebhookNotifier().send(outgoing(), {"url": receiver.url, "secret": WEBHOOK_SECRET},
                               refuse)
    assert receiver.requests == []
