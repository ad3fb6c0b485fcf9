"""The ``email`` channel: plain-text mail handed to an SMTP server.

Configuration comes from ``CCMS_SMTP_*`` (``settings_name = "smtp"``), overlaid with the shop's own
channel settings:

``url``
    ``smtp://[user:pass@]host[:port]`` (port 25), ``?starttls=1`` to upgrade the connection before
    anything else is said, or ``smtps://…`` (port 465) for TLS from the first byte. Certificates are
    verified against the system's trust store (``SSL_CERT_FILE`` points elsewhere).
``from``
    the sender, ``care@example.com`` or ``Acme Care <care@example.com>``.
``timeout``
    seconds one SMTP read or write may stall (:data:`SMTP_TIMEOUT` when unset).

What the server said decides the outcome (:mod:`ccms_addon.outbox`'s errors). Until the message's
content starts to travel — connecting, EHLO, STARTTLS, AUTH, MAIL, RCPT and the DATA command itself
— a failure proves that nothing was taken: a 4xx reply or a broken connection is
:class:`DeliveryDeferredError`, a 5xx reply :class:`DeliveryRejectedError`. Once the content is on
the wire, an explicit 4xx/5xx reply still proves it was refused, but a timeout or a dropped
connection does not: the server may have queued the mail before the line broke, so the outcome is
:class:`DeliveryOutcomeUnknownError` and the outbox never sends it again. A refused login and a
server without the STARTTLS or AUTH the URL asks for are :class:`NotifierConfigError`: retrying will
not help, fixing the settings will, and the message must not be lost as "rejected" meanwhile.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formataddr, formatdate, parseaddr
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from ccms_addon import hookimpl
from ccms_addon.outbox import (DeliveryDeferredError, DeliveryOutcomeUnknownError,
                               DeliveryRejectedError, NotifierConfigError, OutgoingMessage)

if TYPE_CHECKING:
    from ccms_addon.config import Settings

__all__ = ["DEFAULT_SENDER", "DEFAULT_SENDER_NAME", "EmailNotifier", "SMTP_TIMEOUT",
           "SmtpConfigError", "SmtpConnections", "SmtpSettings", "build_email", "envelope_address", "message_id",
           "register_notifiers", "send_email"]

#: seconds one SMTP read or write may stall before the attempt is abandoned
SMTP_TIMEOUT = 20.0
#: the envelope and header sender when ``from`` is not configured
DEFAULT_SENDER = "ccms-addon@localhost"
#: the display name of the sender when ``from`` gives none
DEFAULT_SENDER_NAME = "Customer care"
#: ports when the URL names none
SMTP_PORT = 25
SMTPS_PORT = 465
#: query parameters an SMTP URL may carry (anything else is a typo that could silently turn TLS off)
URL_OPTIONS = frozenset({"starttls"})
#: replies that mean the login or TLS set-up is wrong (RFC 4954 / RFC 3207), wherever they come:
#: 530 authentication or STARTTLS required, 534 mechanism too weak, 535 bad credentials,
#: 538 encryption required for the mechanism
CONFIG_REPLY_CODES = frozenset({530, 534, 535, 538})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
_LEADING_DOT = re.compile(rb"(?m)^\.")


class SmtpConfigError(NotifierConfigError):
    """``CCMS_SMTP_URL`` or ``CCMS_SMTP_FROM`` is missing or unusable."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to hand mail over. ``sender`` is the bare address (envelope and header)."""

    host: str
    port: int
    sender: str = DEFAULT_SENDER
    sender_name: str = DEFAULT_SENDER_NAME
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    implicit_tls: bool = False
    starttls: bool = False
    timeout: float = SMTP_TIMEOUT

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> "SmtpSettings":
        """Parse the channel configuration (keys ``url``, ``from``, ``timeout``).

        Raises :class:`SmtpConfigError` (a :class:`NotifierConfigError`) when ``url`` is missing or
        is not an ``smtp://``/``smtps://`` URL, or when ``from`` is not an address.
        """
        url = (config.get("url") or "").strip()
        if not url:
            raise SmtpConfigError("email is not configured: set CCMS_SMTP_URL "
                                  "(smtp://[user:pass@]host[:port] or smtps://…)")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname or port == -1:
            raise SmtpConfigError("CCMS_SMTP_URL must look like smtp://[user:pass@]host[:port] "
                                  "or smtps://[user:pass@]host[:port]")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - URL_OPTIONS)
        if unknown:
            raise SmtpConfigError(f"CCMS_SMTP_URL has unknown option(s) {', '.join(unknown)}; "
                                  "the only one is ?starttls=1")
        starttls_value = query.get("starttls", [""])[-1].strip().lower()
        if starttls_value not in _TRUE | _FALSE:
            raise SmtpConfigError("CCMS_SMTP_URL: starttls must be 1 or 0")
        implicit = parts.scheme == "smtps"
        starttls = starttls_value in _TRUE
        if implicit and starttls:
            raise SmtpConfigError("CCMS_SMTP_URL: smtps:// is TLS already; drop ?starttls=1")
        name, sender = _parse_sender(config.get("from"))
        return cls(host=parts.hostname, port=port or (SMTPS_PORT if implicit else SMTP_PORT),
                   sender=sender, sender_name=name,
                   user=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   implicit_tls=implicit, starttls=starttls,
                   timeout=_timeout(config.get("timeout")))

    @classmethod
    def from_settings(cls, settings: "Settings") -> "SmtpSettings | None":
        """The app-level settings (``CCMS_SMTP_*``, with ``CCMS_MAIL_FROM`` as the older name of
        the sender); ``None`` when no URL is set, so a caller can skip email quietly."""
        config = dict(settings.platform_settings("smtp"))
        if not (config.get("url") or "").strip():
            return None
        if not config.get("from"):
            mail_from = settings.platform_settings("mail").get("from")
            if mail_from:
                config["from"] = mail_from
        return cls.from_config(config)


