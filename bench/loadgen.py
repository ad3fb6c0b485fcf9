"""The load generator the HTTP benchmarks share (``bench/webhooks.py``, ``bench/widget.py``), and
the plumbing that drives it: the processes a benchmark starts, CPU accounting on a shared machine,
percentiles, scratch databases.

The generator runs as its own process (``python bench/loadgen.py CONFIG.json``, started by
:func:`run_load`), so its CPU is not the server's: non-blocking sockets on loopback, a bounded
number of connections (closed loop) or a fixed arrival rate (open loop, latency counted from each
request's scheduled time), bounded in count and time; it stops by itself. Keep-alive is used when
the server allows it (gunicorn's sync workers close after every answer, so each request then opens
a connection, as a platform's delivery or a shopper's first request does).

What it sends (``cfg["stream"]``):

* ``{"kind": "fixed", "request": base64}`` — the same request bytes every time;
* ``{"kind": "shopify", "template": path, "secret": …, "tag": n, "id_base": n, "path": …}`` —
  unique, correctly signed Shopify deliveries built from one sample body (:class:`RequestFactory`).

An answer counts when its status is ``cfg["expect"]`` (or any 2xx when it is None); latencies of
the answers that count and complete inside the measured window are written to
``cfg["latency_file"]`` (seconds, ``array("d")``). For 2xx answers whose body says
``"accepted"`` or ``"duplicate"`` (the webhook ingress) those are counted too.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent

#: the order id in a Shopify template body is replaced per delivery by a unique one; this marks where
ID_MARK = "__BENCH_ORDER_ID__"
SHOPIFY_TOPIC = "orders/create"
SHOPIFY_API_VERSION = "2026-07"


# ==================================================================================================
# What is sent
# ==================================================================================================


class RequestFactory:
    """Unique, correctly signed Shopify deliveries built from one sample body.

    The headers are the ones ``ShopifyAdapter.delivery_headers`` produces (checked once at start);
    they are built here without its per-call uuid4/datetime work so the generator stays light.
    """

    def __init__(self, template: bytes, *, host: str, path: str, secret: str, tag: int,
                 id_base: int, shop_domain: str, topic: str = SHOPIFY_TOPIC,
                 api_version: str = SHOPIFY_API_VERSION):
        parts = template.split(ID_MARK.encode())
        if len(parts) < 2:
            raise ValueError("body template has no order id mark")
        self.parts = parts
        self.key = secret.encode()
        self.tag = tag
        self.id_base = id_base
        self.shop_domain, self.topic, self.api_version = shop_domain, topic, api_version
        self.prefix = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ccms-bench\r\n"
                       f"Content-Type: application/json\r\nX-Shopify-Topic: {topic}\r\n"
                       f"X-Shopify-Shop-Domain: {shop_domain}\r\n"
                       f"X-Shopify-API-Version: {api_version}\r\n")
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
    reference = ShopifyAdapter().delivery_headers(body, shop_domain=factory.shop_domain,
                                                  topic=factory.topic,
                                                  secret=factory.key.decode())
    ours = {**factory.headers(0, body), "Content-Type": "application/json",
            "X-Shopify-Topic": factory.topic, "X-Shopify-Shop-Domain": factory.shop_domain,
            "X-Shopify-API-Version": factory.api_version}
    if {k.lower() for k in reference} != {k.lower() for k in ours}:
        raise SystemExit(f"load generator headers {sorted(ours)} differ from the adapter's "
                         f"{sorted(reference)}")
    if reference["X-Shopify-Hmac-Sha256"] != ours["X-Shopify-Hmac-Sha256"]:
        raise SystemExit("load generator signature differs from ShopifyAdapter.delivery_headers")





class FixedRequest:
    """The same request bytes every time (the widget API's endpoints)."""

    def __init__(self, request: bytes):
        self.bytes = request

    def request(self, seq: int) -> bytes:
        return self.bytes


def request_stream(cfg: dict):
    stream = cfg["stream"]
    if stream["kind"] == "fixed":
        return FixedRequest(base64.b64decode(stream["request"]))
    if stream["kind"] == "shopify":
        factory = RequestFactory(Path(stream["template"]).read_bytes(),
                                 host=f"{cfg['host']}:{cfg['port']}", path=stream["path"],
                                 secret=stream["secret"], tag=stream["tag"],
                                 id_base=stream["id_base"], shop_domain=stream["shop_domain"])
        check_signing_matches_adapter(factory)
        return factory
    raise ValueError(f"unknown request stream {stream['kind']!r}")


# ==================================================================================================
# The generator (its own process)
# ==================================================================================================


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
    host, port = cfg["host"], cfg["port"]
    factory = request_stream(cfg)
    expect = cfg.get("expect")
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
        if 200 <= conn.status < 300:
            body = bytes(conn.inbuf[conn.head_end:])
            if b'"accepted"' in body:
                counts["accepted"] += 1
            elif b'"duplicate"' in body:
                counts["duplicate"] += 1
        if (conn.status == expect if expect else 200 <= conn.status < 300) \
                and measure_from <= now <= stop_at:
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
# Driving it: processes, CPU accounting, percentiles, scratch stores
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_exit(signum, _frame):
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


def run_load(procs: Processes, workdir: Path, configs: list[dict]) -> tuple[dict, array]:
    """Run one load generator process per config (all against one server, started together by
    their ``start_at``) and wait for them; their counters added up, and their latencies."""
    handles = []
    for cfg in configs:
        name = f"loadgen-{os.getpid()}-{id(cfg)}-{time.monotonic_ns()}"
        cfg_file = workdir / f"{name}.json"
        cfg_file.write_text(json.dumps(cfg))
        out = open(workdir / f"{name}.out", "w+")
        proc = procs.start([sys.executable, str(HERE / "loadgen.py"), str(cfg_file)], stdout=out,
                           own_group=False)
        handles.append((proc, out, cfg))
    merged: dict = {"statuses": {}, "error_kinds": {}}
    latencies = array("d")
    failure = None
    for proc, out, cfg in handles:
        proc.wait()
        procs.procs.remove(proc)
        out.seek(0)
        text = out.read()
        out.close()
        if proc.returncode != 0:
            failure = failure or f"load generator failed ({proc.returncode}): {text[-2000:]}"
            continue
        for key, value in json.loads(text).items():
            if isinstance(value, dict):
                for k, v in value.items():
                    merged[key][k] = merged[key].get(k, 0) + v
            elif key not in ("window", "elapsed"):
                merged[key] = merged.get(key, 0) + value
        with open(cfg["latency_file"], "rb") as fh:
            latencies.frombytes(fh.read())
    if failure:
        raise SystemExit(failure)
    return merged, latencies


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


def percentile(ordered, q: float) -> float:
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))  # nearest rank
    return ordered[rank]


def clean_env() -> dict:
    """The environment minus any CCMS_* setting of the caller's own deployment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCMS_", "BENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli() -> list[str]:
    script = Path(sys.executable).parent / "ccms-addon"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ccms_addon.cli"]


def sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def fresh_pg_database(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    engine = create_engine(sa_url(admin_url), isolation_level="AUTOCOMMIT")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: loadgen.py CONFIG.json (started by bench/webhooks.py and bench/widget.py)",
              file=sys.stderr)
        return 2
    try:
        result = run_loadgen(json.loads(Path(argv[0]).read_text()))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports
        return 130
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
