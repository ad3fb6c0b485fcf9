"""After-sale follow-ups benchmark (the programs issue; DESIGN.md §7 "follow-ups").

Three figures, each against a baseline measured in the same run:

1. **Scheduling** — enroll N fulfilled orders (default 100,000) in a follow-up program of three
   steps through ``programs.enrollment.enroll_orders`` in batches of 1,000: one enrollment and
   three ``FollowUp`` rows per order, due times computed in the shopper's time zone. Baseline: a
   plain ``executemany`` INSERT of the same number of rows into scratch tables with no constraint.
   Goal: >= 5,000 enrollments/s.
2. **Sending** — M due check-ins (default 10,000) handed to RQ by the scheduler and sent by W
   ``ccms-addon worker`` processes (RQ's forking worker, as deployed) to a loopback SMTP sink;
   messages/s from the workers' start to the last message settled in the outbox. Baseline: M
   empty jobs on the same queue with the same W workers. Goal: ratio >= 0.5.
3. **Redis memory per scheduled follow-up** — ``used_memory`` after enrolling (the schedule lives in
   SQL: nothing in Redis), and per follow-up handed to RQ within the horizon.

    python bench/followups.py                                  # SQLite, then PostgreSQL if it answers
    python bench/followups.py --orders 20000 --messages 2000 --db postgresql --workers 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import redis as redis_lib
from aiosmtpd.controller import Controller
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import (BigInteger, Column, Integer, MetaData, String, Table as SATable,
                        create_engine, func, select, text, update)

from ccms_addon.config import Settings
from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.programs import service
from ccms_addon.programs.enrollment import BATCH, active_programs, enroll_orders
from ccms_addon.programs.scheduler import schedule_due
from ccms_addon.programs.schemas import load_terms
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.runtime import build_runtime
from ccms_addon.store import repository
from ccms_addon.store.migrations import upgrade
from ccms_addon.store.models import (FollowUp, FollowUpStatus, Merchant, Order, OutboundMessage,
                                     OutboundStatus, ProgramKind, Shop, UtcDateTime)

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
GOAL_ENROLLMENTS = 5_000
GOAL_SEND_RATIO = 0.5
TERMS = {
    "quiet_hours": {"start": "00:00", "end": "00:00"},  # no quiet hours: the sends are due now
    "steps": [
        {"key": "arrival", "offset_days": 3, "kind": "check_in", "template": "arrival_check_in"},
        {"key": "day30", "offset_days": 30, "template": "thank_you"},
        {"key": "day330", "offset_days": 330, "kind": "reminder", "template": "thank_you"},
    ]}
#: the baseline's job: a function that does nothing, importable by the workers (bench/ is on
#: their PYTHONPATH)
NOOP_JOB = "followups_noop.noop"


# ------------------------------------------------------------------------------------------ setup


def _reachable(url: str) -> bool:
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def _fresh_database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    name = f"ccms_bench_followups_{os.getpid()}"
    engine = create_engine(DEFAULT_PG_URL.replace("postgresql://", "postgresql+psycopg://"),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return DEFAULT_PG_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    name = url.rsplit("/", 1)[1]
    engine = create_engine(DEFAULT_PG_URL.replace("postgresql://", "postgresql+psycopg://"),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _orders(count: int, delivered: datetime) -> list[OrderRecord]:
    lines = (OrderLineRecord("1", "Mug", 1, Decimal("15000"), sku="MUG-1", product_id="101"),)
    return [OrderRecord(
        platform_order_id=str(100000 + i), number=str(1000 + i), currency="KRW",
        total=Decimal("15000"), updated_at=delivered, placed_at=delivered - timedelta(days=2),
        financial_status=FinancialStatus.PAID, fulfillment_status=FulfillmentStatus.FULFILLED,
        email=f"shopper{i}@example.com", customer_name=f"Shopper {i}",
        customer=CustomerRecord(platform_customer_id=f"c{i}", email=f"shopper{i}@example.com"),
        lines=lines, delivered_at=delivered, fulfilled_at=delivered, locale="ko",
        country_code="KR", accepts_marketing=True) for i in range(count)]


class Sink:
    """An SMTP server on loopback that counts what it accepts."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.count += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------- measurements