def _parse_sender(value: str | None) -> tuple[str, str]:
    text = (value or "").strip()
    if not text:
        return DEFAULT_SENDER_NAME, DEFAULT_SENDER
    if "\r" in text or "\n" in text:
        raise SmtpConfigError("CCMS_SMTP_FROM must be one line")
    name, address = parseaddr(text)
    if not address or "@" not in address or not address.isascii() or " " in address:
        raise SmtpConfigError("CCMS_SMTP_FROM must be an address such as care@example.com or "
                              "'Acme Care <care@example.com>'")
    return name or DEFAULT_SENDER_NAME, address


def _timeout(value: str | None) -> float:
    if value is None or not str(value).strip():
        return SMTP_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 600:
        raise SmtpConfigError("CCMS_SMTP_TIMEOUT must be a number of seconds between 0 and 600")
    return seconds


def envelope_address(recipient: str) -> str:
    """The recipient as it goes into ``RCPT TO`` and ``To``: one line, ASCII, an IDN domain in
    its punycode form. Raises :class:`DeliveryRejectedError` for an address that can never be
    delivered this way (a line break, no ``@``, a non-ASCII local part: SMTPUTF8 is not used)."""
    address = (recipient or "").strip()
    local, at, domain = address.rpartition("@")
    if (not at or not local or not domain or any(c in address for c in "\r\n\t <>,;")
            or not local.isascii()):
        raise DeliveryRejectedError(f"not a deliverable email address: {address!r}")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise DeliveryRejectedError(f"not a deliverable email domain: {domain!r}") from None
    return f"{local}@{domain}"


