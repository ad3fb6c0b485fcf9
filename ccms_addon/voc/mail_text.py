"""Reading one inbound email (stdlib :mod:`email`, ``policy.default``) into what a VOC item keeps.

* The body is the text/plain part, else the HTML part turned into plain text (tags dropped,
  ``script``/``style`` and quoted blocks skipped, entities decoded): nothing is ever kept as HTML.
  Charsets are decoded by their superset where mail software labels one and means the other
  (EUC-KR mail written in CP949, Shift_JIS in CP932), so Korean and Japanese mail arrives whole.
* The quoted earlier message ("On … wrote:", "…님이 작성:", Outlook's header block, ``>`` lines)
  and the signature (``-- ``, "Sent from my iPhone") are cut from the body; a message that is
  nothing but quote keeps its text rather than becoming empty.
* Attachments are listed by name, type and size; their content is not kept.
* :func:`ignore_reason` recognises what must never become an item or get an answer (bounces,
  auto-replies, bulk mail), so two robots cannot mail each other forever.

The raw message is not kept: the caller parses it in memory and drops it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Iterator

#: what a charset label is decoded as: the superset mail software actually writes under it
CHARSET_SUPERSETS = {
    "euc-kr": "cp949", "euc_kr": "cp949", "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949",
    "x-windows-949": "cp949", "windows-949": "cp949", "korean": "cp949",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "windows-31j": "cp932", "iso-2022-jp": "iso2022_jp_ext", "gb2312": "gb18030", "gbk": "gb18030",
    "us-ascii": "utf-8", "ascii": "utf-8",
}
#: charsets that say which language the mail is in when nothing else does
CHARSET_LOCALES = {"cp949": "ko", "euc_kr": "ko", "iso2022_kr": "ko", "johab": "ko",
                   "cp932": "ja", "shift_jis": "ja", "euc_jp": "ja", "iso2022_jp": "ja",
                   "iso2022_jp_ext": "ja", "iso2022_jp_2": "ja"}
#: ``Precedence`` values of mail no person wrote to us
AUTOMATIC_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
#: headers auto-responders set (besides ``Auto-Submitted``)
AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
#: senders that are machines reporting on mail, never people
MACHINE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
#: at most this many attachments are listed (a mail bomb of tiny parts lists no more)
MAX_ATTACHMENTS = 50
MAX_BODY = 20_000

_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")
_REFERENCE = re.compile(r"\bVOC-\d{4}-\d{6}\b")
_LANGUAGE = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    size: int

    def as_data(self) -> dict:
        return {"name": self.name, "type": self.content_type, "size": self.size}


@dataclass(frozen=True)
class InboundMail:
    """What an inbound message contributes to the store."""

    body: str
    subject: str | None
    from_name: str | None
    from_email: str | None
    message_id: str | None
    #: the Message-IDs it answers (In-Reply-To, then References), as ``<id>``
    references: tuple[str, ...]
    locale: str | None
    attachments: tuple[Attachment, ...]
    sent_at: datetime | None

    @property
    def reference_in_subject(self) -> str | None:
        """A ``VOC-YYYY-NNNNNN`` the subject carries (a customer answering our message)."""
        found = _REFERENCE.search(self.subject or "")
        return found.group(0) if found else None


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)


def ignore_reason(message: Message, envelope_sender: str | None) -> str | None:
    """Why ``message`` must be dropped unanswered (a bounce, an auto-reply, bulk mail), or None.

    ``envelope_sender`` is the SMTP ``MAIL FROM`` (empty for a bounce, RFC 5321 §4.5.5)."""
    sender = (envelope_sender or "").strip().strip("<>")
    if not sender:
        return "bounce: empty return path"
    if sender.partition("@")[0].lower() in MACHINE_SENDERS:
        return "bounce: sent by the mail system"
    if _header(message, "Return-Path").strip() == "<>":
        return "bounce: empty Return-Path"
    if message.get_content_type() == "multipart/report":
        return "bounce: delivery or read report"
    auto = _header(message, "Auto-Submitted").strip().lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"automatic: Auto-Submitted {auto.split(';')[0].strip()}"
    if _header(message, "Precedence").strip().lower() in AUTOMATIC_PRECEDENCE:
        return "automatic: Precedence " + _header(message, "Precedence").strip().lower()
    if any(_header(message, name) for name in AUTOREPLY_HEADERS):
        return "automatic: auto-responder header"
    from_local = (_from_address(message)[1] or "").partition("@")[0].lower()
    if from_local in MACHINE_SENDERS:
        return "bounce: From the mail system"
    return None


def read(message: EmailMessage) -> InboundMail:
    """The parts of ``message`` a VOC item keeps (see the module)."""
    body_part = _body_part(message)
    text, charset = ("", None)
    if body_part is not None:
        text, charset = _decode(body_part)
        if body_part.get_content_subtype() == "html":
            text = html_to_text(text)
    text = _normalise(text)
    subject = _one_line(_header(message, "Subject")) or None
    body = (trim_reply(text) or subject or "")[:MAX_BODY]
    name, address = _from_address(message)
    return InboundMail(
        body=body, subject=subject[:300] if subject else None, from_name=name, from_email=address,
        message_id=_first_id(_header(message, "Message-ID")),
        references=tuple(dict.fromkeys(
            _MESSAGE_ID.findall(_header(message, "In-Reply-To"))
            + list(reversed(_MESSAGE_ID.findall(_header(message, "References")))))),
        locale=guess_locale(_header(message, "Content-Language"), f"{subject or ''}\n{body}",
                            charset),
        attachments=tuple(_attachments(message, body_part)),
        sent_at=_date(_header(message, "Date")))


# --------------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    """A header as text; a header the parser could not make sense of is treated as absent."""
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # policy.default raises on some malformed ones
        return ""
    return str(value) if value is not None else ""


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _from_address(message: Message) -> tuple[str | None, str | None]:
    try:
        header = message.get("From")
        addresses = getattr(header, "addresses", ()) if header is not None else ()
    except (ValueError, IndexError, TypeError):
        return None, None
    for address in addresses:
        email = (address.addr_spec or "").strip()
        if "@" in email and len(email) <= 320 and not any(c in email for c in "\r\n<>"):
            return (_one_line(address.display_name or "")[:200] or None), email
    return None, None


def _first_id(value: str) -> str | None:
    found = _MESSAGE_ID.search(value)
    return found.group(0) if found else None


def _date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        return None
    return when if when is not None and when.tzinfo is not None else None


# --------------------------------------------------------------------------------------------------
# Body
# --------------------------------------------------------------------------------------------------


def _body_part(message: EmailMessage) -> EmailMessage | None:
    try:
        return (message.get_body(preferencelist=("plain",))
                or message.get_body(preferencelist=("html",)))
    except (KeyError, ValueError, IndexError, TypeError):  # a malformed MIME tree
        return None


def _decode(part: Message) -> tuple[str, str | None]:
    """The part's text and the codec that read it: the labelled charset's superset, the label
    itself, then UTF-8; an unknown or lying label never loses the text (replacement characters)."""
    payload = part.get_payload(decode=True) or b""
    label = (part.get_content_charset() or "us-ascii").strip().lower()
    candidates = [CHARSET_SUPERSETS.get(label, label), label, "utf-8"]
    for name in dict.fromkeys(candidates):
        try:
            codec = codecs.lookup(name).name
            return payload.decode(codec), codec
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", errors="replace"), None


def _normalise(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    joined = "\n".join(lines).replace("\u00a0", " ").replace("\x00", "")
    return re.sub(r"\n{3,}", "\n\n", joined).strip()


class _TextExtractor(HTMLParser):
    """HTML → plain text. Never renders anything: tags are dropped, their text kept."""

    SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe",
                      "object", "svg", "blockquote"})
    BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
                       "table", "ul", "ol", "hr", "section", "article", "header", "footer",
                       "address", "dd", "dt"})
    #: markers of a quoted earlier message in mail clients' HTML (Gmail, Yahoo, Outlook)
    QUOTE_MARKERS = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "divrplyfwdmsg",
                     "appendonsend")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self._skipping:
            self._depth += tag == self._skipping
            return
        marker = " ".join(f"{value}" for name, value in attrs if name in ("class", "id")).lower()
        if tag in self.SKIP or (tag == "div" and any(m in marker for m in self.QUOTE_MARKERS)):
            self._skipping, self._depth = tag, 1
            return
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if not self._skipping and tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping:
                self._depth -= 1
                if self._depth <= 0:
                    self._skipping = None
            return
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(re.sub(r"[ \t\r\n\f]+", " ", data))


def html_to_text(html: str) -> str:
    """The text of an HTML mail body, as plain text (see :class:`_TextExtractor`)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