def measure_scheduling(console, runtime, shop_id: int, orders: int) -> dict:
    with runtime.db.session() as session:
        order_ids = list(session.scalars(select(Order.id).where(Order.shop_id == shop_id)
                                         .order_by(Order.id)))
        programs = active_programs(session, shop_id)
    baseline = _baseline_inserts(runtime.db.engine, len(order_ids))
    started = time.perf_counter()
    enrolled = 0
    with _progress(console) as progress:
        task = progress.add_task("enrolling", total=len(order_ids))
        for start in range(0, len(order_ids), BATCH):
            chunk = order_ids[start:start + BATCH]
            with runtime.db.session() as session:
                enrolled += enroll_orders(session, shop_id, chunk, programs=programs)
            progress.advance(task, len(chunk))
    elapsed = time.perf_counter() - started
    with runtime.db.session() as session:
        follow_ups = session.scalar(select(func.count()).select_from(FollowUp))
    return dict(enrolled=enrolled, follow_ups=follow_ups, seconds=elapsed,
                rate=enrolled / elapsed, baseline_rate=baseline, ratio=enrolled / elapsed / baseline)


def _baseline_inserts(engine, orders: int) -> float:
    """Orders/s for a plain executemany of one enrollment-sized and three follow-up-sized rows
    per order into scratch tables with no constraint (one transaction per 1,000 orders)."""
    meta = MetaData()
    enrollments = SATable("bench_enrollments", meta, Column("id", Integer, primary_key=True),
                          Column("shop_id", BigInteger), Column("program_id", BigInteger),
                          Column("order_id", BigInteger), Column("anchor_at", UtcDateTime()),
                          Column("timezone", String(64)), Column("locale", String(16)))
    steps = SATable("bench_follow_ups", meta, Column("id", Integer, primary_key=True),
                    Column("shop_id", BigInteger), Column("enrollment_id", BigInteger),
                    Column("order_id", BigInteger), Column("step", String(64)),
                    Column("status", String(32)), Column("due_at", UtcDateTime()))
    meta.drop_all(engine)
    meta.create_all(engine)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    for start in range(0, orders, BATCH):
        ids = range(start, min(start + BATCH, orders))
        with engine.begin() as conn:
            conn.execute(enrollments.insert(), [dict(shop_id=1, program_id=1, order_id=i,
                                                     anchor_at=now, timezone="Asia/Seoul",
                                                     locale="ko") for i in ids])
            conn.execute(steps.insert(), [dict(shop_id=1, enrollment_id=i, order_id=i, step=s,
                                               status="scheduled", due_at=now)
                                          for i in ids for s in ("a", "b", "c")])
    rate = orders / (time.perf_counter() - started)
    meta.drop_all(engine)
    return rate


def measure_redis_memory(runtime, sample: int) -> dict:
    """Bytes Redis holds per follow-up: none while it is only scheduled in SQL, and what one RQ
    job costs once it is handed over within the horizon."""
    redis = runtime.redis
    redis.flushdb()
    before = redis.info("memory")["used_memory"]
    with runtime.db.engine.begin() as conn:
        ids = list(conn.scalars(select(FollowUp.id).where(FollowUp.step == "day30")
                                .order_by(FollowUp.id).limit(sample)))
        soon = datetime.now(timezone.utc) + timedelta(minutes=5)
        conn.execute(update(FollowUp).where(FollowUp.id.in_(ids)).values(due_at=soon))
    handed = 0
    while True:
        moved = schedule_due(runtime, limit=5000)
        if not moved:
            break
        handed += moved
    after = redis.info("memory")["used_memory"]
    redis.flushdb()
    with runtime.db.engine.begin() as conn:  # back to scheduled far ahead
        conn.execute(update(FollowUp).where(FollowUp.id.in_(ids))
                     .values(status=FollowUpStatus.SCHEDULED, lease_until=None,
                             due_at=datetime.now(timezone.utc) + timedelta(days=30)))
    return dict(scheduled_in_sql_bytes=0, handed=handed,
                per_handed_bytes=(after - before) / handed if handed else 0)


