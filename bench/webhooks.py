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

The load generator is this file run as separate processes (``--loadgen``): non-blocking sockets on
loopback, a bounded number of connections (closed loop) or a fixed arrival rate (open loop, latency
counted from each request's scheduled time), bounded in count and time; it stops by itself.
Keep-alive is used when the server allows it; gunicorn's sync workers close after every answer, so
each delivery opens a connection, as it does from a platform.

    python bench/webhooks.py                       # SQLite and (when it answers) PostgreSQL
    python bench/webhooks.py --db sqlite --duration 10 --workers 4

Every process it starts (gunicorn, load generators) is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import hmac
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_SAMPLE = REPO.parent / "shared" / "platform-samples" / "shopify" / "orders-create.json"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

SECRET = "shpss_bench_secret"
SHOP_DOMAIN = "bench-shop.myshopify.com"
TOPIC = "orders/create"
API_VERSION = "2026-07"
FIXED_RATE = 300.0

# the order id in the sample is replaced per delivery by a unique one; this marks where it goes
_ID_MARK = "__BENCH_ORDER_ID__"


# ==================================================================================================
# Load generator (runs in its own process: ``webhooks.py --loadgen CONFIG.json``)
# ==================================================================================================


class RequestFactory:
    """Unique, correctly signed Shopify deliveries built from one sample body.

    The headers are the ones ``ShopifyAdapter.delivery_headers`` produces (checked once at start);
    they are built here without its per-call uuid4/datetime work so the generator stays light.
    """

    def __init__(self, template: bytes, *, host: str, path: str, secret: str, tag: int,
                 id_base: int):
        parts = template.split(_ID_MARK.encode())
        if len(parts) < 2:
            raise ValueError("body template has no order id mark")
        self.parts = parts
        self.key = secret.encode()
        self.tag = tag
        self.id_base = id_base
        self.prefix = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ccms-bench\r\n"
                       f"Content-Type: application/json\r\nX-Shopify-Topic: {TOPIC}\r\n"
                       f"X-Shopify-Shop-Domain: {SHOP_DOMAIN}\r\n"
                       f"X-Shopify-API-Version: {API_VERSION}\r\n")
        self.triggered_at = ""
        self.triggered_second = -1.0

    def webhook_id(self, seq: int) -> str:
        # UUID-shaped like Shopify's, unique per (generator process, sequence number)
        return f"{self.tag:08x}-{(seq >> 48) & 0xffff:04x}-4{(seq >> 36) & 0xfff:03x}-8{(seq >> 24) & 0xfff:03x}-{seq & 0xffffff:012x}"

    def body(self, seq: int) -> bytes:
        return str(self.id_base + seq).encode().join(self.parts)

    def headers(self, seq: int, body: bytes) -> dict[str, str]:
        signature = base64.b64encode(hmac.new(self.key, body, hashlib.sha256).digest()).decode()
        now = time.time()
        if int(now) != self.triggered_second:
            self.triggered_second = int(now)
            self.triggered_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        wid = self.webhook_id(seq)
        return {"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Webhook-Id": wid,
                "X-Shopify-Triggered-At": self.triggered_at, "X-Shopify-Event-Id": wid}

    def request(self, seq: int) -> bytes:
        body = self.body(seq)
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers(seq, body).items())
        return (f"{self.prefix}{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


def check_signing_matches_adapter(factory: RequestFactory) -> None:
    """Fail fast if the generator's headers differ from the ones the Shopify adapter would send."""
    try:
        from ccms_addon.plugins.shopify.adapter import ShopifyAdapter
    except ImportError:  # the generator also works against an add-on installed elsewhere
        return
    body = factory.body(0)
    reference = ShopifyAdapter().delivery_headers(body, shop_domain=SHOP_DOMAIN, topic=TOPIC,
                                                  secret=factory.key.decode())
    ours = {**factory.headers(0, body), "Content-Type": "application/json",
            "X-Shopify-Topic": TOPIC, "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-API-Version": API_VERSION}
    if {k.lower() for k in reference} != {k.lower() for k in ours}:
        raise SystemExit(f"load generator headers {sorted(ours)} differ from the adapter's "
                         f"{sorted(reference)}")
    if reference["X-Shopify-Hmac-Sha256"] != ours["X-Shopify-Hmac-Sha256"]:
        raise SystemExit("load generator signature differs from ShopifyAdapter.delivery_headers")


class _Conn:
    __slots__ = ("sock", "out", "inbuf", "intended", "started", "reused", "seq", "head_end",
                 "need", "status", "close")

    def __init__(self, sock):
        self.sock = sock
        self.reused = False
        self.reset()

    def reset(self):
        self.out = None
        self.inbuf = bytearray()
        self.head_end = -1
        self.need = -1
        self.status = 0
        self.close = False


def run_loadgen(cfg: dict) -> dict:
    """Drive one endpoint; returns counters and writes in-window latencies (seconds) to a file."""
    host, port, path = cfg["host"], cfg["port"], cfg["path"]
    template = Path(cfg["template"]).read_bytes()
    factory = RequestFactory(template, host=f"{host}:{port}", path=path, secret=cfg["secret"],
                             tag=cfg["tag"], id_base=cfg["id_base"])
    check_signing_matches_adapter(factory)
    rate = cfg.get("rate")
    connections = cfg["connections"]
    max_requests = cfg["max_requests"]
    start_at = cfg["start_at"]
    measure_from = start_at + cfg["warmup"]
    stop_at = measure_from + cfg["duration"]
    drain_until = stop_at + cfg["timeout"]

    sel = selectors.DefaultSelector()
    idle: list[_Conn] = []  # kept-alive connections ready for reuse
    inflight = 0
    issued = 0
    latencies = array("d")
    counts = {"ok_in_window": 0, "completed": 0, "accepted": 0, "duplicate": 0, "errors": 0,
              "retried": 0, "connects": 0}
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    backlog: list[float] = []  # open loop: scheduled times still waiting for a free slot

    while time.time() < start_at:
        time.sleep(min(0.05, max(0.0, start_at - time.time())))
    cpu_start = time.process_time()

    def new_conn() -> _Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counts["connects"] += 1
        rc = sock.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(rc, os.strerror(rc))
        return _Conn(sock)

    def launch(intended: float, conn: _Conn | None = None, seq: int | None = None) -> None:
        nonlocal inflight, issued
        if seq is None:
            seq = issued
            issued += 1
        if conn is None:
            conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = new_conn()
            conn.reset()
            conn.seq = seq
            conn.intended = intended
            conn.started = time.time()
            conn.out = memoryview(factory.request(seq))
            # on loopback the handshake is usually done already: try to send at once
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            conn.out = conn.out[sent:] if sent < len(conn.out) else None
            sel.register(conn.sock, selectors.EVENT_READ if conn.out is None
                         else selectors.EVENT_WRITE, conn)
        except OSError as exc:
            if conn is not None:
                conn.sock.close()
                if conn.reused:  # a kept-alive connection that went stale: open a new one
                    counts["retried"] += 1
                    return launch(intended, None, seq)
            fail(None, exc)
            return
        inflight += 1

    def fail(conn: _Conn | None, exc: BaseException | str) -> None:
        nonlocal inflight
        name = exc if isinstance(exc, str) else type(exc).__name__
        errors[name] = errors.get(name, 0) + 1
        counts["errors"] += 1
        if conn is not None:
            inflight -= 1
            try:
                sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()

    def finish(conn: _Conn, now: float) -> None:
        nonlocal inflight
        inflight -= 1
        sel.unregister(conn.sock)
        counts["completed"] += 1
        key = str(conn.status)
        statuses[key] = statuses.get(key, 0) + 1
        body = bytes(conn.inbuf[conn.head_end:])
        if 200 <= conn.status < 300:
            if b'"accepted"' in body:
                counts["accepted"] += 1
            elif b'"duplicate"' in body:
                counts["duplicate"] += 1
            if measure_from <= now <= stop_at:
                counts["ok_in_window"] += 1
                latencies.append(now - conn.intended)
        if conn.close:
            conn.sock.close()
        else:
            conn.reused = True
            idle.append(conn)

    def on_event(conn: _Conn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and conn.out is not None:
            try:
                sent = conn.sock.send(conn.out)
            except BlockingIOError:
                return
            except OSError as exc:
                return retry_or_fail(conn, exc)
            conn.out = conn.out[sent:]
            if not len(conn.out):
                conn.out = None
                sel.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            return retry_or_fail(conn, exc)
        now = time.time()
        if not data:
            if conn.head_end >= 0 and conn.need < 0:  # body delimited by the close
                conn.close = True
                return finish(conn, now)
            return retry_or_fail(conn, "closed before the answer")
        conn.inbuf += data
        if conn.head_end < 0:
            end = conn.inbuf.find(b"\r\n\r\n")
            if end < 0:
                return
            conn.head_end = end + 4
            head = bytes(conn.inbuf[:end]).lower()
            conn.status = int(head[9:12])
            conn.close = head.startswith(b"http/1.0") or b"\r\nconnection: close" in head
            marker = head.find(b"\r\ncontent-length:")
            if marker >= 0:
                line_end = head.find(b"\r\n", marker + 2)
                conn.need = int(head[marker + 17:line_end if line_end >= 0 else None])
        if conn.need >= 0 and len(conn.inbuf) - conn.head_end >= conn.need:
            finish(conn, now)

    def retry_or_fail(conn: _Conn, exc) -> None:
        # a kept-alive connection the server closed while idle: send the same request again
        nonlocal inflight
        if conn.reused and not conn.inbuf:
            counts["retried"] += 1
            inflight -= 1
            sel.unregister(conn.sock)
            conn.sock.close()
            launch(conn.intended, None if not idle else idle.pop(), conn.seq)
            return
        fail(conn, exc)

    next_due = start_at
    interval = 1.0 / rate if rate else 0.0
    while True:
        now = time.time()
        sending = now < stop_at and issued < max_requests
        if sending:
            if rate:
                while next_due <= now and issued + len(backlog) < max_requests:
                    backlog.append(next_due)
                    next_due += interval
                while backlog and inflight < connections:
                    launch(backlog.pop(0))
            else:
                while inflight < connections and issued < max_requests:
                    launch(time.time())
        elif inflight == 0 or now > drain_until:
            break
        if counts["errors"] >= 1000 and counts["errors"] > counts["completed"]:
            break  # the server is gone: stop rather than spin through max_requests
        if rate and sending:
            timeout = max(0.0, min(next_due - time.time(), 0.05))
        else:
            timeout = 0.05
        for key, mask in sel.select(timeout):
            on_event(key.data, mask)
    unanswered = inflight
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    for conn in idle:
        conn.sock.close()
    with open(cfg["latency_file"], "wb") as fh:
        latencies.tofile(fh)
    return {"issued": issued, "unanswered": unanswered, "statuses": statuses, "error_kinds": errors,
            "cpu_seconds": time.process_time() - cpu_start, "cpu_total": time.process_time(),
            "elapsed": time.time() - start_at,
            "window": cfg["duration"], **counts}


# ==================================================================================================
# Orchestration
# ==================================================================================================


class Processes:
    """Every process this benchmark starts, stopped on exit whatever happens."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], *, env: dict | None = None, own_group: bool = True,
              **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, start_new_session=own_group, **kwargs)
        proc._own_group = own_group  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 10.0) -> None:
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(5)
        elif getattr(proc, "_own_group", False):
            # the leader is gone; make sure none of its workers outlived it
            self._signal(proc, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            if getattr(proc, "_own_group", False):
                os.killpg(proc.pid, sig)  # the group this process leads: gunicorn and its workers
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            try:
                self.stop(proc, grace=5.0)
            except Exception:  # noqa: BLE001 — keep stopping the others
                pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return 0
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _scan_proc() -> list[tuple[int, int, bytes]]:
    """(pid, parent pid, command line) of every process."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                data = fh.read()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        found.append((int(name), int(data[data.rindex(")") + 2:].split()[1]), cmdline))
    return found


class CpuAccount:
    """CPU the run's own processes used — gunicorn and its workers, the PostgreSQL backends of the
    bench databases and PostgreSQL's shared writers, the load generators — against all the
    machine's user+system time. The difference is other people's work on a shared machine: a
    window where it is large is measured again (see ``--max-others``)."""

    def __init__(self, roots: list[int], databases: list[str]):
        self.roots = roots
        self.databases = [d.encode() for d in databases]

    def _ours(self) -> list[int]:
        procs = _scan_proc()
        ours = set(self.roots)
        for pid, ppid, cmdline in procs:
            if ppid in self.roots:
                ours.add(pid)
            elif cmdline.startswith(b"postgres: ") and (
                    any(b" " + d + b" " in cmdline for d in self.databases)
                    or b"walwriter" in cmdline or b"checkpointer" in cmdline
                    or b"background writer" in cmdline):
                ours.add(pid)
        return sorted(ours)

    @staticmethod
    def _machine() -> int:
        try:
            with open("/proc/stat") as fh:
                values = [int(v) for v in fh.readline().split()[1:]]
        except OSError:
            return 0
        return values[0] + values[1] + values[2]  # user + nice + system (softirq: our loopback)

    def start(self) -> None:
        self.pids = self._ours()
        self.t0 = time.time()
        self.machine0 = self._machine()
        self.ours0 = {pid: _proc_ticks(pid) for pid in self.pids}

    def usage(self, extra_cpu_seconds: float) -> tuple[float, float]:
        """(ours, others): CPUs' worth of work done by this run and by everything else since
        :meth:`start`; ``extra_cpu_seconds`` is ours too (the load generators')."""
        elapsed = max(1e-6, time.time() - self.t0)
        ours = sum(max(0, _proc_ticks(pid) - t) for pid, t in self.ours0.items()) / HZ
        ours += extra_cpu_seconds
        foreign = (self._machine() - self.machine0) / HZ - ours
        return ours / elapsed, max(0.0, foreign / elapsed)

    def others(self, extra_cpu_seconds: float) -> float:
        return self.usage(extra_cpu_seconds)[1]


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
        return _percentile(sorted(self.latencies), q)

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
        self.template.write_bytes(raw.replace(old.encode(), _ID_MARK.encode()))
        return len(raw)

    # ---- servers ---------------------------------------------------------------------------------

    def gunicorn(self, app: str, env: dict, *, pythonpath: Path | None = None
                 ) -> tuple[subprocess.Popen, int]:
        port = _free_port()
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
        return _fresh_pg_database(self.args.pg_url, name)

    def start_bare(self) -> Endpoint:
        ep = Endpoint("a", "(a) bare Flask", None)
        ep.proc, ep.port = self.gunicorn("apps:bare_app", _clean_env(), pythonpath=HERE)
        return ep

    def start_raw(self, db: str) -> Endpoint:
        url = self.store_url(db, "ccms_bench_raw")
        _execute(url, _raw_schema(url))
        env = {**_clean_env(), "BENCH_RAW_DATABASE_URL": url, "BENCH_SHOPIFY_SECRET": SECRET}
        ep = Endpoint("b", "(b) HMAC + INSERT (driver)", db, url)
        ep.proc, ep.port = self.gunicorn("apps:raw_app", env, pythonpath=HERE)
        return ep

    def start_app(self, db: str) -> Endpoint:
        """The real app on a fresh store: ``ccms-addon db upgrade``, ``ccms-addon shops add``."""
        url = self.store_url(db, "ccms_bench")
        env = {**_clean_env(), "CCMS_DATABASE_URL": url, "CCMS_SHOPIFY_API_SECRET": SECRET,
               "CCMS_SECRET_KEY": "bench-secret-key", "CCMS_VAR_DIR": str(self.workdir / f"var-{db}")}
        cli = _cli()
        subprocess.run(cli + ["db", "upgrade"], env=env, check=True, cwd=self.workdir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shop = subprocess.run(cli + ["shops", "add", "--platform", "shopify", "--domain", SHOP_DOMAIN],
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
        configs, handles = [], []
        for _ in range(procs):
            self.seq += 1
            cfg = dict(host="127.0.0.1", port=port, path="/webhooks/shopify",
                       template=str(self.template), secret=SECRET,
                       tag=(os.getpid() & 0xffffff) << 8 | (self.seq & 0xff),
                       id_base=(5_000_000 + self.seq) * 10**9,
                       connections=512 if rate else max(1, args.connections // procs),
                       rate=(rate / procs) if rate else None,
                       max_requests=(int(rate * (duration + warmup) * 1.01 + 1) if rate
                                     else args.max_requests // procs),
                       start_at=start_at, warmup=warmup, duration=duration,
                       timeout=30.0, latency_file=str(self.workdir / f"lat-{self.seq}.bin"))
            cfg_file = self.workdir / f"loadgen-{self.seq}.json"
            cfg_file.write_text(json.dumps(cfg))
            out = open(self.workdir / f"loadgen-{self.seq}.out", "w+")
            proc = self.procs.start([sys.executable, str(Path(__file__).resolve()), "--loadgen",
                                     str(cfg_file)], stdout=out, own_group=False)
            configs.append(cfg)
            handles.append((proc, out))
        merged: dict = {"statuses": {}, "error_kinds": {}, "window": duration}
        latencies = array("d")
        for (proc, out), cfg in zip(handles, configs):
            proc.wait()
            self.procs.procs.remove(proc)
            out.seek(0)
            text = out.read()
            out.close()
            if proc.returncode != 0:
                raise SystemExit(f"load generator failed ({proc.returncode}): {text[-2000:]}")
            for key, value in json.loads(text).items():
                if isinstance(value, dict):
                    for k, v in value.items():
                        merged[key][k] = merged[key].get(k, 0) + v
                elif key not in ("window", "elapsed"):
                    merged[key] = merged.get(key, 0) + value
            with open(cfg["latency_file"], "rb") as fh:
                latencies.frombytes(fh.read())
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
                           f"p50 {_percentile(ordered, .5) * 1e3:6.2f} ms  "
                           f"p99 {_percentile(ordered, .99) * 1e3:7.2f} ms  "
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
        out.update(rps=out["ok_in_window"] / duration, p50=_percentile(ordered, .5),
                   p99=_percentile(ordered, .99), max=ordered[-1] if ordered else float("nan"))
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


def machine_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over ``seconds`` (other users' work, before ours starts)."""
    def sample():
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values[:8]), idle
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return float("nan")
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def _percentile(ordered, q: float) -> float:
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))  # nearest rank
    return ordered[rank]


def _clean_env() -> dict:
    """The environment minus any CCMS_* setting of the caller's own deployment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCMS_", "BENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "ccms-addon"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ccms_addon.cli"]


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _raw_schema(url: str) -> str:
    sys.path.insert(0, str(HERE))
    from apps import raw_schema
    return raw_schema("postgresql" if url.startswith("postgresql") else "sqlite")


def _execute(url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(_sa_url(url))
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def _count(url: str, sql: str) -> int:
    from sqlalchemy import create_engine, text
    engine = create_engine(_sa_url(url))
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return int(value)


def _fresh_pg_database(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    engine = create_engine(_sa_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def pg_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            pass
        import psycopg
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 — unreachable for whatever reason
        return False


def _pg_settings(url: str) -> str:
    from sqlalchemy import create_engine, text
    engine = create_engine(_sa_url(url))
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


def wait_for_quiet(console, seconds: float) -> float:
    """The machine's busy share before the run; waits (up to ``seconds``) for it to be < 15%."""
    deadline = time.time() + seconds
    busy = machine_busy()
    if busy >= .15 and seconds > 0:
        with console.status(f"waiting up to {seconds:g} s for the machine to be idle") as status:
            while busy >= .15 and time.time() < deadline:
                status.update(f"machine {busy:.0%} busy; waiting up to "
                              f"{max(0, deadline - time.time()):.0f} s for it to be idle")
                busy = machine_busy(2.0)
    return busy


def print_table(console, bare: Endpoint, rows: list[tuple[str, Endpoint, Endpoint]], args,
                sample_bytes: int) -> None:
    from rich.table import Table
    table = Table(title=f"Webhook ingest: gunicorn sync × {args.workers} workers, "
                        f"{args.connections} connections, {args.rounds} rounds × {args.slot:g} s, "
                        f"{sample_bytes / 1024:.1f} KB Shopify order, {os.cpu_count()} CPUs",
                  title_justify="left")
    for col in ("store", "endpoint", "req/s", "rounds", "p50 ms", "p99 ms", "others CPU",
                "(c)/(a)", "(c)/(b)"):
        table.add_column(col, justify="left" if col in ("store", "endpoint") else "right")

    def cells(ep: Endpoint) -> tuple[str, ...]:
        spread = "–".join(f"{v:,.0f}" for v in (min(ep.round_rps), max(ep.round_rps)))
        return (f"{ep.rps:,.0f}", spread, f"{ep.percentile(.5) * 1e3:.2f}",
                f"{ep.percentile(.99) * 1e3:.2f}", f"{ep.others:.2f}")

    table.add_row("", "(a) bare Flask", *cells(bare), "", "", end_section=True)
    for db, raw, app in rows:
        table.add_row(db, "(b) HMAC + INSERT (driver)", *cells(raw), "", "")
        table.add_row(db, "(c) /webhooks/shopify", *cells(app),
                      f"{app.rps / bare.rps:.2f}", f"{app.rps / raw.rps:.2f}")
        if app.fixed:
            f = app.fixed
            table.add_row(db, f"(c) at {args.rate:.0f}/s fixed rate", f"{f['rps']:,.0f}", "",
                          f"{f['p50'] * 1e3:.2f}", f"{f['p99'] * 1e3:.2f}", f"{f['others_cpu']:.2f}",
                          "", "")
        table.rows[-1].end_section = True
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--loadgen"]:
        try:
            result = run_loadgen(json.loads(Path(argv[1]).read_text()))
        except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports
            return 130
        sys.stdout.write(json.dumps(result))
        return 0

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

    signal.signal(signal.SIGTERM, _raise_exit)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # respect nohup
        signal.signal(signal.SIGHUP, _raise_exit)
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
