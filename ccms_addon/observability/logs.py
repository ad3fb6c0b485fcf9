"""Logs: one handler on the root logger, human text by default, JSON lines with ``CCMS_LOG_FORMAT=json``.

Every record passes two filters on that handler, whatever logger it came from (ours, Flask's,
werkzeug's, RQ's):

* :class:`ContextFilter` adds ``request_id`` (the ``X-Request-ID`` a load balancer set, else one
  made when the request logs its first line) and ``job_id`` (the RQ job being run);
* :class:`RedactFilter` replaces e-mail addresses and phone numbers in the message, its arguments,
  the exception text and any ``extra`` field with ``[email]`` / ``[phone]``.

The code logs ids, never contacts; the redaction is the net under that rule, so a shopper's
address that slips into an exception message still never reaches a log file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from datetime import datetime, timezone
from typing import IO

#: the environment variable that picks the format, and its values
LOG_FORMAT_ENV = "CCMS_LOG_FORMAT"
TEXT, JSON = "text", "json"
#: the human format (``make demo``, a developer's terminal)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the header a load balancer or proxy passes the request's id in
REQUEST_ID_HEADER = "X-Request-ID"
#: a request id taken from a header must look like one (it is written into every line)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: what stands in for what was removed
EMAIL_MARK, PHONE_MARK = "[email]", "[phone]"
#: gunicorn's own loggers do not propagate to the root: their handlers get our formatter instead
GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")

#: user@host.tld, also URL-encoded (user%40host.tld, as it appears in a logged query string)
_EMAIL = re.compile(r"[\w.!#$%'*+^`{|}~-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
#: a phone number written in groups: +82 10-1234-5678, 010-1234-5678, (555) 123-4567,
#: +1 555.123.4567, 03-1234-5678. Not inside a word, an id or a longer number.
_PHONE_GROUPED = re.compile(r"""
    (?<![\w.+/-])
    (?:\+\d{1,3}[ .-]?)?                    # country code
    (?:\(\d{1,4}\)[ .-]?|\d{1,4}[ .-])      # area or first group
    (?:\d{1,4}[ .-]){0,3}
    \d{3,4}
    (?![\w-]|\.\d)
""", re.VERBOSE)
#: a phone number in one run: +821012345678 (E.164, as Shopify sends it), or a national number
#: with its trunk 0 (01012345678, 09012345678). A bare run without either is left alone: it cannot
#: be told from an order or product id.
_PHONE_RUN = re.compile(r"(?<![\w.+/-])(?:\+\d{8,15}|0\d{8,10})(?![\w-]|\.\d)")
#: a phone has 9 to 15 digits (E.164's maximum); fewer is a date, a time, a version
_PHONE_DIGITS = range(9, 16)
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _phone(match: re.Match) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if digits not in _PHONE_DIGITS or _IPV4.fullmatch(text):
        return text
    return PHONE_MARK


def redact(text: str) -> str:
    """``text`` with every e-mail address and phone number replaced by a mark."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL_MARK, text)
    text = _PHONE_RUN.sub(PHONE_MARK, text)
    return _PHONE_GROUPED.sub(_phone, text)


#: the attributes every LogRecord has; anything else on a record came from ``extra=``
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "request_id", "job_id"}


def _redact_value(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


class RedactFilter(logging.Filter):
    """Removes e-mail addresses and phone numbers from a record before any handler formats it.

    The message is formatted here (``msg % args``) and redacted as a whole, so an address inside
    any argument — a string, an exception, an object's ``str`` — is caught."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_ccms_redacted", False):
            return True  # a second handler of ours sees the record already clean
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a bad format string must not raise in the caller
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                setattr(record, key, _redact_value(value))
        record._ccms_redacted = True
        return True


def current_request_id() -> str | None:
    """The id of the Flask request being served, or None outside a request."""
    from flask import g, has_request_context, request
    if not has_request_context():
        return None
    rid = g.get("request_id")
    if rid is None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.request_id = rid
    return rid


def current_job_id() -> str | None:
    """The id of the RQ job this work-horse is running, or None."""
    from rq import get_current_job
    job = get_current_job()
    return job.id if job is not None else None


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``job_id`` (None when there is none) to every record. Nothing is
    computed per request unless the request logs: the webhook path stays as lean as it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, find in (("request_id", current_request_id), ("job_id", current_job_id)):
            if not hasattr(record, key):
                try:
                    setattr(record, key, find())
                except Exception:  # noqa: BLE001 — logging never raises in the caller
                    setattr(record, key, None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (UTC, ISO 8601, ms), ``level``, ``logger``,
    ``message``, ``request_id`` / ``job_id`` when present, ``exception`` when there is one, then
    any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc)
                                 .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "job_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_") and key not in entry:
                entry[key] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format(environ=None) -> str:
    """The format ``CCMS_LOG_FORMAT`` asks for: ``text`` (default) or ``json``."""
    value = (os.environ if environ is None else environ).get(LOG_FORMAT_ENV, "").strip().lower()
    if value in ("", TEXT):
        return TEXT
    if value == JSON:
        return JSON
    raise ValueError(f"{LOG_FORMAT_ENV} must be 'text' or 'json', not {value!r}")


def make_formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == JSON else logging.Formatter(TEXT_FORMAT)


def configure_logging(fmt: str | None = None, *, level: int = logging.INFO,
                      stream: IO[str] | None = None, force: bool = False) -> logging.Handler | None:
    """Install the add-on's handler on the root logger and return it.

    Like ``logging.basicConfig``, it leaves a root logger that something else configured alone
    (a ``--log-config`` given to gunicorn, pytest's capture) unless ``force`` is set; calling it
    again replaces its own handler rather than adding a second one. ``fmt`` defaults to
    ``CCMS_LOG_FORMAT``; in JSON, gunicorn's own loggers in this process (which do not propagate)
    are switched to the same lines (its master's too with ``ccms_addon.observability.gunicorn_logging``)."""
    fmt = fmt or log_format()
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_ccms_handler", False)]
    if root.handlers and not ours and not force:
        return None
    for handler in ours:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._ccms_handler = True
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(make_formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    if fmt == JSON:
        for name in GUNICORN_LOGGERS:
            for gunicorn_handler in logging.getLogger(name).handlers:
                adopt_handler(gunicorn_handler)
    return handler


def adopt_handler(handler: logging.Handler) -> None:
    """Make a handler someone else installed write the add-on's JSON lines, redacted."""
    if not any(isinstance(f, RedactFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())
        handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter())