def measure_sending(console, runtime, database_url: str, redis_url: str, shop_id: int,
                    messages: int, workers: int, workdir: Path) -> dict:
    sink = Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    env = {**os.environ, "CCMS_DATABASE_URL": database_url, "CCMS_REDIS_URL": redis_url,
           "CCMS_SECRET_KEY": "bench", "CCMS_VAR_DIR": str(workdir / "var"),
           "CCMS_SMTP_URL": f"smtp://127.0.0.1:{port}", "CCMS_SMTP_FROM": "care@bench.test",
           "PYTHONPATH": str(Path(__file__).resolve().parent)}
    try:
        runtime.redis.flushdb()
        baseline = _run_workers(console, runtime, env, workers, messages, "empty jobs",
                                lambda: _enqueue_noops(runtime, messages),
                                lambda: _finished_jobs(runtime))
        with runtime.db.engine.begin() as conn:
            ids = list(conn.scalars(select(FollowUp.id).where(FollowUp.step == "arrival")
                                    .order_by(FollowUp.id).limit(messages)))
            conn.execute(update(FollowUp).where(FollowUp.id.in_(ids))
                         .values(due_at=datetime.now(timezone.utc) - timedelta(minutes=1)))

        def hand_over():
            while schedule_due(runtime, limit=5000):
                pass

        rate = _run_workers(console, runtime, env, workers, messages, "follow-ups",
                            hand_over, lambda: _settled(runtime))
    finally:
        controller.stop()
    return dict(baseline_rate=baseline, rate=rate, ratio=rate / baseline, received=sink.count)


def _enqueue_noops(runtime, count: int) -> None:
    from rq import Queue
    q = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    for start in range(0, count, 1000):
        q.enqueue_many([Queue.prepare_data(NOOP_JOB, result_ttl=60)
                        for _ in range(min(1000, count - start))])


def _finished_jobs(runtime) -> int:
    q = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    return q.finished_job_registry.count + q.failed_job_registry.count


def _settled(runtime) -> int:
    with runtime.db.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(OutboundMessage).where(
            OutboundMessage.status.in_((OutboundStatus.SENT.value, OutboundStatus.FAILED.value,
                                        OutboundStatus.UNKNOWN.value))))


def _run_workers(console, runtime, env, workers: int, total: int, label: str, prepare,
                 done_count) -> float:
    prepare()
    already = done_count()
    cli = [sys.executable, "-m", "ccms_addon.cli", "worker", "--burst", "--no-dispatcher"]
    started = time.perf_counter()
    procs = [subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    try:
        with _progress(console) as progress:
            task = progress.add_task(label, total=total)
            while True:
                done = done_count() - already
                progress.update(task, completed=done)
                if done >= total or all(p.poll() is not None for p in procs):
                    break
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)
    _job_durations(console, runtime, label)
    if done < total:
        failed = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).failed_job_registry
        from rq.job import Job
        jobs = Job.fetch_many(failed.get_job_ids()[:3], connection=runtime.redis)
        detail = "; ".join((job.latest_result().exc_string or "").strip().splitlines()[-1]
                           for job in jobs if job and job.latest_result())
        with runtime.db.engine.connect() as conn:
            states = conn.execute(select(FollowUp.status, FollowUp.skip_reason, func.count())
                                  .where(FollowUp.step == "arrival")
                                  .group_by(FollowUp.status, FollowUp.skip_reason)).all()
            messages = conn.execute(select(OutboundMessage.status, func.count())
                                    .group_by(OutboundMessage.status)).all()
        q = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
        console.print(f"queue left {q.count}, started {q.started_job_registry.count}, "
                      f"scheduled {q.scheduled_job_registry.count}, "
                      f"finished {q.finished_job_registry.count}, keys {runtime.redis.dbsize()}")
        raise SystemExit(f"only {done} of {total} {label} finished; {failed.count} jobs failed"
                         + (f": {detail}" if detail else "") + f"; follow-ups {states}; "
                         f"messages {messages}")
    return total / elapsed


def _job_durations(console, runtime, label: str) -> None:
    """Median time a job spent in its work-horse, from RQ's own timestamps (--verbose)."""
    if not os.environ.get("BENCH_VERBOSE"):
        return
    from rq.job import Job
    registry = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).finished_job_registry
    jobs = [j for j in Job.fetch_many(registry.get_job_ids()[-500:], connection=runtime.redis)
            if j and j.started_at and j.ended_at]
    spans = sorted((j.ended_at - j.started_at).total_seconds() * 1000 for j in jobs)
    if spans:
        console.print(f"{label}: median {spans[len(spans) // 2]:.1f} ms in the work-horse "
                      f"({len(spans)} jobs)")


