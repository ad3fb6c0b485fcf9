"""The automatic acknowledgement: the hook queues one job per new item, a real RQ worker runs it,
the customer's acknowledgement reaches a real SMTP server on loopback once, well within the shop's
promise; a job Redis never got is found by the sweep."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import redis as redis_lib
from rq.job import Job

from ccms_addon.jobs.dispatcher import Dispatcher
from ccms_addon.outbox import OutboundStatus
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.runtime import build_runtime
from ccms_addon.store.models import VocChannel, VocItem, VocKind, VocStatus, utcnow
from ccms_addon.voc.jobs import (SWEEP_GRACE, SWEEP_WINDOW, acknowledge_item, acknowledge_job_id,
                                 sweep_unacknowledged)
from ccms_addon.voc.service import VocDesk
from ccms_addon.voc.settings import business_hours_of
from tests.loopback import free_port
from tests.processes import Processes, process_env
from tests.voc_automation.conftest import (SENDER, SHOPPER, WORDS, events, new_item, outbound,
                                           run_worker, set_voc_settings)


def load(runtime, item_id) -> VocItem:
    with runtime.db.session() as session:
        return session.get(VocItem, item_id)


def queued_ids(runtime) -> list[str]:
    return queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).job_ids


def test_a_new_item_is_acknowledged_once_by_the_worker(runtime, shop, smtp_server):
    item = new_item(runtime, shop.id)
    assert queued_ids(runtime) == [acknowledge_job_id(shop.id, item.id)] == [
        f"shop-{shop.id}-voc-ack-{item.id}"]
    run_worker(runtime)
    assert acknowledge_item(item.id) is False  # run again: the item has moved on, nothing sent

    acknowledged = load(runtime, item.id)
    assert acknowledged.status is VocStatus.ACKNOWLEDGED
    assert acknowledged.acknowledged_at <= acknowledged.acknowledge_due_at
    [event] = events(runtime, item.id, "acknowledged")
    assert event.actor == "system" and event.to_status == "acknowledged"
    [row] = outbound(runtime)
    assert row.idempotency_key == f"voc-ack:{item.id}" and row.status is OutboundStatus.SENT
    [message] = smtp_server.parsed()
    envelope, _ = smtp_server.messages[0]
    assert envelope.rcpt_tos == [SHOPPER] and envelope.mail_from == SENDER
    assert item.reference in message["Subject"] and "접수" in message["Subject"]
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert item.reference in body
    assert all(f"> {line}" in body for line in WORDS.splitlines())  # the words, verbatim


def test_the_acknowledgement_reaches_the_mail_server_within_the_promise(
        runtime, settings, shop, smtp_server, redis_url, tmp_path):
    """The measure: a real `ccms-addon worker` process; from the item's commit to the SMTP
    server's 250, against the shop's promise of one business hour."""
    processes = Processes(tmp_path)
    try:
        processes.start("worker", [sys.executable, "-m", "ccms_addon.cli", "worker",
                                   "--no-dispatcher"], process_env(settings, redis_url))
        deadline = time.monotonic() + 60
        while not runtime.redis.keys("rq:worker:*"):
            assert time.monotonic() < deadline, processes.log_tail()
            time.sleep(0.05)
        started = time.monotonic()
        item = new_item(runtime, shop.id)
        while not smtp_server.messages:
            assert time.monotonic() < deadline, processes.log_tail()
            time.sleep(0.01)
        elapsed = time.monotonic() - started
    finally:
        processes.stop_all()
    [message] = smtp_server.parsed()
    assert item.reference in message["Subject"]
    promise = business_hours_of(shop).between(item.created_at, item.acknowledge_due_at)
    assert timedelta(0) < promise <= timedelta(hours=1)
    # the shop promised up to an hour of business time; the customer had it in seconds
    assert elapsed < 10, elapsed
    print(f"\nacknowledgement at the SMTP server {elapsed * 1000:.0f} ms after the item's commit "
          f"(promise: {promise})")


def test_the_job_queued_twice_and_a_person_first_send_one_message(runtime, shop, smtp_server,
                                                                 team):
    item = new_item(runtime, shop.id)
    VocDesk(runtime).acknowledge([shop.id], item.id, "staff:1:Owner")  # a person was quicker
    assert acknowledge_item(item.id) is False
    run_worker(runtime)
    assert len(smtp_server.messages) == 1
    assert [row.idempotency_key for row in outbound(runtime)] == [f"voc-ack:{item.id}"]
    assert [e.actor for e in events(runtime, item.id, "acknowledged")] == ["staff:1:Owner"]


def test_items_that_cannot_be_acknowledged_automatically_are_left_to_people(runtime, shop,
                                                                           smtp_server):
    call = new_item(runtime, shop.id, channel=VocChannel.PHONE, contact_email=None,
                    contact_phone="010-1234-5678", kind=VocKind.INQUIRY)
    set_voc_settings(runtime, shop.id, auto_acknowledge=False)
    quiet = new_item(runtime, shop.id)
    run_worker(runtime)
    assert load(runtime, call.id).status is VocStatus.RECEIVED
    assert load(runtime, quiet.id).status is VocStatus.RECEIVED
    assert smtp_server.messages == [] and outbound(runtime) == []
    runtime.redis.flushdb()
    assert sweep_unacknowledged(runtime, now=utcnow() + SWEEP_GRACE * 2) == 0


def test_a_job_lost_at_intake_is_found_by_the_sweep(runtime, settings, shop, smtp_server, caplog):
    """Redis is unreachable when the item is recorded: the item is kept, the hook only logs, and
    the sweep queues the acknowledgement once the grace has passed."""
    dead = redis_lib.Redis(port=free_port(), socket_connect_timeout=0.2)
    offline = build_runtime(settings, redis_connection=dead)
    try:
        item = new_item(offline, shop.id)
    finally:
        offline.close()
    assert "the sweep will" in caplog.text
    assert queued_ids(runtime) == []
    assert load(runtime, item.id).status is VocStatus.RECEIVED

    assert sweep_unacknowledged(runtime) == 0  # within the grace: the job may still come
    later = utcnow() + SWEEP_GRACE + timedelta(seconds=5)
    assert sweep_unacknowledged(runtime, now=later) == 1
    assert sweep_unacknowledged(runtime, now=later) == 0  # its job is queued: not twice
    assert Job.fetch(acknowledge_job_id(shop.id, item.id), connection=runtime.redis) is not None
    run_worker(runtime)
    assert load(runtime, item.id).status is VocStatus.ACKNOWLEDGED
    assert sweep_unacknowledged(runtime, now=later) == 0
    assert len(smtp_server.messages) == 1
    # too old for an automatic acknowledgement: a person (told by the escalation) does it
    old = new_item(runtime, shop.id, occurred_at=utcnow() - SWEEP_WINDOW - timedelta(hours=1))
    runtime.redis.flushdb()
    assert sweep_unacknowledged(runtime) == 0
    assert load(runtime, old.id).status is VocStatus.RECEIVED


def test_the_dispatcher_runs_the_acknowledgement_sweep(runtime, shop, smtp_server):
    item = new_item(runtime, shop.id, occurred_at=utcnow() - timedelta(minutes=10))
    runtime.redis.flushdb()  # the hook's job is gone (Redis restarted)
    Dispatcher(runtime).run_once()  # (its notification sweep queues the merchant's email too)
    assert acknowledge_job_id(shop.id, item.id) in queued_ids(runtime)
    run_worker(runtime)
    assert load(runtime, item.id).status is VocStatus.ACKNOWLEDGED
    assert [env.rcpt_tos for env, _ in smtp_server.messages].count([SHOPPER]) == 1
