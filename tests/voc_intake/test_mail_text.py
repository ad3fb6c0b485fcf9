"""Reading inbound mail without a server: odd charsets, odd structures, and fuzzed input that must
never take the reader down."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccms_addon.voc import mail_text

HEAD = (b"From: =?utf-8?b?6rmA66-87KeA?= <minji@example.kr>\r\nTo: voc-k@in.test\r\n"
        b"Subject: test\r\nMessage-ID: <m1@example.kr>\r\n")


def read(raw: bytes) -> mail_text.InboundMail:
    return mail_text.read(mail_text.parse(raw))


def test_an_unknown_charset_keeps_the_text():
    mail = read(HEAD + b"Content-Type: text/plain; charset=x-made-up\r\n\r\n"
                + "배송 문의".encode() + b"\r\n")
    assert mail.body == "배송 문의" and mail.locale == "ko"


def test_a_lying_charset_does_not_lose_the_mail():
    mail = read(HEAD + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                + "注文の件".encode("utf-8") + b"\r\n")
    assert mail.body == "注文の件" and mail.locale == "ja"


def test_an_attachment_only_mail_takes_its_subject_as_body():
    raw = (HEAD + b"MIME-Version: 1.0\r\nContent-Type: image/jpeg; name=\"photo.jpg\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQSkZJRg==\r\n")
    mail = read(raw)
    assert mail.body == "test"
    assert [a.as_data() for a in mail.attachments] == [
        {"name": "photo.jpg", "type": "image/jpeg", "size": 10}]


def test_a_forwarded_message_is_one_attachment():
    raw = (HEAD + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee below\r\n"
           b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n"
           b"--b--\r\n")
    mail = read(raw)
    assert mail.body == "see below"
    assert [(a.name, a.content_type) for a in mail.attachments] == [("(unnamed)", "message/rfc822")]


def test_references_in_answer_order():
    raw = (HEAD.replace(b"Message-ID: <m1@example.kr>\r\n", b"")
           + b"In-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n\r\nhi\r\n")
    mail = read(raw)
    assert mail.message_id is None and mail.references == ("<b@x>", "<a@x>")


def test_the_script_decides_the_language():
    assert mail_text.guess_locale("", "안녕하세요 注文", None) == "ko"
    assert mail_text.guess_locale("", "ご注文ありがとう", None) == "ja"
    assert mail_text.guess_locale("", "订单", "cp949") == "ko"  # Han only: the charset says
    assert mail_text.guess_locale("", "hello", None) is None
    assert mail_text.guess_locale("ja-JP, en", "hello", None) == "ja"


def test_html_to_text_never_keeps_markup():
    assert mail_text.html_to_text(
        "<p>a<script>x()</script>b</p><style>.c{}</style><p>&lt;i&gt; &#54620;</p>") == "ab\n\n<i> 한"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_are_read_or_refused_cleanly(raw):
    message = mail_text.parse(raw)
    mail_text.ignore_reason(message, "a@example.kr")
    mail = mail_text.read(message)
    assert isinstance(mail.body, str) and len(mail.body) <= mail_text.MAX_BODY


HEADERS = st.sampled_from([
    b"Content-Type: multipart/alternative; boundary=\"", b"Content-Type: text/html; charset=\"",
    b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
    b"From: \"=?euc-kr?B?", b"Subject: =?iso-2022-jp?B?GyRC", b"Date: Mon, 99 Foo 2026",
    b"References: <<<>>>", b"Content-Disposition: attachment; filename*=utf-8''%ED%95",
    b"--b\r\n", b"\r\n\r\n", b"Auto-Submitted: ", b"Content-Language: \xff\xfe"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(HEADERS, st.binary(max_size=40)), max_size=20))
def test_mangled_mime_is_read_or_refused_cleanly(pieces):
    raw = HEAD + b"MIME-Version: 1.0\r\n" + b"\r\n".join(pieces)
    message = mail_text.parse(raw)
    mail_text.ignore_reason(message, "a@example.kr")
    mail_text.read(message)