def _progress(console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


# ------------------------------------------------------------------------------------------- main


def run(console, kind: str, args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ccms-bench-followups-"))
    database_url = _fresh_database(kind, workdir)
    redis_url = args.redis_url
    try:
        upgrade(database_url)
        settings = Settings.from_env({"CCMS_DATABASE_URL": database_url,
                                      "CCMS_REDIS_URL": redis_url or "",
                                      "CCMS_SECRET_KEY": "bench",
                                      "CCMS_VAR_DIR": str(workdir / "var")})
        runtime = build_runtime(settings)
        if not redis_url:
            runtime.redis.ping()  # starts the embedded server
            redis_url = _embedded_url()
        runtime.redis.flushdb()
        with runtime.db.session() as session:
            shop = repository.create_shop(session, runtime.box, platform="shopify",
                                          domain="bench.myshopify.com",
                                          merchant=Merchant(name="bench")).shop
            shop_row = session.get(Shop, shop.id)
            shop_row.timezone, shop_row.locale = "Asia/Seoul", "ko"
        delivered = datetime.now(timezone.utc) - timedelta(hours=1)
        records = _orders(args.orders, delivered)
        with _progress(console) as progress:  # setup: the orders as the pipeline stores them
            task = progress.add_task("storing orders (not timed)", total=len(records))
            for start in range(0, len(records), 1000):
                with runtime.db.session() as session:
                    repository.upsert_orders(session, shop.id, records[start:start + 1000])
                progress.advance(task, min(1000, len(records) - start))
        with runtime.db.session() as session:  # after the orders: enrollment is measured alone
            service.create_program(session, shop.id, kind=ProgramKind.FOLLOW_UP,
                                   name="check-ins", actor="bench",
                                   terms=load_terms(ProgramKind.FOLLOW_UP, TERMS))
        used_before = runtime.redis.info("memory")["used_memory"]
        scheduling = measure_scheduling(console, runtime, shop.id, args.orders)
        scheduling["redis_delta_bytes"] = runtime.redis.info("memory")["used_memory"] - used_before
        memory = measure_redis_memory(runtime, min(args.messages, args.orders))
        sending = measure_sending(console, runtime, database_url, redis_url, shop.id,
                                  min(args.messages, args.orders), args.workers, workdir)
        runtime.redis.flushdb()
        runtime.close()
        return dict(scheduling=scheduling, memory=memory, sending=sending)
    finally:
        _drop_database(database_url)
        shutil.rmtree(workdir, ignore_errors=True)


def _embedded_url() -> str:
    from ccms_addon import queue as queue_module
    return queue_module._embedded.url  # noqa: SLF001 — the bench's own embedded server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--redis-url", default=None,
                        help=f"default: {DEFAULT_REDIS_URL} if it answers, else an embedded Redis")
    args = parser.parse_args(argv)
    if args.redis_url is None:
        try:
            redis_lib.Redis.from_url(DEFAULT_REDIS_URL, socket_connect_timeout=1).ping()
            args.redis_url = DEFAULT_REDIS_URL
        except redis_lib.RedisError:
            args.redis_url = ""
    console = Console()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in kinds and not _reachable(DEFAULT_PG_URL):
        console.print("[yellow]PostgreSQL is not reachable: skipped[/yellow]")
        kinds.remove("postgresql")
    table = Table(title=f"Follow-ups: {args.orders:,} orders, {args.messages:,} messages, "
                        f"{args.workers} worker(s)")
    for column in ("store", "baseline /s", "measured /s", "ratio", "goal"):
        table.add_column(column, justify="right")
    failed = False
    for kind in kinds:
        result = run(console, kind, args)
        s, m, r = result["scheduling"], result["memory"], result["sending"]
        table.add_row(f"{kind}: enrollments", f"{s['baseline_rate']:,.0f}", f"{s['rate']:,.0f}",
                      f"{s['ratio']:.2f}", f">= {GOAL_ENROLLMENTS:,}/s")
        table.add_row(f"{kind}: messages sent", f"{r['baseline_rate']:,.0f}", f"{r['rate']:,.0f}",
                      f"{r['ratio']:.2f}", f"ratio >= {GOAL_SEND_RATIO}")
        console.print(f"{kind}: {s['enrolled']:,} enrollments, {s['follow_ups']:,} follow-ups "
                      f"scheduled; Redis grew {s['redis_delta_bytes']:,} bytes while scheduling "
                      f"(the schedule lives in SQL); {m['per_handed_bytes']:,.0f} bytes per "
                      f"follow-up handed to RQ within the horizon; the sink received "
                      f"{r['received']:,} messages")
        failed |= s["rate"] < GOAL_ENROLLMENTS or r["ratio"] < GOAL_SEND_RATIO
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