def _classify(code: int, reply: bytes | str) -> Exception:
    """The error an explicit SMTP reply proves: 5xx refused for good, anything else not taken."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    detail = f"{code} {' '.join(text.split())}"
    if code in CONFIG_REPLY_CODES:
        return SmtpConfigError(f"the SMTP server refused the login or TLS set-up: {detail}")
    if 500 <= code < 600:
        return DeliveryRejectedError(detail)
    return DeliveryDeferredError(detail)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    try:
        if smtp.implicit_tls:
            return smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout,
                                    context=_tls_context())
        return smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    except smtplib.SMTPResponseException as exc:  # a 4xx/5xx greeting: not taking mail now
        raise DeliveryDeferredError(f"{smtp.host}:{smtp.port} answered "
                                    f"{exc.smtp_code} {_describe(exc)}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryDeferredError(f"cannot reach {smtp.host}:{smtp.port}: {_describe(exc)}"
                                    ) from None


def _envelope(client: smtplib.SMTP, smtp: SmtpSettings, recipient: str) -> None:
    """EHLO, STARTTLS, AUTH, MAIL, RCPT: nothing here can make the server take the message."""
    try:
        client.ehlo_or_helo_if_needed()
        if smtp.starttls:
            client.starttls(context=_tls_context())
            client.ehlo()
        if smtp.user:
            client.login(smtp.user, smtp.password or "")
    except smtplib.SMTPNotSupportedError as exc:
        raise SmtpConfigError(f"the SMTP server cannot do what CCMS_SMTP_URL asks: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        raise _classify(exc.smtp_code, exc.smtp_error) from None
    except smtplib.SMTPException as exc:
        if "authentication method" in str(exc):  # smtplib: no AUTH mechanism in common
            raise SmtpConfigError(f"the SMTP server's AUTH: {exc}") from None
        raise DeliveryDeferredError(_describe(exc)) from None
    except OSError as exc:
        raise DeliveryDeferredError(_describe(exc)) from None
    _mail_and_rcpt(client, smtp, recipient)


def _data(client: smtplib.SMTP, payload: bytes, handover: Callable[[], None]) -> None:
    """DATA, then the content; only a break after the content started travelling is "maybe".
    ``handover`` is called between the server's 354 and the first byte of content."""
    try:
        code, reply = client.docmd("DATA")
    except (OSError, smtplib.SMTPException) as exc:  # no content was sent: nothing can be queued
        raise DeliveryDeferredError(f"DATA: {_describe(exc)}") from None
    if code != 354:
        raise _classify(code, reply)
    try:
        handover()
    except BaseException:
        # the server waits for content: hang up (it then discards the transaction) instead of
        # a QUIT it would read as part of the message
        client.close()
        raise
    stuffed = _LEADING_DOT.sub(b"..", payload)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    try:
        client.send(stuffed + b".\r\n")
        code, reply = client.getreply()
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryOutcomeUnknownError(
            f"connection lost while the message was handed over: {_describe(exc)}") from None
    if 200 <= code < 300:
        return
    if 400 <= code < 600:  # an explicit answer to the end of DATA: the message was not queued
        raise _classify(code, reply)
    raise DeliveryOutcomeUnknownError(f"unexpected reply to the end of DATA: {code} {reply!r}")


def send_email(smtp: SmtpSettings, email_message: EmailMessage, recipient: str,
               handover: Callable[[], None] = lambda: None) -> None:
    """Hand ``email_message`` to the SMTP server for ``recipient``, telling apart "not taken" from
    "maybe taken" (see the module docstring). Returns only when the server accepted it.
    ``handover`` runs just before the content goes out (the outbox's point of no return).
    One connection per message; :class:`SmtpConnections` keeps them open between messages."""
    client = _connect(smtp)
    try:
        _transaction(client, smtp, email_message, recipient, handover, greeted=False)
    finally:
        _quit(client)


def _transaction(client: smtplib.SMTP, smtp: SmtpSettings, email_message: EmailMessage,
                 recipient: str, handover: Callable[[], None], *, greeted: bool) -> None:
    payload = email_message.as_bytes(policy=SMTP_POLICY)
    address = envelope_address(recipient)
    if greeted:  # EHLO, STARTTLS and AUTH were done when the connection was opened
        _mail_and_rcpt(client, smtp, address)
    else:
        _envelope(client, smtp, address)
    _data(client, payload, handover)


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


class _StaleConnection(Exception):
    """A kept connection the server had closed (idle timeout): nothing was said, open anew."""


