"""Webhook ingest benchmark (DESIGN.md §7): deliveries/s and acknowledgement latency under gunicorn.

One run measures, on the same machine, the same gunicorn sync-worker count and the same load:

  (a) a bare Flask endpoint that reads the body and answers 200      — the framework's ceiling
  (b) HMAC-SHA256 check + one durable INSERT through the driver       — the durability limit
  (c) the real ``ccms_addon.wsgi:app`` at ``/webhooks/shopify``         — the product

then (c) again at a fixed 300 deliveries/s (open loop) for its p99, and prints (c)/(a) and (c)/(b).
(b) and (c) run on SQLite (the embedded default: WAL, synchronous=FULL) and on PostgreSQL when it
answers. Every delivery is unique — its own X-Shopify-Webhook-Id and its own order id in the real
12 KB Shopify ``orders/create`` sample, signed with the app secret as Shopify signs — so nothing is
de-duplicated away; afterwards the store must hold exactly the deliveries answered ``accepted``.

The load generator is ``bench/loadgen.py`` (shared with ``bench/widget.py``), run as separate
processes: non-blocking sockets on loopback, a bounded number of connections (closed loop) or a
fixed arrival rate (open loop, latency counted from each request's scheduled time), bounded in count
and time; it stops by itself. Keep-alive is used when the server allows it; gunicorn's sync workers
close after every answer, so each delivery opens a connection, as it does from a platform.

    python bench/webhooks.py                       # SQLite and (when it answers) PostgreSQL
    python bench/webhooks.py --db sqlite --duration 10 --workers 4

Every process it starts (gunicorn, load generators) is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from loadgen import (ID_MARK, CpuAccount, Processes, clean_env, cli,  # noqa: E402
                     fresh_pg_database, free_port, percentile, pg_reachable, raise_exit,
                     run_load, sa_url, wait_for_quiet)
DEFAULT_SAMPLE = REPO.parent / "shared" / "platform-samples" / "shopify" / "orders-create.json"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

SECRET = "shpss_bench_secret"
SHOP_DOMAIN = "bench-shop.myshopify.com"
FIXED_RATE = 300.0



# ==================================================================================================
# Orchestration
# ==================================================================================================


@dataclass
class Endpoint:
    """One gunicorn server and what was measured on it."""

    key: str
    label: str
    db: str | None
    url: str | None = None  # its store
    shop_id: int | None = None
    port: int = 0
    proc: subprocess.Popen | None = None
    windows: list[dict] = field(default_factory=list)  # one per closed-loop round
    latencies: array = field(default_factory=lambda: array("d"))
    fixed: dict | None = None  # the fixed-rate run, (c) only
    runs: list[dict] = field(default_factory=list)  # every load sent, discarded ones included

    def add(self, out: dict, latencies: array) -> None:
        self.windows.append(out)
        self.latencies.extend(latencies)

    @property
    def rps(self) -> float:
        return (sum(w["ok_in_window"] for w in self.windows)
                / sum(w["window"] for w in self.windows))

    @property
    def round_rps(self) -> list[float]:
        return [w["ok_in_window"] / w["window"] for w in self.windows]

    def percentile(self, q: float) -> float:
        return percentile(sorted(self.latencies), q)

    def total(self, key: str) -> int:
        return sum(run.get(key, 0) for run in self.runs)

    @property
    def others(self) -> float:
        return sum(w["others_cpu"] for w in self.windows) / len(self.windows)


class Bench:
    def __init__(self, args, console):
        self.args = args
        self.console = console
        self.procs = Processes()
        self.workdir = Path(tempfile.mkdtemp(prefix="ccms-bench-", dir=args.workdir))
        self.template = self.workdir / "body.json"
        self.sample_bytes = self._make_template()
        self.seq = 0
        self.failures: list[str] = []
        self.logs: list = []

    # ---- inputs ----------------------------------------------------------------------------------

    def _make_template(self) -> int:
        sample = Path(self.args.sample)
        if sample.is_file():
            raw = sample.read_bytes()
        else:
            self.console.print(f"[yellow]sample {sample} not found: using a synthetic ~12 KB "
                               "Shopify order instead[/yellow]")
            raw = _synthetic_order()
        data = json.loads(raw)
        old = str(data["id"])
        if raw.count(old.encode()) == 0:
            raise SystemExit("the sample's order id does not appear in its text")
        # every occurrence (id, admin_graphql_api_id, order_status_url…) becomes the unique id
        self.template.write_bytes(raw.replace(old.encode(), ID_MARK.encode()))
        return len(raw)

    # ---- servers ---------------------------------------------------------------------------------

    def gunicorn(self, app: str, env: dict, *, pythonpath: Path | None = None
                 ) -> tuple[subprocess.Popen, int]:
        port = free_port()
        cmd = [sys.executable, "-m", "gunicorn", "--worker-class", "sync",
               "--workers", str(self.args.workers), "--bind", f"127.0.0.1:{port}",
               "--backlog", "2048", "--graceful-timeout", "5", "--log-level", "warning"]
        if pythonpath:
            cmd += ["--pythonpath", str(pythonpath)]
        cmd.append(app)
        log_path = self.workdir / f"gunicorn-{port}.log"
        log = open(log_path, "wb")
        self.logs.append(log)
        proc = self.procs.start(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        probe = "/" if app.startswith("apps:") else "/healthz"
        deadline = time.time() + 60
        import http.client
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn {app} exited ({proc.returncode}):\n"
                                 + log_path.read_text(errors="replace")[-3000:])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", probe)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return proc, port
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit(f"gunicorn {app} did not answer on port {port}")
            time.sleep(0.2)

    def store_url(self, db: str, name: str) -> str:
        if db == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.sqlite3')}"
        return fresh_pg_database(self.args.pg_url, name)

    def start_bare(self) -> Endpoint:
        ep = Endpoint("a", "(a) bare Flask", None)
        ep.proc, ep.port = self.gunicorn("apps:bare_app", clean_env(), pythonpath=HERE)
        return ep

    def start_raw(self, db: str) -> Endpoint:
        url = self.store_url(db, "ccms_bench_raw")
        _execute(url, _raw_schema(url))
        env = {**clean_env(), "BENCH_RAW_DATABASE_URL": url, "BENCH_SHOPIFY_SECRET": SECRET}
        ep = Endpoint("b", "(b) HMAC + INSERT (driver)", db, url)
        ep.proc, ep.port = self.gunicorn("apps:raw_app", env, pythonpath=HERE)
        return ep

    def start_app(self, db: str) -> Endpoint:
        """The real app on a fresh store: ``ccms-addon db upgrade``, ``ccms-addon shops add``."""
        url = self.store_url(db, "ccms_bench")
        env = {**clean_env(), "CCMS_DATABASE_URL": url, "CCMS_SHOPIFY_API_SECRET": SECRET,
               "CCMS_SECRET_KEY": "bench-secret-key", "CCMS_VAR_DIR": str(self.workdir / f"var-{db}")}
        command = cli()
        subprocess.run(command + ["db", "upgrade"], env=env, check=True, cwd=self.workdir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shop = subprocess.run(command + ["shops", "add", "--platform", "shopify", "--domain", SHOP_DOMAIN],
                              env=env, check=True, cwd=self.workdir, capture_output=True, text=True)
        ep = Endpoint("c", "(c) /webhooks/shopify", db, url)
        ep.shop_id = int(json.loads(shop.stdout.strip().splitlines()[-1])["shop_id"])
        ep.proc, ep.port = self.gunicorn(self.args.app, env, pythonpath=self.args.app_pythonpath)
        return ep

    # ---- load ------------------------------------------------------------------------------------

    def load(self, port: int, *, duration: float, warmup: float, rate: float | None = None
             ) -> tuple[dict, array]:
        """Run the load generator process(es) against one port; merged counters and latencies."""
        args = self.args
        procs = 1 if rate else args.loadgen_procs
        self.account.start()
        start_at = time.time() + 0.5
        configs = []
        for _ in range(procs):
            self.seq += 1
            configs.append(dict(
                host="127.0.0.1", port=port, expect=None,
                stream=dict(kind="shopify", template=str(self.template), secret=SECRET,
                            path="/webhooks/shopify", shop_domain=SHOP_DOMAIN,
                            tag=(os.getpid() & 0xffffff) << 8 | (self.seq & 0xff),
                            id_base=(5_000_000 + self.seq) * 10**9),
                connections=512 if rate else max(1, args.connections // procs),
                rate=(rate / procs) if rate else None,
                max_requests=(int(rate * (duration + warmup) * 1.01 + 1) if rate
                              else args.max_requests // procs),
                start_at=start_at, warmup=warmup, duration=duration,
                timeout=30.0, latency_file=str(self.workdir / f"lat-{self.seq}.bin")))
        merged, latencies = run_load(self.procs, self.workdir, configs)
        merged["window"] = duration
        merged["loadgen_cpu"] = merged["cpu_seconds"] / (duration + warmup)
        merged["ours_cpu"], merged["others_cpu"] = self.account.usage(merged["cpu_total"])
        return merged, latencies

    def _report_problems(self, ep: Endpoint, out: dict) -> None:
        bad = {k: v for k, v in out["statuses"].items() if not k.startswith("2")}
        if bad or out["errors"] or out["unanswered"]:
            self.failures.append(f"{ep.label} {ep.db or ''}: non-2xx {bad}, errors "
                                 f"{out['error_kinds']}, unanswered {out['unanswered']}")

    def _contaminated(self, out: dict, attempt: int, name: str) -> bool:
        """True if other work took too much CPU during the window and it is measured again."""
        if out["others_cpu"] <= self.args.max_others or attempt >= self.args.retries:
            return False
        self.console.print(f"  [yellow]discarded {name}: other processes used "
                           f"{out['others_cpu']:.2f} CPU during the window; measuring again[/yellow]")
        wait_for_quiet(self.console, self.args.retry_wait)
        return True

    def closed_round(self, ep: Endpoint, round_no: int, slot: float, warmup: float) -> None:
        name = f"{ep.label}{', ' + ep.db if ep.db else ''}"
        for attempt in range(self.args.retries + 1):
            with self.console.status(f"round {round_no}: {name}: {self.args.connections} connections"):
                out, latencies = self.load(ep.port, duration=slot, warmup=warmup)
            ep.runs.append(out)
            self._report_problems(ep, out)
            if not self._contaminated(out, attempt, f"round {round_no} of {name}"):
                break
        ep.add(out, latencies)
        ordered = sorted(latencies)
        self.console.print(f"  round {round_no}  {name:<40} {out['ok_in_window'] / slot:7.0f} req/s  "
                           f"p50 {percentile(ordered, .5) * 1e3:6.2f} ms  "
                           f"p99 {percentile(ordered, .99) * 1e3:7.2f} ms  "
                           f"(CPU: this run {out['ours_cpu']:.2f}, of which load generator "
                           f"{out['loadgen_cpu']:.2f}; others {out['others_cpu']:.2f})")

    def fixed_rate(self, ep: Endpoint, rate: float) -> None:
        duration = self.args.fixed_duration
        for attempt in range(self.args.retries + 1):
            with self.console.status(f"{ep.label}, {ep.db}: {rate:.0f} deliveries/s for {duration:g} s"):
                out, latencies = self.load(ep.port, duration=duration, warmup=self.args.warmup,
                                           rate=rate)
            ep.runs.append(out)
            self._report_problems(ep, out)
            if not self._contaminated(out, attempt, f"the fixed-rate run of {ep.label}, {ep.db}"):
                break
        ordered = sorted(latencies)
        out.update(rps=out["ok_in_window"] / duration, p50=percentile(ordered, .5),
                   p99=percentile(ordered, .99), max=ordered[-1] if ordered else float("nan"))
        ep.fixed = out
        self.console.print(f"  fixed    {ep.label + ', ' + ep.db + f' at {rate:.0f}/s':<40} "
                           f"{out['rps']:7.0f} req/s  p50 {out['p50'] * 1e3:6.2f} ms  "
                           f"p99 {out['p99'] * 1e3:7.2f} ms  (others {out['others_cpu']:.2f} CPU)")

    def verify(self, ep: Endpoint) -> None:
        """The store must hold exactly the deliveries answered ``accepted`` (nothing lost, nothing
        de-duplicated away, nothing stored twice)."""
        if ep.key == "b":
            stored = _count(ep.url, "SELECT count(*) FROM raw_deliveries")
        else:
            stored = _count(ep.url, "SELECT count(*) FROM webhook_deliveries "
                                    f"WHERE shop_id = {int(ep.shop_id)}")
        accepted, duplicates = ep.total("accepted"), ep.total("duplicate")
        ok = accepted == stored and not duplicates
        colour = "green" if ok else "red"
        self.console.print(f"  [{colour}]{ep.label}, {ep.db}: the store holds {stored:,} deliveries; "
                           f"{accepted:,} were answered accepted, {duplicates} duplicate[/{colour}]")
        if not ok:
            self.failures.append(f"{ep.label} {ep.db}: {stored} rows stored for {accepted} accepted "
                                 f"({duplicates} duplicates)")
        ep.stored = stored

    def close(self) -> None:
        self.procs.stop_all()
        for log in self.logs:
            log.close()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self.console.print(f"work files kept in {self.workdir}")


def _raw_schema(url: str) -> str:
    sys.path.insert(0, str(HERE))
    from apps import raw_schema
    return raw_schema("postgresql" if url.startswith("postgresql") else "sqlite")


def _execute(url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(sa_url(url))
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def _count(url: str, sql: str) -> int:
    from sqlalchemy import create_engine, text
    engine = create_engine(sa_url(url))
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return int(value)


def _pg_settings(url: str) -> str:
    from sqlalchemy import create_engine, text
    engine = create_engine(sa_url(url))
    with engine.connect() as conn:
        values = [f"{name}={conn.execute(text(f'SHOW {name}')).scalar_one()}"
                  for name in ("fsync", "synchronous_commit", "wal_sync_method")]
        version = conn.execute(text("SHOW server_version")).scalar_one()
    engine.dispose()
    return f"PostgreSQL {version} ({', '.join(values)})"


def _synthetic_order() -> bytes:
    """A Shopify orders/create body of the real sample's shape and size (~12 KB), for machines
    without the shared samples."""
    money = lambda v: {"shop_money": {"amount": v, "currency_code": "USD"},  # noqa: E731
                       "presentment_money": {"amount": v, "currency_code": "USD"}}
    address = {"first_name": "Jon", "address1": "123 Amoebobacterstraße", "phone": "555-555-5555",
               "city": "Ottawa", "zip": "K2P 1L4", "province": "Ontario", "country": "Canada",
               "last_name": "Snow", "address2": "", "company": None, "latitude": None,
               "longitude": None, "name": "Jon Snow", "country_code": "CA", "province_code": "ON"}
    line = lambda i: {  # noqa: E731
        "id": 866550311766439020 + i, "admin_graphql_api_id": f"gid://shopify/LineItem/{866550311766439020 + i}",
        "attributed_staffs": [], "current_quantity": 1, "fulfillable_quantity": 1,
        "fulfillment_service": "manual", "fulfillment_status": None, "gift_card": False, "grams": 567,
        "name": f"IPod Nano - 8GB {i}", "price": "199.00", "price_set": money("199.00"),
        "product_exists": True, "product_id": 632910392, "properties": [], "quantity": 1,
        "requires_shipping": True, "sku": f"IPOD2008PINK{i}", "taxable": True,
        "title": "IPod Nano - 8GB", "total_discount": "0.00", "total_discount_set": money("0.00"),
        "variant_id": 808950810, "variant_inventory_management": "shopify", "variant_title": None,
        "vendor": None, "tax_lines": [], "duties": [], "discount_allocations": []}
    order = {"id": 820982911946154508, "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
             "cancelled_at": None, "contact_email": "jon@example.com",
             "created_at": "2021-12-31T19:00:00-05:00", "currency": "USD",
             "current_total_price": "398.00", "current_total_price_set": money("398.00"),
             "email": "jon@example.com", "financial_status": "voided", "fulfillment_status": "pending",
             "name": "#9999", "number": 234, "order_number": 1234, "phone": None,
             "processed_at": "2021-12-31T19:00:00-05:00", "total_price": "398.00",
             "total_price_set": money("398.00"), "updated_at": "2021-12-31T19:00:00-05:00",
             "billing_address": address, "shipping_address": address,
             "customer": {"id": 115310627314723954, "email": "john@example.com", "first_name": "John",
                          "last_name": "Smith", "phone": None, "updated_at": None,
                          "default_address": address},
             "line_items": [line(i) for i in range(8)], "refunds": [], "fulfillments": [],
             "shipping_lines": [], "note_attributes": [], "tax_lines": [], "returns": []}
    return json.dumps(order, indent=2).encode()


def print_table(console, bare: Endpoint, rows: list[tuple[str, Endpoint, Endpoint]], args,
                sample_bytes: int) -> None:
    from rich.table import Table
    table = Table(title=f"Webhook ingest: gunicorn sync × {args.workers} workers, "
                        f"{args.connections} connections, {args.rounds} rounds × {args.slot:g} s, "
                        f"{sample_bytes / 1024:.1f} KB Shopify order, {os.cpu_count()} CPUs",
                  title_justify="left")
    for col in ("store", "endpoint", "req/s", "rounds", "p50 ms", "p99 ms", "others CPU",
                "(c)/(a)", "(c)/(b)", "(c)/(b) per round"):
        table.add_column(col, justify="left" if col in ("store", "endpoint") else "right")

    def cells(ep: Endpoint) -> tuple[str, ...]:
        spread = "–".join(f"{v:,.0f}" for v in (min(ep.round_rps), max(ep.round_rps)))
        return (f"{ep.rps:,.0f}", spread, f"{ep.percentile(.5) * 1e3:.2f}",
                f"{ep.percentile(.99) * 1e3:.2f}", f"{ep.others:.2f}")

    table.add_row("", "(a) bare Flask", *cells(bare), "", "", "", end_section=True)
    for db, raw, app in rows:
        table.add_row(db, "(b) HMAC + INSERT (driver)", *cells(raw), "", "", "")
        # (b) and (c) are measured one after the other in every round: the ratio of each round
        # shows how much of the spread is the machine's (other people's work) and how much ours
        per_round = sorted(c / b for b, c in zip(raw.round_rps, app.round_rps) if b)
        table.add_row(db, "(c) /webhooks/shopify", *cells(app),
                      f"{app.rps / bare.rps:.2f}", f"{app.rps / raw.rps:.2f}",
                      "–".join(f"{v:.2f}" for v in (per_round[0], per_round[-1]))
                      if per_round else "")
        if app.fixed:
            f = app.fixed
            table.add_row(db, f"(c) at {args.rate:.0f}/s fixed rate", f"{f['rps']:,.0f}", "",
                          f"{f['p50'] * 1e3:.2f}", f"{f['p99'] * 1e3:.2f}", f"{f['others_cpu']:.2f}",
                          "", "", "")
        table.rows[-1].end_section = True
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"),
                        help="store(s) for (b) and (c); default both when PostgreSQL answers")
    parser.add_argument("--workers", type=int, default=2 * cores,
                        help="gunicorn sync workers for every endpoint (default 2 × cores = %(default)s)")
    parser.add_argument("--connections", type=int, default=None,
                        help="concurrent connections of the closed-loop runs (default 4 × workers)")
    parser.add_argument("--duration", type=float, default=12.0,
                        help="seconds measured per endpoint in the closed loop, split over the "
                             "rounds (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the endpoints are measured in turn, this many times, so a change in "
                             "background load hits them alike (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before each measured window (default %(default)s)")
    parser.add_argument("--rate", type=float, default=FIXED_RATE,
                        help="deliveries/s of the fixed-rate run of (c) (default %(default)s; 0: skip)")
    parser.add_argument("--fixed-duration", type=float, default=10.0,
                        help="seconds measured in the fixed-rate run (default %(default)s)")
    parser.add_argument("--max-requests", type=int, default=500_000,
                        help="upper bound of deliveries per closed-loop window (default %(default)s)")
    parser.add_argument("--loadgen-procs", type=int, default=1,
                        help="load generator processes in the closed loop (default %(default)s)")
    parser.add_argument("--pg-url", default=os.environ.get("CCMS_BENCH_DATABASE_URL")
                        or os.environ.get("CCMS_TEST_DATABASE_URL") or DEFAULT_PG_URL,
                        help="PostgreSQL URL of a user that may create databases "
                             "(CCMS_BENCH_DATABASE_URL, else CCMS_TEST_DATABASE_URL, else "
                             "%(default)s); ccms_bench and ccms_bench_raw are dropped and created")
    parser.add_argument("--sample", default=str(DEFAULT_SAMPLE),
                        help="the Shopify order body (default: the shared orders-create.json)")
    parser.add_argument("--workdir", default=None, help="where scratch SQLite files go (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, stores)")
    parser.add_argument("--max-others", type=float, default=0.15, metavar="CPUS",
                        help="a window during which other processes used more CPU than this is "
                             "measured again (default %(default)s of a CPU)")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a disturbed window is measured again (default %(default)s)")
    parser.add_argument("--retry-wait", type=float, default=20.0, metavar="SECONDS",
                        help="how long to wait for the machine to be idle before measuring a "
                             "disturbed window again (default %(default)s)")
    parser.add_argument("--app", default="ccms_addon.wsgi:app",
                        help="the WSGI app measured as (c), to try a change (default %(default)s)")
    parser.add_argument("--app-pythonpath", type=Path, default=None,
                        help="a folder gunicorn adds to sys.path for --app")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for the machine to be idle (< 15%% busy) "
                             "before starting (default: do not wait, only report)")
    args = parser.parse_args(argv)
    args.connections = args.connections or 4 * args.workers
    args.slot = args.duration / args.rounds

    from rich.console import Console
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

    signal.signal(signal.SIGTERM, raise_exit)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # respect nohup
        signal.signal(signal.SIGHUP, raise_exit)
    busy = wait_for_quiet(console, args.quiet_wait)
    bench = Bench(args, console)
    try:
        console.print(f"{cores} CPUs, {busy:.0%} busy before the run"
                      f"{' [yellow](other work is running: figures will be low)[/yellow]' if busy > .15 else ''}; "
                      f"gunicorn sync × {args.workers} workers per endpoint; load generator: "
                      f"{args.loadgen_procs} process(es), {args.connections} connections; "
                      f"body {bench.sample_bytes:,} bytes")
        if "postgresql" in dbs:
            console.print(_pg_settings(args.pg_url))
        with console.status("starting gunicorn for every endpoint"):
            bare = bench.start_bare()
            rows = [(db, bench.start_raw(db), bench.start_app(db)) for db in dbs]
        order = [bare] + [ep for _, raw, app in rows for ep in (raw, app)]
        bench.account = CpuAccount([ep.proc.pid for ep in order], ["ccms_bench", "ccms_bench_raw"])
        for round_no in range(1, args.rounds + 1):
            for ep in order:
                bench.closed_round(ep, round_no, args.slot, args.warmup)
        if args.rate > 0:
            for _, _, app in rows:
                bench.fixed_rate(app, args.rate)
        for ep in order[1:]:
            bench.verify(ep)
        print_table(console, bare, rows, args, bench.sample_bytes)
        for failure in bench.failures:
            console.print(f"[red]FAILED: {failure}[/red]")
        return 1 if bench.failures else 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping every process started[/yellow]")
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code > 128:
            console.print(f"[yellow]stopped by signal {exc.code - 128}: stopping every process "
                          "started[/yellow]")
        raise
    finally:
        bench.close()


if __name__ == "__main__":
    sys.exit(main())
