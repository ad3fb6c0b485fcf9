"""Bulk order sync benchmark (DESIGN.md §7 "store: bulk order sync rate").

Upserts N canonical orders (``OrderRecord`` with a customer and 2 lines each, realistic values) through
``ccms_addon.store.repository.upsert_orders`` in batches (one transaction per batch), on SQLite (the
embedded default: WAL, synchronous=FULL) and on PostgreSQL, and measures in the same run a baseline:
a plain ``executemany`` INSERT of the same order rows through SQLAlchemy Core into a scratch table
with no constraint and no conflict handling, one transaction per batch. It prints orders/s for both
and the ratio. 5% of each batch are other versions (older or newer) of orders in the same batch, as
a sync page overlapping webhook updates gives; the newest must win.

    python bench/sync.py                       # 100,000 orders, SQLite and (if it answers) PostgreSQL
    python bench/sync.py --orders 20000 --db postgresql --profile

Goals (the sync issue): >= 10,000 orders/s on PostgreSQL, >= 20,000 orders/s on SQLite, counted as
distinct orders stored per second of upsert time (record generation is not timed).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from sqlalchemy import (BigInteger, Boolean, Column, Integer, MetaData, Numeric, String, Table as SATable,
                        create_engine, event, func, select, text)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import CpuAccount, raise_exit, wait_for_quiet  # noqa: E402 — a sibling script

from ccms_addon.config import Settings
from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.runtime import build_runtime
from ccms_addon.store import repository
from ccms_addon.store.migrations import upgrade
from ccms_addon.store.models import Customer, Order, OrderLine, UtcDateTime

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
GOALS = {"postgresql": 10_000, "sqlite": 20_000}
SHOP_DOMAIN = "bench-sync.myshopify.com"

# ------------------------------------------------------------------------------------------------
# Realistic canonical orders
# ------------------------------------------------------------------------------------------------

FIRST = ["Jon", "Arya", "Minji", "Seo-yeon", "Haruto", "Lucas", "Emma", "Olivia", "Noah", "Ji-ho",
         "Sofia", "Liam", "Yuna", "Mateo", "Chloé", "Björn", "Amara", "Wei", "Priya", "Omar"]
LAST = ["Snow", "Stark", "Kim", "Lee", "Park", "Sato", "Müller", "García", "Smith", "Nguyen",
        "Choi", "Jung", "Rossi", "Dubois", "Kowalski", "Okafor", "Chen", "Patel", "Haddad", "Silva"]
PRODUCTS = [("IPod Nano - 8GB", "IPOD2008PINK", "199.00"), ("Linen shirt — sand", "LS-SAND-M", "59.90"),
            ("Ceramic mug 350 ml", "MUG-350-WHT", "14.50"), ("Wool scarf", "SCF-WOOL-GRY", "39.00"),
            ("Running socks (3 pairs)", "SOCK-RUN-3P", "18.00"), ("Leather wallet", "WAL-LTH-BRN", "75.00"),
            ("Green tea 100 g", "TEA-GRN-100", "12.00"), ("Desk lamp LED", "LMP-LED-BLK", "89.00"),
            ("Canvas tote bag", "TOTE-CNV-NAT", "24.00"), ("Phone case, clear", "CASE-CLR-15", "19.99")]
#: currency, share, price multiplier, minor digits (KRW and JPY have none)
CURRENCIES = [("USD", 0.55, Decimal(1), 2), ("EUR", 0.15, Decimal(1), 2),
              ("KRW", 0.20, Decimal(1350), 0), ("JPY", 0.10, Decimal(150), 0)]
FINANCIAL = [(FinancialStatus.PAID, 0.72), (FinancialStatus.PENDING, 0.08),
             (FinancialStatus.AUTHORIZED, 0.06), (FinancialStatus.PARTIALLY_REFUNDED, 0.05),
             (FinancialStatus.REFUNDED, 0.05), (FinancialStatus.VOIDED, 0.04)]
FULFILLMENT = [(FulfillmentStatus.FULFILLED, 0.55), (FulfillmentStatus.UNFULFILLED, 0.30),
               (FulfillmentStatus.PARTIAL, 0.05), (FulfillmentStatus.DELIVERED, 0.10)]
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
ORDER_ID_BASE = 5_400_000_000_000
CUSTOMER_ID_BASE = 7_100_000_000_000
LINE_ID_BASE = 13_000_000_000_000


def _pick(rng: random.Random, weighted):
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


@dataclasses.dataclass
class Workload:
    orders: int  # records submitted (distinct orders + in-batch duplicates)
    batch: int
    duplicates: float
    seed: int

    @property
    def batches(self) -> int:
        return -(-self.orders // self.batch)

    @property
    def customers(self) -> int:
        return max(1, int(self.orders / 2.5))  # returning buyers: 2.5 orders per customer

    def batch_records(self, index: int) -> list[OrderRecord]:
        """Batch ``index``: distinct new orders plus ``duplicates`` of them as other versions."""
        size = min(self.batch, self.orders - index * self.batch)
        dups = int(size * self.duplicates)
        rng = random.Random(self.seed * 1_000_003 + index)
        first = index * self.batch - sum(int(min(self.batch, self.orders - i * self.batch)
                                             * self.duplicates) for i in range(index))
        records = [self.order(rng, first + i) for i in range(size - dups)]
        for _ in range(dups):
            base = rng.choice(records[:size - dups])
            shift = timedelta(seconds=rng.randint(1, 3600)) * rng.choice((-1, 1))
            records.append(dataclasses.replace(
                base, updated_at=base.updated_at + shift,
                financial_status=_pick(rng, FINANCIAL), fulfillment_status=_pick(rng, FULFILLMENT)))
        rng.shuffle(records)
        return records

    def distinct_in(self, index: int) -> int:
        size = min(self.batch, self.orders - index * self.batch)
        return size - int(size * self.duplicates)

    def order(self, rng: random.Random, n: int) -> OrderRecord:
        currency, _, factor, digits = rng.choices(CURRENCIES, [c[1] for c in CURRENCIES])[0]
        quantum = Decimal(1).scaleb(-digits)
        lines = []
        for k in range(2):
            title, sku, price = rng.choice(PRODUCTS)
            product = PRODUCTS.index((title, sku, price))
            lines.append(OrderLineRecord(
                platform_line_id=str(LINE_ID_BASE + 2 * n + k), title=title,
                quantity=rng.choice((1, 1, 1, 2, 3)),
                unit_price=(Decimal(price) * factor).quantize(quantum),
                sku=sku, product_id=str(632_910_392 + product), variant_id=str(808_950_810 + product)))
        shipping = (Decimal("4.99") * factor).quantize(quantum)
        total = sum((line.unit_price * line.quantity for line in lines), shipping)
        cid = rng.randrange(self.customers)
        first, last = FIRST[cid % len(FIRST)], LAST[(cid // len(FIRST)) % len(LAST)]
        email = f"{first.lower()}.{last.lower()}{cid}@example.com".replace("é", "e").replace("ü", "u") \
            .replace("ö", "o")
        phone = f"+1-555-{cid % 1000:03d}-{cid // 1000 % 10000:04d}" if cid % 3 else None
        placed = EPOCH + timedelta(seconds=n * 7 + rng.randint(0, 6))
        updated = placed + timedelta(minutes=rng.randint(0, 60 * 48))
        customer = CustomerRecord(platform_customer_id=str(CUSTOMER_ID_BASE + cid), email=email,
                                  name=f"{first} {last}", phone=phone,
                                  updated_at=EPOCH + timedelta(seconds=cid))
        financial = _pick(rng, FINANCIAL)
        return OrderRecord(
            platform_order_id=str(ORDER_ID_BASE + n), number=f"#{1001 + n}", currency=currency,
            total=total, updated_at=updated, placed_at=placed, financial_status=financial,
            fulfillment_status=_pick(rng, FULFILLMENT),
            cancelled_at=updated if financial is FinancialStatus.VOIDED else None,
            email=email, phone=phone, customer_name=f"{first} {last}", customer=customer,
            lines=tuple(lines))


# ------------------------------------------------------------------------------------------------
# Stores
# ------------------------------------------------------------------------------------------------


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def pg_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            pass
        engine = create_engine(_sa_url(url), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 — unreachable for whatever reason
        return False


def fresh_store(db: str, pg_admin: str, workdir: Path) -> str:
    if db == "sqlite":
        url = f"sqlite:///{workdir / 'ccms_bench_sync.sqlite3'}"
    else:
        name = "ccms_bench_sync"
        engine = create_engine(_sa_url(pg_admin), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        url = urlunsplit(urlsplit(pg_admin)._replace(path=f"/{name}"))
    upgrade(url)
    return url


def plain_table() -> SATable:
    """The baseline's scratch table: the orders table's columns, no constraint, no index but the
    primary key, no foreign key."""
    return SATable(
        "bench_plain_orders", MetaData(),
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("shop_id", BigInteger), Column("platform_order_id", String(64)),
        Column("number", String(64)), Column("currency", String(3)), Column("total", Numeric(20, 4)),
        Column("financial_status", String(40)), Column("fulfillment_status", String(40)),
        Column("customer_id", BigInteger), Column("email", String(320)), Column("phone", String(64)),
        Column("customer_name", String(200)), Column("placed_at", UtcDateTime()),
        Column("cancelled_at", UtcDateTime()), Column("platform_updated_at", UtcDateTime()),
        Column("is_complete", Boolean), Column("created_at", UtcDateTime()),
        Column("updated_at", UtcDateTime()))


def plain_row(shop_id: int, rec: OrderRecord, now: datetime) -> dict:
    """The order row the repository writes for ``rec`` (see ``repository._order_row``)."""
    return dict(shop_id=shop_id, platform_order_id=rec.platform_order_id, number=rec.number,
                currency=rec.currency.upper(), total=rec.total,
                financial_status=rec.financial_status.value,
                fulfillment_status=rec.fulfillment_status.value, customer_id=None,
                email=rec.email, phone=rec.phone, customer_name=rec.customer_name,
                placed_at=rec.placed_at, cancelled_at=rec.cancelled_at,
                platform_updated_at=rec.updated_at, is_complete=rec.complete,
                created_at=now, updated_at=now)


# ------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------


class StatementTimer:
    """Time spent inside the driver (``cursor.execute``/``executemany``: the database's work, the
    driver's and the network's) per kind of statement, through SQLAlchemy's cursor events. What
    ``upsert_orders`` spends outside them is Python: building statements, compiling, binding."""

    def __init__(self, engine):
        self.engine = engine
        self.times: dict[str, list] = {}
        self.commit = 0.0
        self.active = False
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, params, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn, cursor, statement, params, context, executemany):
        if not self.active:
            return
        spent = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
        head = statement[:200]  # multi-row statements run to tens of KB: look at the head only
        words = head.split(None, 3)
        verb = words[0].upper() if words else "?"
        match = re.search(r"\b(?:INTO|FROM|UPDATE)\s+(\w+)", head, re.IGNORECASE)
        kind = f"{verb} {match.group(1) if match else ''}".strip()
        if verb == "INSERT" and " ON CONFLICT " in statement:  # as compiled: upper case
            kind += " … ON CONFLICT"
        kind += " (executemany)" if executemany else ""
        entry = self.times.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += spent

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)



@dataclasses.dataclass
class Run:
    seconds: float = 0.0
    records: int = 0
    distinct: int = 0
    commit_seconds: float = 0.0
    others_cpu: float = float("nan")  # CPUs' worth of other people's work during the run

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else float("nan")

    @property
    def distinct_per_s(self) -> float:
        return self.distinct / self.seconds if self.seconds else float("nan")


def run_baseline(url: str, work: Workload, shop_id: int, progress: Progress, label: str) -> Run:
    table = plain_table()
    engine = create_engine(_sa_url(url))
    table.create(engine)
    run = Run()
    task = progress.add_task(label, total=work.orders)
    try:
        for index in range(work.batches):
            records = work.batch_records(index)
            started = time.perf_counter()
            now = datetime.now(timezone.utc)
            rows = [plain_row(shop_id, rec, now) for rec in records]
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
            run.seconds += time.perf_counter() - started
            run.records += len(records)
            run.distinct += work.distinct_in(index)
            progress.update(task, advance=len(records),
                            rate=f"{run.records_per_s:,.0f} orders/s")
    finally:
        engine.dispose()
    return run


class AutoAnalyze:
    """What autovacuum's autoanalyze would do on PostgreSQL: ANALYZE a table once more than
    50 + 10% of its rows changed since the last time (the server defaults). Run between batches,
    outside the timed region, when the server has autovacuum off (test servers often do): without
    statistics the planner scans a whole shop's orders for every batch's id lookup."""

    TABLES = ("customers", "orders", "order_lines")

    def __init__(self, engine):
        self.engine = engine
        self.analyzed = {t: 0 for t in self.TABLES}
        self.count = 0

    def __call__(self) -> None:
        with self.engine.connect() as conn:
            rows = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in self.TABLES}
            due = [t for t in self.TABLES if rows[t] - self.analyzed[t] > 50 + 0.1 * self.analyzed[t]]
            if due:
                conn.execute(text("ANALYZE " + ", ".join(due)))
                conn.commit()
                self.count += 1
                self.analyzed.update({t: rows[t] for t in due})


def autovacuum_off(engine) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return conn.scalar(text("SHOW autovacuum")) == "off"


def run_repository(runtime, work: Workload, shop_id: int, progress: Progress | None, label: str,
                   *, batches: int | None = None, profiler: cProfile.Profile | None = None,
                   timer: StatementTimer | None = None, analyze: AutoAnalyze | None = None) -> Run:
    run = Run()
    count = batches or work.batches
    total = sum(min(work.batch, work.orders - i * work.batch) for i in range(count))
    task = progress.add_task(label, total=total) if progress else None
    for index in range(count):
        records = work.batch_records(index)
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        if timer:
            timer.active = True
        with runtime.db.sessionmaker() as session:
            changes = repository.upsert_orders(session, shop_id, records)
            committing = time.perf_counter()
            session.commit()
            run.commit_seconds += time.perf_counter() - committing
        if timer:
            timer.active = False
        if profiler:
            profiler.disable()
        run.seconds += time.perf_counter() - started
        run.records += len(records)
        run.distinct += work.distinct_in(index)
        if len(changes) != work.distinct_in(index):
            raise SystemExit(f"batch {index}: {len(changes)} orders changed, "
                             f"expected {work.distinct_in(index)}")
        if progress:
            progress.update(task, advance=len(records), rate=f"{run.records_per_s:,.0f} orders/s")
        if analyze:
            analyze()
    return run


def verify(runtime, shop_id: int, work: Workload, run: Run) -> str:
    """The store holds every distinct order once, its 2 lines, and each newest version."""
    with runtime.db.engine.connect() as conn:
        orders = conn.scalar(select(func.count()).select_from(Order).where(Order.shop_id == shop_id))
        lines = conn.scalar(select(func.count()).select_from(OrderLine)
                            .where(OrderLine.shop_id == shop_id))
        customers = conn.scalar(select(func.count()).select_from(Customer)
                                .where(Customer.shop_id == shop_id))
    problems = []
    if orders != run.distinct:
        problems.append(f"{orders} orders stored for {run.distinct} distinct")
    if lines != 2 * run.distinct:
        problems.append(f"{lines} lines stored for {2 * run.distinct}")
    # newest wins: recompute the newest version of a sample of orders in the first batches
    expected: dict[str, OrderRecord] = {}
    for index in range(min(3, work.batches)):
        for rec in work.batch_records(index):
            seen = expected.get(rec.platform_order_id)
            if seen is None or rec.updated_at > seen.updated_at:
                expected[rec.platform_order_id] = rec
    with runtime.db.engine.connect() as conn:
        stored = dict(conn.execute(select(Order.platform_order_id, Order.platform_updated_at).where(
            Order.shop_id == shop_id, Order.platform_order_id.in_(list(expected)[:900]))).all())
    stale = [pid for pid, ts in stored.items() if ts != expected[pid].updated_at]
    if stale:
        problems.append(f"{len(stale)} orders do not hold their newest version")
    if problems:
        raise SystemExit("verification failed: " + "; ".join(problems))
    return f"{orders:,} orders, {lines:,} lines, {customers:,} customers; newest versions kept"


def breakdown_table(db: str, run: Run, timer: StatementTimer) -> Table:
    table = Table(title=f"{db}: where upsert_orders spends its time ({run.distinct:,} orders, "
                        f"{run.seconds:.1f} s)", title_justify="left")
    for col in ("part", "calls", "seconds", "share", "µs / order"):
        table.add_column(col, justify="left" if col == "part" else "right")
    inside = 0.0
    for kind, (calls, spent) in sorted(timer.times.items(), key=lambda kv: -kv[1][1]):
        inside += spent
        table.add_row(f"driver: {kind}", f"{calls:,}", f"{spent:.2f}", f"{spent / run.seconds:.0%}",
                      f"{spent / run.distinct * 1e6:.0f}")
    table.add_row("driver: COMMIT", "", f"{run.commit_seconds:.2f}",
                  f"{run.commit_seconds / run.seconds:.0%}", f"{run.commit_seconds / run.distinct * 1e6:.0f}")
    python = run.seconds - inside - run.commit_seconds
    table.add_row("outside SQLAlchemy's cursor events: Python (dedupe, building rows) and, on "
                  "PostgreSQL, the binary COPY of each staging load (--profile splits it)", "",
                  f"{python:.2f}", f"{python / run.seconds:.0%}",
                  f"{python / run.distinct * 1e6:.0f}", end_section=True)
    table.add_row("total", "", f"{run.seconds:.2f}", "100%", f"{run.seconds / run.distinct * 1e6:.0f}")
    return table


def profile_report(console: Console, profiler: cProfile.Profile, run: Run) -> None:
    """Where the repository's time goes, by step of ``upsert_orders``."""
    stats = pstats.Stats(profiler)
    steps = [("_merge_customers (stage + INSERT … SELECT … ON CONFLICT)", "repository.py",
              "_merge_customers"),
             ("_order_row (build the order rows)", "repository.py", "_order_row"),
             ("_load (COPY on PostgreSQL, multi-row VALUES on SQLite; every table)", "repository.py",
              "_load"),
             ("_replace_lines (DELETE replaced lines + load the new)", "repository.py",
              "_replace_lines"),
             ("record_refunds", "repository.py", "record_refunds"),
             ("SQL compilation (compiler.process)", "compiler.py", "process"),
             ("statement construction (values/on_conflict)", "dml.py", "values"),
             ("DBAPI execute (driver + database)", None, "execute' of"),
             ("DBAPI executemany (driver + database)", None, "executemany' of"),
             ("commit (fsync)", None, "commit' of"),
             ("upsert_orders total", "repository.py", "upsert_orders")]
    total = 0.0
    found = {}
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for label, fname, fn in steps:
            if fname is None:
                if fn in name:
                    found[label] = found.get(label, 0.0) + ct
            elif filename.endswith(fname) and name == fn:
                found[label] = max(found.get(label, 0.0), ct)
        if filename.endswith("repository.py") and name == "upsert_orders":
            total = ct
    table = Table(title="Where upsert_orders spends its time (cProfile, cumulative)",
                  title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    table.add_column("µs / order", justify="right")
    for label, _f, _n in steps:
        if label in found:
            table.add_row(label, f"{found[label]:.2f}", f"{found[label] / total:.0%}" if total else "",
                          f"{found[label] / max(1, run.distinct) * 1e6:.0f}")
    console.print(table)
    console.print("Top functions by own time:")
    stats.sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000,
                        help="order records to upsert per store (default %(default)s)")
    parser.add_argument("--batch", type=int, default=1000, help="records per batch (default %(default)s)")
    parser.add_argument("--duplicates", type=float, default=0.05,
                        help="share of each batch that repeats an order of the batch (default %(default)s)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"),
                        help="default: both when PostgreSQL answers, else sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("CCMS_BENCH_DATABASE_URL")
                        or os.environ.get("CCMS_TEST_DATABASE_URL") or DEFAULT_PG_URL,
                        help="PostgreSQL URL of a user that may create databases (default %(default)s); "
                             "ccms_bench_sync is dropped and created there")
    parser.add_argument("--profile", action="store_true",
                        help="also profile upsert_orders (cProfile) on 20 batches and show where time goes")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                        help="on a PostgreSQL server with autovacuum off, ANALYZE between batches as "
                             "autoanalyze would (default: on)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for the machine to be idle before starting")
    parser.add_argument("--workdir", default=None, help="where the SQLite file goes (default: tmp)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 130)

    if args.db is None:
        args.db = "both" if pg_reachable(args.pg_url) else "sqlite"
        if args.db == "sqlite":
            console.print(f"PostgreSQL not reachable at {args.pg_url}: SQLite only "
                          "(set CCMS_BENCH_DATABASE_URL or --pg-url)")
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in dbs and not pg_reachable(args.pg_url):
        console.print(f"[red]PostgreSQL not reachable at {args.pg_url}[/red]")
        return 2

    work = Workload(args.orders, args.batch, args.duplicates, args.seed)
    distinct = sum(work.distinct_in(i) for i in range(work.batches))
    console.print(f"{work.orders:,} order records ({distinct:,} distinct orders, "
                  f"{args.duplicates:.0%} in-batch duplicates), 2 lines and a customer each "
                  f"(~{work.customers:,} customers), {work.batches} batches of {work.batch}; "
                  f"{os.cpu_count()} CPUs")
    signal.signal(signal.SIGTERM, raise_exit)  # clean up the scratch files on a kill too
    busy = wait_for_quiet(console, args.quiet_wait)
    console.print(f"machine {busy:.0%} busy before the run"
                  f"{' [yellow](other work is running: figures will be low)[/yellow]' if busy > .15 else ''}")
    workdir = Path(tempfile.mkdtemp(prefix="ccms-bench-sync-", dir=args.workdir))
    results = []
    breakdowns = []
    try:
        for db in dbs:
            url = fresh_store(db, args.pg_url, workdir)
            settings = Settings.from_env({"CCMS_DATABASE_URL": url, "CCMS_SECRET_KEY": "bench",
                                          "CCMS_VAR_DIR": str(workdir / "var")})
            runtime = build_runtime(settings)
            try:
                with runtime.db.session() as session:
                    shop_id = repository.create_shop(session, runtime.box, platform="shopify",
                                                     domain=SHOP_DOMAIN).shop.id
                columns = [TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[rate]:>16}"), TimeElapsedColumn(),
                           TimeRemainingColumn()]
                account = CpuAccount([os.getpid()], ["ccms_bench_sync"])
                with Progress(*columns, console=console) as progress:
                    bars = _FieldsProgress(progress, {"rate": ""})
                    account.start()
                    base = run_baseline(url, work, shop_id, bars, f"{db}: baseline executemany")
                    base.others_cpu = account.others(0.0)
                    timer = StatementTimer(runtime.db.engine)
                    analyze = None
                    if args.analyze and autovacuum_off(runtime.db.engine):
                        analyze = AutoAnalyze(runtime.db.engine)
                        console.print("  autovacuum is off on this server: ANALYZE runs between "
                                      "batches as autoanalyze would (50 + 10% of rows changed), "
                                      "outside the timed region (--no-analyze to measure without)")
                    account.start()
                    try:
                        repo = run_repository(runtime, work, shop_id, bars,
                                              f"{db}: repository.upsert_orders", timer=timer,
                                              analyze=analyze)
                    finally:
                        timer.close()
                    repo.others_cpu = account.others(0.0)
                check = verify(runtime, shop_id, work, repo)
                console.print(f"  {db}: {check}")
                breakdowns.append(breakdown_table(db, repo, timer))
                results.append((db, base, repo))
                if args.profile:
                    _profile(console, url, runtime, work, shop_id, db)
            finally:
                runtime.close()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"Order sync: {work.orders:,} records ({distinct:,} distinct) in batches of "
                        f"{work.batch}, one transaction per batch", title_justify="left")
    for col in ("store", "baseline rows/s", "upsert_orders records/s", "distinct orders/s",
                "upsert / baseline", "goal", "met", "others CPU"):
        table.add_column(col, justify="left" if col == "store" else "right")
    for db, base, repo in results:
        goal = GOALS[db]
        met = repo.distinct_per_s >= goal
        table.add_row(db, f"{base.records_per_s:,.0f}", f"{repo.records_per_s:,.0f}",
                      f"{repo.distinct_per_s:,.0f}", f"{repo.seconds and base.seconds / repo.seconds:.2f}",
                      f"≥ {goal:,}/s", "[green]yes[/green]" if met else "[red]no[/red]",
                      f"{base.others_cpu:.2f} / {repo.others_cpu:.2f}")
    for breakdown in breakdowns:
        console.print(breakdown)
    console.print(table)
    return 0


class _FieldsProgress:
    """A Progress whose tasks always carry the ``rate`` field the columns show."""

    def __init__(self, progress: Progress, fields: dict):
        self.progress = progress
        self.fields = fields

    def add_task(self, description: str, total: int):
        return self.progress.add_task(description, total=total, **self.fields)

    def update(self, task, **kwargs):
        self.progress.update(task, **kwargs)


def _profile(console: Console, url: str, runtime, work: Workload, shop_id: int, db: str) -> None:
    """Profile upsert_orders on fresh orders (a second shop, so every order is new again)."""
    with runtime.db.session() as session:
        shop2 = repository.create_shop(session, runtime.box, platform="shopify",
                                       domain="bench-sync-profile.myshopify.com").shop.id
    profiler = cProfile.Profile()
    run = run_repository(runtime, work, shop2, None, "", batches=min(20, work.batches),
                         profiler=profiler)
    console.print(f"[bold]{db}[/bold]: profiled {run.records:,} records in {run.seconds:.2f} s "
                  f"(with profiler overhead)")
    profile_report(console, profiler, run)


if __name__ == "__main__":
    sys.exit(main())