#: the line that introduces a quoted earlier message, in the clients' English, Korean, Japanese
_ATTRIBUTION = [
    re.compile(r"^On\b.{4,300}\bwrote:$", re.S),
    re.compile(r"^.{4,300}님이 작성(?:하였습니다|했습니다)?:$", re.S),
    # Gmail in other languages: "2024年5月1日(水) 10:00 山田 <taro@example.com>:"
    re.compile(r"^.{4,300}<[^<>\s]+@[^<>\s]+>\s*(?:wrote\s*)?:$", re.S),
    re.compile(r"^-{2,}\s*(?:Original Message|Forwarded message|원본 메시지|전달된 메시지|"
               r"元のメッセージ|転送されたメッセージ)\s*-{2,}$", re.I),
    re.compile(r"^_{10,}$"),
]
#: Outlook's quoted header block: a From line followed by a Sent/Date line
_HEADER_FROM = re.compile(r"^\*?(?:From|보낸 사람|差出人|送信者)\*?\s*:", re.I)
_HEADER_SENT = re.compile(r"^\*?(?:Sent|Date|보낸 날짜|날짜|送信日時|日付)\*?\s*:", re.I)
_MOBILE_SIGNATURE = re.compile(r"^(?:Sent from my .{1,40}|.{1,30}에서 보냄|.{1,30}から送信)$",
                               re.I)


