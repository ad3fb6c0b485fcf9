"""The SMTP server that receives the shops' VOC mail: ``ccms-addon mail-in``.

Point the MX record of ``CCMS_INBOUND_DOMAIN`` at it (or let the domain's mail server relay to
it). One message's conversation:

``RCPT TO``
    ``voc-<key>@<CCMS_INBOUND_DOMAIN>`` of an active shop: 250; any other address: ``550 5.1.1``
    (nothing is relayed); the store unreachable while the address is looked up: ``451 4.3.0``.
``SIZE`` / ``DATA``
    the server advertises ``SIZE`` and refuses a message over ``CCMS_INBOUND_MAX_BYTES``
    (:data:`DEFAULT_MAX_BYTES` when unset) with ``552``; its content is never kept in memory past
    the limit.
end of ``DATA``
    the message is read (:mod:`ccms_addon.voc.mail_text`) and recorded for each recipient shop
    (:func:`ccms_addon.voc.inbound.record_inbound_mail`); ``250`` only once the item or event is
    committed. A bounce, an auto-reply or bulk mail is answered ``250`` and dropped, so no loop of
    robots can start. A store failure answers ``451 4.3.0``: the sending server keeps the message
    and retries, and a retry of a message already recorded is recognised by its ``Message-ID``.

Store work runs on a small thread pool, never on the event loop that talks SMTP. STARTTLS is
offered when a certificate is given.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from ccms_addon.runtime import Runtime
from ccms_addon.voc import mail_text
from ccms_addon.voc.inbound import inbound_domain, record_inbound_mail, shop_for_address

log = logging.getLogger(__name__)

#: the largest message taken, in bytes, when ``CCMS_INBOUND_MAX_BYTES`` is unset
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: recipients one message may name (each one a shop's mailbox)
MAX_RECIPIENTS = 20
#: threads doing store work for the SMTP sessions
STORE_THREADS = 4

RCPT_OK = "250 2.1.5 Recipient OK"
NO_SUCH_MAILBOX = "550 5.1.1 No such mailbox here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
STORE_UNAVAILABLE = "451 4.3.0 Temporary failure, please try again later"
UNREADABLE = "554 5.6.0 The message could not be read"
DROPPED = "250 2.0.0 Accepted (automatic mail is not recorded)"


class VocMailHandler:
    """aiosmtpd handler: every decision of the module's conversation."""

    def __init__(self, runtime: Runtime, executor: ThreadPoolExecutor):
        self.runtime = runtime
        self.domain = inbound_domain(runtime)
        self.executor = executor

    async def _store(self, work: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(work, *args))

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TOO_MANY_RECIPIENTS
        try:
            shop_id = await self._store(self._shop_for, address)
        except SQLAlchemyError as exc:
            log.warning("inbound mail: the store is unreachable at RCPT: %s", type(exc).__name__)
            return STORE_UNAVAILABLE
        if shop_id is None:
            return NO_SUCH_MAILBOX
        envelope.rcpt_tos.append(address)
        return RCPT_OK

    async def handle_DATA(self, server, session, envelope) -> str:
        try:
            return await self._store(self._deliver, envelope.mail_from,
                                     list(envelope.rcpt_tos), envelope.original_content)
        except SQLAlchemyError as exc:
            log.warning("inbound mail: the store failed; the sender will retry: %s",
                        type(exc).__name__)
            return STORE_UNAVAILABLE
        except Exception:  # noqa: BLE001 — a fault of ours: the sender keeps it and retries
            log.exception("inbound mail: recording failed; the sender will retry")
            return STORE_UNAVAILABLE

    def _shop_for(self, address: str) -> int | None:
        with self.runtime.db.session() as session:
            return shop_for_address(session, address, self.domain)

    def _deliver(self, mail_from: str | None, recipients: list[str], raw: bytes) -> str:
        try:
            message = mail_text.parse(raw)
            reason = mail_text.ignore_reason(message, mail_from)
            mail = None if reason else mail_text.read(message)
        except Exception:  # noqa: BLE001 — a message the stdlib cannot take apart
            log.exception("inbound mail could not be read")
            return UNREADABLE
        if mail is None:
            log.info("inbound mail dropped: %s", reason)
            return DROPPED
        del raw, message  # not kept: what the item needs is in ``mail``
        shop_ids = list(dict.fromkeys(filter(None, map(self._shop_for, recipients))))
        if not shop_ids:  # every recipient's shop left between RCPT and DATA
            return NO_SUCH_MAILBOX
        recorded = [record_inbound_mail(self.runtime, shop_id, mail) for shop_id in shop_ids]
        for result in recorded:
            log.info("inbound mail %s item %s", result.outcome, result.item_id)
        return "250 2.0.0 Recorded " + " ".join(dict.fromkeys(r.reference for r in recorded))


class MailInServer:
    """The SMTP server on ``host:port`` (aiosmtpd's own thread and event loop); a context
    manager that stops it and its store threads on exit."""

    def __init__(self, runtime: Runtime, host: str = "127.0.0.1", port: int = 2525, *,
                 max_bytes: int | None = None, tls_context: ssl.SSLContext | None = None):
        if not inbound_domain(runtime):
            raise click.UsageError("set CCMS_INBOUND_DOMAIN: the domain of the shops' VOC "
                                   "addresses (voc-<key>@<domain>)")
        from aiosmtpd.controller import Controller
        self.executor = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="mail-in-store")
        self.handler = VocMailHandler(runtime, self.executor)
        self.max_bytes = max_bytes or max_bytes_of(runtime)
        self.controller = Controller(self.handler, hostname=host, port=port,
                                     data_size_limit=self.max_bytes, tls_context=tls_context,
                                     require_starttls=False, ident="ccms-addon mail-in")
        self.host, self.port = host, port

    def start(self) -> "MailInServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        self.executor.shutdown(wait=True)

    def __enter__(self) -> "MailInServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def max_bytes_of(runtime: Runtime) -> int:
    value = (runtime.settings.platform_settings("inbound").get("max_bytes") or "").strip()
    try:
        limit = int(value) if value else DEFAULT_MAX_BYTES
    except ValueError:
        raise click.UsageError("CCMS_INBOUND_MAX_BYTES must be a number of bytes") from None
    if limit < 1024:
        raise click.UsageError("CCMS_INBOUND_MAX_BYTES must be at least 1024")
    return limit


@click.command("mail-in")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2525, show_default=True, type=int,
              help="25 when it is the domain's MX itself.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="PEM certificate chain: offer STARTTLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False),
              help="The certificate's PEM private key.")
def mail_in(host: str, port: int, tls_cert: str | None, tls_key: str | None) -> None:
    """Receive the shops' VOC mail over SMTP (voc-<key>@CCMS_INBOUND_DOMAIN) until stopped."""
    from ccms_addon.config import Settings
    from ccms_addon.runtime import build_runtime, set_current
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("give both --tls-cert and --tls-key")
    tls = None
    if tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(tls_cert, tls_key)
    runtime = build_runtime(Settings.from_env())
    set_current(runtime)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with MailInServer(runtime, host, port, tls_context=tls):
            click.echo(f"mail-in listening on {host}:{port} for voc-*@{inbound_domain(runtime)} "
                       f"(pid {os.getpid()})", err=True)
            stop.wait()
    finally:
        runtime.close()
