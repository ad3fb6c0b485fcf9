"""Real servers on loopback for mail and webhooks (shared by the suite): an SMTP server (aiosmtpd) that can be told to refuse,
stall or hang up at any step, an HTTP receiver that verifies the webhook signature the way a
receiver must, and a throw-away certificate authority for the TLS cases."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ccms_addon.notifiers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

SENDER = "care@ccms.test"
SMTP_USER = "relay-user"
SMTP_PASSWORD = "s3cret:p@ss"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccms test mail server")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    paths = Certificate(cert=folder / "cert.pem", key=folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


@pytest.fixture
def trusted(certificate, monkeypatch) -> Certificate:
    """The test certificate is the trust store (``SSL_CERT_FILE``, read by OpenSSL whenever a
    default context is made): the notifier verifies it exactly as it would a real one."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return certificate


# --------------------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------------------

#: what the mailbox can be told to do, by the step it happens at
SMTP_MODES = ("accept", "mail_451", "mail_550", "rcpt_450", "rcpt_550", "data_command_451",
              "data_command_554", "data_command_drop", "data_451", "data_554", "data_drop",
              "data_hang")


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts, or refuses, hangs up or stalls on demand."""

    def __init__(self):
        self.messages: list = []  # (envelope, session) of every message accepted
        self.mode = "accept"
        self.mail_from_seen: list[str] = []
        self.url = ""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_from_seen.append(address)
        if self.mode == "mail_451":
            return "451 4.3.2 System not accepting network messages"
        if self.mode == "mail_550":
            return "550 5.7.1 Sender rejected"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "rcpt_450":
            return "450 4.2.1 Mailbox busy, try later"
        if self.mode == "rcpt_550":
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mode == "data_451":
            return "451 4.3.0 Try again later"
        if self.mode == "data_554":
            return "554 5.6.0 Message refused"
        if self.mode == "data_drop":  # the content arrived, the answer never leaves
            server.transport.close()
            return "250 OK"
        if self.mode == "data_hang":
            await asyncio.sleep(5)
            return "250 OK"
        self.messages.append((envelope, session))
        return "250 Message accepted"

    def parsed(self) -> list:
        import email
        from email.policy import default
        return [email.message_from_bytes(env.original_content, policy=default)
                for env, _ in self.messages]


class ScriptedSMTP(SMTP):
    """aiosmtpd's server, with the DATA command itself refusable (the handler only sees DATA once
    the content has arrived)."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        mode = self.event_handler.mode
        if mode == "data_command_451":
            await self.push("451 4.3.0 Not now")
            return
        if mode == "data_command_554":
            await self.push("554 5.5.0 No DATA for you")
            return
        if mode == "data_command_drop":
            self.transport.close()
            return
        await super().smtp_DATA(arg)


class MailServer(Controller):
    def factory(self):
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)


def check_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def mail_server() -> Iterator[Callable[..., Mailbox]]:
    """Start SMTP servers on loopback: ``mail_server(**aiosmtpd options)`` → its :class:`Mailbox`
    (``.url`` is ``smtp://127.0.0.1:<port>``, ``smtps://`` when ``implicit_tls`` is given)."""
    controllers: list[Controller] = []

    def start(*, implicit_tls: ssl.SSLContext | None = None, **options) -> Mailbox:
        mailbox = Mailbox()
        port = free_port()
        controller = MailServer(mailbox, hostname="127.0.0.1", port=port,
                                ssl_context=implicit_tls, **options)
        controller.start()
        controllers.append(controller)
        mailbox.url = f"{'smtps' if implicit_tls else 'smtp'}://127.0.0.1:{port}"
        return mailbox

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(mail_server) -> Mailbox:
    """A plain SMTP server (no TLS, no AUTH)."""
    return mail_server()


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """What the loopback webhook receiver answers, and what it got.

    ``status`` is the answer (``"hang"``: read the request and never answer until released;
    ``"drop"``: read it and close the connection without a word); ``headers`` go with it.
    """

    secret: str = WEBHOOK_SECRET
    status: int | str = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep the test output quiet
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            verified = verify_signature(receiver.secret, self.headers.get(TIMESTAMP_HEADER), body,
                                        self.headers.get(SIGNATURE_HEADER))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body,
                                              verified))
            if receiver.status == "drop":
                self.close_connection = True
                return
            if receiver.status == "hang":
                receiver.release.wait(10)
                self.close_connection = True
                return
            status = receiver.status if verified else 401
            self.send_response(status)
            for name, value in receiver.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(receiver.body)))
            self.end_headers()
            self.wfile.write(receiver.body)

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server on loopback that checks every request's signature (401 when it fails)."""
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ccms"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)