def trim_reply(text: str) -> str:
    """``text`` without the quoted earlier message and the signature; the whole text when
    nothing else is left."""
    lines = text.split("\n")
    cut = len(lines)
    for index, line in enumerate(lines):
        stripped = line.strip()
        joined = f"{stripped} {lines[index + 1].strip()}" if index + 1 < len(lines) else stripped
        if any(p.match(stripped) or p.match(joined) for p in _ATTRIBUTION):
            cut = index
            break
        if _HEADER_FROM.match(stripped) and any(
                _HEADER_SENT.match(following.strip()) for following in lines[index + 1:index + 4]):
            cut = index
            break
        if line == "-- " or stripped == "--":
            cut = index
            break
    kept = [line for line in lines[:cut] if not line.lstrip().startswith(">")]
    while kept and (not kept[-1].strip() or _MOBILE_SIGNATURE.match(kept[-1].strip())):
        kept.pop()
    result = "\n".join(kept).strip()
    return result or text.strip()


# --------------------------------------------------------------------------------------------------
# Attachments and language
# --------------------------------------------------------------------------------------------------


def _leaves(part: Message) -> Iterator[Message]:
    """Every non-multipart part; an attached message is one part, not opened."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for sub in part.get_payload():
            yield from _leaves(sub)
    else:
        yield part


def _attachments(message: EmailMessage, body_part: Message | None) -> Iterator[Attachment]:
    count = 0
    for part in _leaves(message):
        if part is body_part:
            continue
        name = part.get_filename()
        disposition = part.get_content_disposition()
        if (not name and disposition != "attachment"
                and part.get_content_type() in ("text/plain", "text/html")):
            continue  # the other alternative of the body
        if part.get_content_maintype() == "message":
            size = len(part.as_bytes())
        else:
            size = len(part.get_payload(decode=True) or b"")
        yield Attachment(_one_line(name or "")[:200] or "(unnamed)", part.get_content_type(), size)
        count += 1
        if count >= MAX_ATTACHMENTS:
            return


def guess_locale(content_language: str, text: str, codec: str | None) -> str | None:
    """The mail's language: its ``Content-Language``, else its script (Hangul → ko, Kana → ja),
    else what its charset implies; None when nothing says."""
    first = content_language.split(",")[0].strip()
    match = _LANGUAGE.match(first)
    if match:
        return match.group(1).lower()
    hangul = sum(1 for c in text if "\uac00" <= c <= "\ud7a3" or "\u1100" <= c <= "\u11ff"
                 or "\u3130" <= c <= "\u318f")
    kana = sum(1 for c in text if "\u3040" <= c <= "\u30ff" or "\uff66" <= c <= "\uff9f")
    if hangul or kana:
        return "ko" if hangul >= kana else "ja"
    return CHARSET_LOCALES.get(codec or "")
