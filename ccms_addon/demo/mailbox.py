"""The demo's outgoing mail, kept as files: an SMTP server on loopback that accepts every message
the add-on sends (acknowledgements, merchant notifications, follow-ups, digests) and writes each to
``var/demo-mail/`` as an ``.eml`` file a mail program opens.

Nothing leaves the machine, and the add-on's real mail path (``notifiers/email.py``: a kept SMTP
connection, exactly-once hand-over) is what runs. Used only when ``CCMS_SMTP_URL`` is unset.
"""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from pathlib import Path

#: the folder under the var dir where the messages land
FOLDER = "demo-mail"
#: the sender the demo shops' mail carries
DEMO_SENDER = "care@ccms-demo.test"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _SaveToFolder:
    """aiosmtpd handler: every message becomes ``<n>-<recipient>.eml``, numbered in arrival order."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        start = max((int(p.name.split("-", 1)[0]) for p in folder.glob("*.eml")
                     if p.name.split("-", 1)[0].isdigit()), default=0)
        self._numbers = itertools.count(start + 1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        recipient = re.sub(r"[^A-Za-z0-9@._-]", "_", (envelope.rcpt_tos or ["nobody"])[0])[:80]
        with self._lock:
            path = self.folder / f"{next(self._numbers):04d}-{recipient}.eml"
        content = envelope.original_content or envelope.content
        headers = (f"X-Demo-Envelope-From: {envelope.mail_from}\r\n"
                   f"X-Demo-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
                   f"X-Demo-Received: {time.strftime('%Y-%m-%d %H:%M:%S %z')}\r\n").encode()
        path.write_bytes(headers + (content if isinstance(content, bytes) else content.encode()))
        return "250 2.0.0 kept in " + path.name


class DemoMailbox:
    """The SMTP server of the demo (aiosmtpd's own thread); ``url`` is what ``CCMS_SMTP_URL``
    takes."""

    def __init__(self, var_dir: Path, host: str = "127.0.0.1"):
        from aiosmtpd.controller import Controller
        self.folder = var_dir / FOLDER
        self.host, self.port = host, _free_port(host)
        self.controller = Controller(_SaveToFolder(self.folder), hostname=host, port=self.port,
                                     ident="ccms-addon demo mailbox")

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> "DemoMailbox":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
