"""Exactly once under failure: a real worker process is SIGKILLed (with its work-horse), or stopped
by two SIGTERMs (RQ's warm then cold shutdown, which kills the work-horse), while it sends follow-ups to a loopback SMTP server that is slow to answer, and Redis is flushed; after the
sweeps and a new worker, every due follow-up reached the server exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from ccms_addon import outbox
from ccms_addon.notifiers.email import message_id
from ccms_addon.programs.followups import message_key
from ccms_addon.programs.scheduler import schedule_due
from ccms_addon.store.models import FollowUp, OutboundMessage, OutboundStatus, ProgramKind, utcnow
from tests.loopback import free_port
from tests.processes import Processes, process_env
from tests.programs.conftest import CHECK_IN_TERMS, SENDER, order_record

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MESSAGES = 24
NO_QUIET_HOURS = {**CHECK_IN_TERMS, "quiet_hours": {"start": "00:00", "end": "00:00"}}


class SlowSink:
    """Keeps every message the moment its content has arrived, then takes a while to say 250:
    a worker killed in that while leaves a row ``delivering`` for a message the server has."""

    def __init__(self):
        self.message_ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        text = envelope.original_content.decode(errors="replace")
        mid = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                   if line.lower().startswith("message-id:"))
        with self.lock:
            self.message_ids.append(mid)
        await asyncio.sleep(0.15)
        return "250 OK"


@pytest.fixture
def sink():
    handler = SlowSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.url = f"smtp://127.0.0.1:{port}"
    yield handler
    controller.stop()


@pytest.mark.parametrize("stop", ["sigkill", "double_sigterm"])
def test_a_killed_worker_and_a_flushed_redis_send_every_follow_up_once(
        runtime, settings, program, sync_order, sink, redis_conn, tmp_path, stop):
    program(ProgramKind.FOLLOW_UP, NO_QUIET_HOURS)
    sync_order(*[order_record(str(1000 + i)) for i in range(MESSAGES)])
    with runtime.db.engine.begin() as conn:
        ids = list(conn.scalars(select(FollowUp.id).where(FollowUp.step == "arrival")))
        conn.execute(update(FollowUp).where(FollowUp.id.in_(ids))
                     .values(due_at=utcnow() - timedelta(minutes=1)))
    assert schedule_due(runtime) == MESSAGES

    worker_settings = dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": sink.url, "from": SENDER}})
    env = process_env(worker_settings, settings.redis_url)
    processes = Processes(tmp_path)
    command = [sys.executable, "-m", "ccms_addon.cli", "worker", "--no-dispatcher"]
    try:
        first = processes.start("worker-1", command, env)
        deadline = time.monotonic() + 60
        while len(sink.message_ids) < MESSAGES // 3:
            assert time.monotonic() < deadline, processes.log_tail()
            time.sleep(0.02)
        time.sleep(0.07)  # most likely inside the server's slow 250: mid-send
        if stop == "sigkill":
            Processes.kill_now(first)
        else:  # an impatient operator: Ctrl-C twice
            first.send_signal(signal.SIGTERM)
            time.sleep(0.02)
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=30)
        redis_conn.flushdb()  # and every job RQ still held is gone

        later = utcnow() + timedelta(hours=1)
        schedule_due(runtime, now=later)     # leases ran out, jobs gone: handed over again
        outbox.sweep_due(runtime, now=later)  # attempts that died before their handover
        second = processes.start("worker-2", command + ["--burst"], env)
        second.wait(timeout=120)
        outbox.sweep_due(runtime, now=later)  # a send cut off mid-handover is parked unknown
    finally:
        processes.stop_all()

    with runtime.db.session() as session:
        rows = session.scalars(select(OutboundMessage)).all()
    assert len(rows) == MESSAGES
    states = Counter(row.status for row in rows)
    assert set(states) <= {OutboundStatus.SENT, OutboundStatus.UNKNOWN}, states
    expected = {message_id(message_key(i), SENDER) for i in ids}
    received = Counter(sink.message_ids)
    assert set(received) == expected, processes.log_tail()
    assert set(received.values()) == {1}  # nothing twice, nothing lost