class SmtpConnections:
    """SMTP connections kept open between the messages of one process (a job sending a batch),
    one per server setting, so each message after the first costs MAIL, RCPT and DATA only.

    A kept connection is used only by the process that opened it (a forked child starts
    afresh), only while younger than :data:`KEEP_IDLE` seconds of idleness, and only after a
    message that ended cleanly: any error closes it. If the server dropped it meanwhile, that is
    seen at ``MAIL`` — before anything could be taken — and the message goes on a new connection.
    """

    #: seconds a connection may wait for the next message (servers allow at least 5 minutes)
    KEEP_IDLE = 30.0

    def __init__(self) -> None:
        self._kept: dict[SmtpSettings, tuple[smtplib.SMTP, int, float]] = {}

    def send(self, smtp: SmtpSettings, email_message: EmailMessage, recipient: str,
             handover: Callable[[], None] = lambda: None) -> None:
        kept = self._take(smtp)
        if kept is not None:
            try:
                self._send_on(kept, smtp, email_message, recipient, handover, greeted=True)
                return
            except _StaleConnection:
                pass
        self._send_on(_connect(smtp), smtp, email_message, recipient, handover, greeted=False)

    def _send_on(self, client: smtplib.SMTP, smtp: SmtpSettings, email_message: EmailMessage,
                 recipient: str, handover: Callable[[], None], *, greeted: bool) -> None:
        try:
            if greeted:
                try:
                    client.rset()
                except (OSError, smtplib.SMTPException):
                    raise _StaleConnection() from None
            _transaction(client, smtp, email_message, recipient, handover, greeted=greeted)
        except BaseException:
            client.close()
            raise
        self._kept[smtp] = (client, os.getpid(), time.monotonic())

    def _take(self, smtp: SmtpSettings) -> smtplib.SMTP | None:
        kept = self._kept.pop(smtp, None)
        if kept is None:
            return None
        client, pid, since = kept
        if pid != os.getpid():  # inherited through fork: the parent's socket, never ours to use
            return None
        if time.monotonic() - since > self.KEEP_IDLE:
            _quit(client)
            return None
        return client

    def close(self) -> None:
        for client, pid, _ in self._kept.values():
            if pid == os.getpid():
                _quit(client)
        self._kept.clear()


def _mail_and_rcpt(client: smtplib.SMTP, smtp: SmtpSettings, recipient: str) -> None:
    try:
        code, reply = client.mail(smtp.sender)
        if code != 250:
            raise _classify(code, reply)
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            raise _classify(code, reply)
    except smtplib.SMTPResponseException as exc:
        raise _classify(exc.smtp_code, exc.smtp_error) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryDeferredError(_describe(exc)) from None


def _one_line(value: str | None) -> str:
    return " ".join((value or "").split())


def message_id(key: str, sender: str) -> str:
    """The ``Message-ID`` of the message with idempotency key ``key``: the same key gives the same
    id, so a receiving system that ever saw it twice can tell."""
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def build_email(smtp: SmtpSettings, message: OutgoingMessage) -> EmailMessage:
    """The mail for ``message``: plain text in UTF-8, never HTML (shopper text is shown verbatim).

    Raises :class:`DeliveryRejectedError` when the recipient cannot be an email address.
    """
    mail = EmailMessage(policy=SMTP_POLICY)
    mail["From"] = formataddr((_one_line(smtp.sender_name), smtp.sender))
    mail["To"] = envelope_address(message.recipient)
    mail["Subject"] = _one_line(message.subject)
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(message.key, smtp.sender)
    data = message.data or {}
    if data.get("in_reply_to"):  # a reply to the customer's own email: keep their thread
        mail["In-Reply-To"] = _one_line(data["in_reply_to"])
        mail["References"] = _one_line(data["in_reply_to"])
    if data.get("reply_to"):  # the shop's inbound address: an answer comes back as VOC
        mail["Reply-To"] = envelope_address(data["reply_to"])
    if not data.get("written_by_person"):
        mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.body, subtype="plain", charset="utf-8")
    if message.locale and _LANGUAGE_TAG.match(message.locale):  # after: set_content clears it
        mail["Content-Language"] = message.locale
    return mail


class EmailNotifier:
    """Sends :class:`OutgoingMessage` s of the ``email`` channel through ``CCMS_SMTP_URL``."""

    #: the channel messages are addressed to
    channel = "email"
    #: configuration comes from the ``CCMS_SMTP_*`` variables
    settings_name = "smtp"

    def __init__(self) -> None:
        self.connections = SmtpConnections()

    def send(self, message: OutgoingMessage, config: Mapping[str, str],
             handover: Callable[[], None] = lambda: None) -> None:
        """Send ``message`` once; see the module docstring for what each failure raises."""
        smtp = SmtpSettings.from_config(config)
        self.connections.send(smtp, build_email(smtp, message), message.recipient, handover)


@hookimpl
def register_notifiers() -> list[EmailNotifier]:
    return [EmailNotifier()]
