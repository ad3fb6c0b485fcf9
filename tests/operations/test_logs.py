"""Logs: JSON lines with the fields an operator searches by, and no e-mail address or phone."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest
from rq import Worker

from ccms_addon.observability.logs import (JSON, TEXT, ContextFilter, RedactFilter,
                                           configure_logging, log_format, redact)
from ccms_addon.queue import DELIVERIES_QUEUE, queue
from tests.operations.jobs import log_from_a_job

#: what must never be found in a log line (looser than the filter: a check, not the filter again)
EMAILISH = re.compile(r"[\w.+-]+(@|%40)[\w-]+\.[\w.]+")
PHONES = ["+82 10-1234-5678", "010-1234-5678", "01012345678", "+821012345678", "(555) 123-4567",
          "555-123-4567", "+1 555.123.4567", "03-1234-5678", "090-1234-5678", "+81 90 1234 5678"]
EMAILS = ["kim.minji@example.co.kr", "o'brien+orders@mail.example.com", "yamada@例え.jp",
          "shopper%40example.com"]
#: what an operator needs to keep: dates, times, addresses of servers, ids, amounts, versions
KEPT = ["2024-05-01T10:00:00Z", "2024-05-01 10:00:00+00:00", "12:30:45.123456", "127.0.0.1:6379",
        "192.168.100.200", "order 5678901234567", "gid://shopify/Order/5678901234567",
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "123e4567-e89b-12d3-a456-426614174000",
        "20240501-0000012", "VOC-2024-000123", "15000 KRW", "1,234,567.89", "v3.11.4",
        "delivery-12345", "followup:987654321", "took 1234.5678 ms", "1588-1234"]


@pytest.mark.parametrize("phone", PHONES)
def test_phone_numbers_are_redacted(phone):
    assert redact(f"call {phone} now") == "call [phone] now"
    assert redact(f"phone={phone}") == "phone=[phone]"


@pytest.mark.parametrize("email", EMAILS)
def test_email_addresses_are_redacted(email):
    assert redact(f"sent to {email}.") == "sent to [email]."
    assert redact(f"/api/orders?email={email}&page=2") == "/api/orders?email=[email]&page=2"


@pytest.mark.parametrize("kept", KEPT)
def test_what_is_not_personal_is_kept(kept):
    assert redact(f"at {kept} done") == f"at {kept} done"


@pytest.fixture
def captured():
    """The add-on's handler on the root logger, writing into a buffer; removed afterwards."""
    root = logging.getLogger()
    level = root.level
    handlers = []

    def install(fmt: str, stream=None):
        stream = stream or io.StringIO()
        handlers.append(configure_logging(fmt, stream=stream, force=True))
        return stream

    yield install
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_the_fields_and_no_personal_data(captured):
    stream = captured(JSON)
    log = logging.getLogger("ccms_addon.tests.operations")
    log.info("notified %s at %s about %s", "kim.minji@example.co.kr", "+82 10-1234-5678",
             "VOC-2024-000123")
    log.warning("lookup for contact=%(email)s", {"email": "yamada@example.jp"})
    log.info("extra fields too", extra={"recipient": "o'brien@mail.example.com", "attempt": 2})
    try:
        raise ValueError("no mailbox for shopper@example.com (tel 010-1234-5678)")
    except ValueError:
        log.exception("sending failed")

    text = stream.getvalue()
    assert not EMAILISH.search(text)
    assert not any(phone in text for phone in PHONES)
    lines = json_lines(text)
    assert len(lines) == 4
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line)
        assert line["timestamp"].endswith("Z") and line["logger"] == "ccms_addon.tests.operations"
        assert "request_id" not in line and "job_id" not in line  # none here
    assert lines[0]["message"] == "notified [email] at [phone] about VOC-2024-000123"
    assert lines[0]["level"] == "INFO" and lines[1]["level"] == "WARNING"
    assert lines[1]["message"] == "lookup for contact=[email]"
    assert lines[2]["recipient"] == "[email]" and lines[2]["attempt"] == 2
    assert lines[3]["level"] == "ERROR" and "ValueError: no mailbox for [email]" in lines[3]["exception"]
    assert "(tel [phone])" in lines[3]["exception"]


def test_text_is_the_default_and_is_redacted_too(captured, monkeypatch):
    monkeypatch.delenv("CCMS_LOG_FORMAT", raising=False)
    assert log_format() == TEXT
    stream = captured(log_format())
    logging.getLogger("ccms_addon.x").info("mail to %s", "kim@example.com")
    line = stream.getvalue().strip()
    assert line.endswith("INFO ccms_addon.x: mail to [email]")
    assert not line.startswith("{")


def test_an_unknown_format_fails_at_start_up():
    with pytest.raises(ValueError, match="CCMS_LOG_FORMAT"):
        log_format({"CCMS_LOG_FORMAT": "xml"})


def test_lines_of_a_request_carry_its_id(app, captured):
    stream = captured(JSON)
    log = logging.getLogger("ccms_addon.tests.operations")
    with app.test_request_context("/", headers={"X-Request-ID": "lb-7f3a-01"}):
        log.info("one")
    with app.test_request_context("/"):
        log.info("two")
        log.info("three")
    with app.test_request_context("/", headers={"X-Request-ID": 'bad id", "level": "ERROR'}):
        log.info("four")
    one, two, three, four = json_lines(stream.getvalue())
    assert one["request_id"] == "lb-7f3a-01"
    assert re.fullmatch(r"[0-9a-f]{32}", two["request_id"])
    assert three["request_id"] == two["request_id"]          # one request, one id
    assert re.fullmatch(r"[0-9a-f]{32}", four["request_id"])  # a header that is no id is not used


def test_lines_of_a_job_carry_its_id(runtime, captured, tmp_path):
    path = tmp_path / "worker.log"
    with open(path, "w") as stream:  # a file: the forked work-horse writes to it too
        captured(JSON, stream)
        jobs = queue(DELIVERIES_QUEUE, runtime.redis, runtime.settings)
        job = jobs.enqueue(log_from_a_job, "kim@example.com", job_id="ops-log-job-1")
        Worker([jobs], connection=runtime.redis).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    lines = json_lines(path.read_text())
    told = [line for line in lines if line["message"].startswith("job told")]
    assert told == [{**told[0], "message": "job told [email]", "job_id": "ops-log-job-1"}]
    assert not EMAILISH.search(path.read_text())
    # RQ's own lines go through the same handler
    assert any(line["logger"].startswith("rq.") for line in lines)


def test_the_cli_logs_json_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMS_")}
    env.update(CCMS_LOG_FORMAT="json", CCMS_VAR_DIR=str(tmp_path / "var"),
               CCMS_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    done = subprocess.run([sys.executable, "-m", "ccms_addon.cli", "db", "upgrade"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.splitlines() if line.startswith("{")]
    assert logged, done.stderr
    for entry in map(json.loads, logged):
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
    assert any(json.loads(line)["logger"].startswith("alembic") for line in logged)


def test_a_bad_log_call_never_raises_in_the_caller():
    # (called on the filter itself: pytest's own capture handler re-raises format errors)
    record = logging.LogRecord("ccms_addon.x", logging.INFO, __file__, 1, "%d orders for %s",
                               ("many", "kim@example.com"), None)
    assert RedactFilter().filter(record) and ContextFilter().filter(record)
    assert "kim@example.com" not in record.getMessage() and "[email]" in record.getMessage()
    assert record.request_id is None and record.job_id is None
