"""Order backfill benchmark (issue 5: "orders/s fetched and stored from a loopback platform serving
50k orders with realistic pagination and rate-limit headers").

The three loopback platforms of the test suite (``tests/platform_servers``) run in a child process
(their own interpreter: the servers' JSON work does not share our GIL) and serve N orders each,
with the documented pagination and rate-limit headers and no sleep of their own:

* Shopify — a GraphQL bulk export (``bulkOperationRunQuery``; the export completes at once here),
  its JSONL read in ranged pages of 500 orders, then the catch-up ``orders`` page; query-cost
  ``throttleStatus`` on every answer (standard plan: 2,000 points, 100 a second);
* Cafe24 — ``/api/v2/admin/orders`` by 88-day ``order_date`` windows, each counted, 1,000 orders a
  call with ``offset``; the 40-call bucket draining 2 a second is enforced (429 past it), so the
  client's pauses by ``X-Api-Call-Limit`` are real waits;
* WooCommerce — ``/wc/v3/orders?orderby=modified&order=asc`` 100 a page, keyed by
  ``modified_after``.

For each platform and store (SQLite WAL and PostgreSQL) three runs, each on empty tables:

* **fetch only** — the adapter's ``list_orders`` page after page, records mapped, nothing stored:
  the platform's and the client's ceiling;
* **store only** — the same pages replayed from memory through ``backfill_orders`` (upsert of each
  page with its cursor in one transaction, ``order_synced`` per changed order): the store's ceiling;
* **fetch + store** — ``backfill_orders`` against the loopback platform: the real thing.

It prints orders/s of each and the ratios of fetch + store to each ceiling, and to the rate both
would reach one after the other (1 / (1/fetch + 1/store)); the seconds the clients waited because
a rate-limit header asked them to are printed beside.

    python bench/backfill.py                                  # 50,000 orders, every platform, both stores
    python bench/backfill.py --orders 10000 --platform cafe24 --db sqlite
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from loadgen import raise_exit  # noqa: E402 — a sibling script
from ccms_addon import sync  # noqa: E402
from ccms_addon.config import Settings  # noqa: E402
from ccms_addon.platforms import OrderPage  # noqa: E402
from ccms_addon.runtime import build_runtime  # noqa: E402
from ccms_addon.store import repository  # noqa: E402
from ccms_addon.store.migrations import upgrade  # noqa: E402

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PLATFORMS = ("shopify", "cafe24", "woocommerce")
SHOPIFY_TOKEN = "shpat_bench"
SHOPIFY_DOMAIN = "bench-backfill.myshopify.com"
CAFE24_MALL = "benchmall"
#: the orders' updates are spread over this long before "now"
HISTORY = timedelta(days=700)


# ------------------------------------------------------------------------------------------------
# The loopback platforms, in a child process
# ------------------------------------------------------------------------------------------------


def serve_platforms(count: int, platforms: tuple[str, ...], pipe) -> None:
    """Child process: fill and serve the platforms, send their addresses, serve until told."""
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from werkzeug.serving import make_server

    from tests.platform_servers import cafe24 as cafe24_fake
    from tests.platform_servers import woocommerce as woo_fake
    from tests.platform_servers.shopify import ShopifyAdminServer
    from tests.platform_servers.shopify_orders import make_graphql_order

    now = datetime.now(timezone.utc) - timedelta(days=1)
    step = HISTORY / max(count, 1)
    started, addresses = [], {}
    if "shopify" in platforms:
        server = ShopifyAdminServer(SHOPIFY_TOKEN, shop_domain=SHOPIFY_DOMAIN)
        server.state.graphql_orders.bulk_seconds = 0.0
        server.state.graphql_orders.add(*(make_graphql_order(n, updated_at=now - HISTORY + n * step)
                                          for n in range(count)))
        server.__enter__()
        started.append(server.__exit__)
        addresses["shopify"] = {"url": server.base_url}
    if "cafe24" in platforms:
        state = cafe24_fake.Cafe24ServerState(enforce_bucket=True)
        for n in range(count):
            when = (now - HISTORY + n * step).astimezone(cafe24_fake.KST)
            state.add_order(cafe24_fake.make_order(f"{when:%Y%m%d}-{n:07d}",
                                                   order_date=when.isoformat()))
        http = make_server("127.0.0.1", 0, cafe24_fake.create_app(state), threaded=True)
        _thread(http)
        started.append(lambda *a: http.shutdown())
        addresses["cafe24"] = {"url": f"http://127.0.0.1:{http.server_port}",
                               "token": state.access_token,
                               "history_start": (now - HISTORY).astimezone(cafe24_fake.KST)
                               .date().isoformat()}
    if "woocommerce" in platforms:
        site = woo_fake.FakeWooCommerce()
        for n in range(count):
            stamp = (now - HISTORY + n * step).strftime("%Y-%m-%dT%H:%M:%S")
            site.add_orders(woo_fake.make_order(1000 + n, modified=stamp,
                                                date_created_gmt=stamp))
        http_woo = make_server("127.0.0.1", 0, woo_fake.create_app(site), threaded=True)
        _thread(http_woo)
        started.append(lambda *a: http_woo.shutdown())
        addresses["woocommerce"] = {"url": f"http://127.0.0.1:{http_woo.server_port}",
                                    "key": site.consumer_key, "secret": site.consumer_secret}
    pipe.send(addresses)
    parent = os.getppid()
    while not pipe.poll(1.0):  # anything: stop; a parent that died without a word: stop too
        if os.getppid() != parent:
            break
    for stop in started:
        stop(None, None, None)


def _thread(server) -> None:
    import threading
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()


# ------------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------------


def _sa(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def pg_reachable(url: str) -> bool:
    try:
        engine = create_engine(_sa(url), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


def pg_database(admin: str, name: str, *, drop_only: bool = False) -> str:
    engine = create_engine(_sa(admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop_only:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))


def empty_tables(runtime) -> None:
    from ccms_addon.store.models import Base
    with runtime.db.engine.begin() as conn:
        if runtime.db.dialect == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


def make_shop(runtime, platform: str, address: dict) -> int:
    if platform == "shopify":
        domain, credentials = SHOPIFY_DOMAIN, {"access_token": SHOPIFY_TOKEN}
        settings = {"api_base_url": address["url"]}
    elif platform == "cafe24":
        domain, credentials = CAFE24_MALL, {"access_token": address["token"]}
        settings = {"api_base_url": address["url"], "shop_no": "1",
                    "sync_history_start": address["history_start"]}
    else:
        domain = address["url"]
        credentials = {"consumer_key": address["key"], "consumer_secret": address["secret"]}
        settings = {}
    with runtime.db.session() as session:
        return repository.create_shop(session, runtime.box, platform=platform, domain=domain,
                                      credentials=credentials, settings=settings).shop.id


class AutoAnalyze:
    """What autovacuum's autoanalyze would do on PostgreSQL: ANALYZE a table once more than
    50 + 10% of its rows changed since the last time (the server's defaults), after a page, its
    time taken out of the measurement. Only on a server with autovacuum off (test servers often
    are): without statistics the planner treats the tables the backfill fills as empty, and the
    upserts grow slower page after page (a 20,000-order run measured 7x slower)."""

    TABLES = ("customers", "orders", "order_lines")

    def __init__(self, engine) -> None:
        self.engine = engine
        self.analyzed = {t: 0 for t in self.TABLES}
        self.seconds = 0.0

    def reset(self) -> None:
        self.analyzed = {t: 0 for t in self.TABLES}
        self.seconds = 0.0

    def __call__(self, status=None) -> None:
        started = time.perf_counter()
        with self.engine.connect() as conn:
            rows = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in self.TABLES}
            due = [t for t in self.TABLES
                   if rows[t] - self.analyzed[t] > 50 + 0.1 * self.analyzed[t]]
            if due:
                conn.execute(text("ANALYZE " + ", ".join(due)))
                conn.commit()
                self.analyzed.update({t: rows[t] for t in due})
        self.seconds += time.perf_counter() - started


def autovacuum_off(engine) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return conn.scalar(text("SHOW autovacuum")) == "off"


# ------------------------------------------------------------------------------------------------
# The runs
# ------------------------------------------------------------------------------------------------


class CountingSleep:
    """The adapters' sleep: really sleeps, and adds up what the rate-limit headers asked for."""

    def __init__(self) -> None:
        self.total = 0.0

    def __call__(self, seconds: float) -> None:
        self.total += seconds
        time.sleep(seconds)


def adapter_for(platform: str, sleep: CountingSleep):
    if platform == "shopify":
        from ccms_addon.plugins.shopify import sync as shopify_sync
        from ccms_addon.plugins.shopify.adapter import ShopifyAdapter
        shopify_sync.reset_buckets()
        return ShopifyAdapter(sleep=sleep)
    if platform == "cafe24":
        from ccms_addon.plugins.cafe24 import sync as cafe24_sync
        from ccms_addon.plugins.cafe24.adapter import Cafe24Adapter
        cafe24_sync.reset_pacing()
        return Cafe24Adapter(sleep=sleep)
    from ccms_addon.plugins.woocommerce.adapter import WooCommerceAdapter
    return WooCommerceAdapter(sleep=sleep)


class Replay:
    """An adapter whose ``list_orders`` hands back recorded pages: storing without fetching."""

    def __init__(self, name: str, pages: list[OrderPage]) -> None:
        self.name = name
        self.pages = pages
        self.by_cursor = {None: 0, **{p.next_cursor: i + 1 for i, p in enumerate(pages)
                                      if p.next_cursor}}

    def list_orders(self, shop, *, updated_since, cursor):
        return self.pages[self.by_cursor[cursor]]


@dataclass
class Result:
    platform: str
    db: str
    orders: int
    pages: int
    fetch: float       # seconds
    store: float
    both: float
    waited_fetch: float
    waited_both: float

    def rate(self, seconds: float) -> float:
        return self.orders / seconds if seconds else float("inf")


def fetch_only(runtime, platform: str, shop_id: int, sleep: CountingSleep
               ) -> tuple[list[OrderPage], float]:
    from ccms_addon.store.models import Shop
    adapter = adapter_for(platform, sleep)
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        session.expunge(shop)
    context = runtime.shop_context(shop, adapter)
    pages, cursor = [], None
    started = time.perf_counter()
    while True:
        page = adapter.list_orders(context, updated_since=None, cursor=cursor)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            return pages, time.perf_counter() - started


#: seconds a platform's rate-limit bucket takes to empty (Cafe24: 40 calls at 2 a second); a
#: run starts with an empty bucket, as a backfill that was not preceded by another does
BUCKET_DRAIN = {"cafe24": 20.0}


def settle(platform: str) -> None:
    time.sleep(BUCKET_DRAIN.get(platform, 0.0))


def run_platform(console: Console, runtime, platform: str, db: str, address: dict,
                 analyze: AutoAnalyze | None) -> Result:
    settle(platform)
    empty_tables(runtime)
    shop_id = make_shop(runtime, platform, address)
    fetch_sleep = CountingSleep()
    pages, fetch = fetch_only(runtime, platform, shop_id, fetch_sleep)
    orders = sum(len(p.records) for p in pages)
    console.print(f"  {platform}/{db}: fetch only   {orders:,} orders in {len(pages)} pages, "
                  f"{fetch:.1f}s ({fetch_sleep.total:.1f}s waiting for rate limits)")

    empty_tables(runtime)
    shop_id = make_shop(runtime, platform, address)
    runtime.platforms[platform] = Replay(platform, pages)
    if analyze:
        analyze.reset()
    started = time.perf_counter()
    stored = sync.backfill_orders(runtime, shop_id, progress=analyze)
    store = time.perf_counter() - started - (analyze.seconds if analyze else 0.0)
    assert stored.completed and stored.changed == len({r.platform_order_id for p in pages
                                                       for r in p.records})
    console.print(f"  {platform}/{db}: store only   {store:.1f}s "
                  f"({stored.changed:,} orders inserted)")

    empty_tables(runtime)
    shop_id = make_shop(runtime, platform, address)
    settle(platform)
    both_sleep = CountingSleep()
    runtime.platforms[platform] = adapter_for(platform, both_sleep)
    if analyze:
        analyze.reset()
    started = time.perf_counter()
    result = sync.backfill_orders(runtime, shop_id, progress=analyze, sleep=both_sleep)
    both = time.perf_counter() - started - (analyze.seconds if analyze else 0.0)
    assert result.completed and result.changed == stored.changed
    console.print(f"  {platform}/{db}: fetch + store {both:.1f}s "
                  f"({both_sleep.total:.1f}s waiting for rate limits)")
    return Result(platform, db, orders, len(pages), fetch, store, both, fetch_sleep.total,
                  both_sleep.total)


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of the machine's CPU time spent busy over ``seconds`` (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return sum(values), values[3] + values[4]
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=50_000,
                        help="orders each platform serves (default %(default)s)")
    parser.add_argument("--platform", choices=(*PLATFORMS, "all"), default="all")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"),
                        help="default: both when PostgreSQL answers, else sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("CCMS_BENCH_DATABASE_URL")
                        or DEFAULT_PG_URL,
                        help="PostgreSQL URL of a user that may create databases; a database "
                             "ccms_bench_backfill_<pid> is created there and dropped")
    parser.add_argument("--hooks", action=argparse.BooleanOptionalAction, default=True,
                        help="keep the after-sale programs' order_synced hook (default: on, as "
                             "in production)")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                        help="on a PostgreSQL server with autovacuum off, ANALYZE after pages as "
                             "autoanalyze would (default: on)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 130)
    platforms = PLATFORMS if args.platform == "all" else (args.platform,)
    if args.db is None:
        args.db = "both" if pg_reachable(args.pg_url) else "sqlite"
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in dbs and not pg_reachable(args.pg_url):
        console.print(f"[red]PostgreSQL not reachable at {args.pg_url}[/red]")
        return 2

    console.print(f"{args.orders:,} orders per platform ({', '.join(platforms)}); stores: "
                  f"{', '.join(dbs)}; {os.cpu_count()} CPUs, machine "
                  f"{cpu_busy():.0%} busy before the run")
    signal.signal(signal.SIGTERM, raise_exit)  # a kill still stops the platforms, drops the db
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve_platforms, args=(args.orders, platforms, theirs),
                            daemon=True)
    started = time.perf_counter()
    child.start()
    addresses = ours.recv()
    console.print(f"platforms filled and serving in {time.perf_counter() - started:.0f}s")
    workdir = Path(tempfile.mkdtemp(prefix="ccms-bench-backfill-"))
    pg_name = f"ccms_bench_backfill_{os.getpid()}"
    results: list[Result] = []
    try:
        for db in dbs:
            if db == "sqlite":
                url = f"sqlite:///{workdir / 'backfill.sqlite3'}"
            else:
                url = pg_database(args.pg_url, pg_name)
            upgrade(url)
            runtime = build_runtime(Settings.from_env({
                "CCMS_DATABASE_URL": url, "CCMS_SECRET_KEY": "bench",
                "CCMS_VAR_DIR": str(workdir / "var")}))
            if not args.hooks:
                runtime.pm.unregister(name="ccms-programs")
            analyze = AutoAnalyze(runtime.db.engine) \
                if args.analyze and autovacuum_off(runtime.db.engine) else None
            if analyze:
                console.print("  autovacuum is off on this server: ANALYZE runs after pages as "
                              "autoanalyze would, outside the measured time (--no-analyze "
                              "to measure without)")
            try:
                for platform in platforms:
                    results.append(run_platform(console, runtime, platform, db,
                                                addresses[platform], analyze))
            finally:
                runtime.close()
    finally:
        ours.send("stop")
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()
        if "postgresql" in dbs:
            pg_database(args.pg_url, pg_name, drop_only=True)

    table = Table(title=f"Backfill of {args.orders:,} orders per platform "
                        f"(order_synced hooks {'on' if args.hooks else 'off'}); orders/s")
    for column in ("platform", "store", "pages", "fetch", "store", "fetch+store", "÷fetch",
                   "÷store", "÷serial", "waits (s)"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in results:
        fetch, store, both = r.rate(r.fetch), r.rate(r.store), r.rate(r.both)
        serial = 1 / (1 / fetch + 1 / store)
        table.add_row(r.platform, r.db, f"{r.pages:,}", f"{fetch:,.0f}", f"{store:,.0f}",
                      f"{both:,.0f}", f"{both / fetch:.2f}", f"{both / store:.2f}",
                      f"{both / serial:.2f}", f"{r.waited_fetch:.1f} / {r.waited_both:.1f}")
    console.print(table)
    console.print("fetch: list_orders only; store: the same pages replayed into backfill_orders; "
                  "÷serial: fetch+store over 1/(1/fetch + 1/store); waits: seconds the clients "
                  "waited for rate limits (fetch / fetch+store)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
