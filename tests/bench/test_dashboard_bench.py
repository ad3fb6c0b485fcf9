"""``bench/dashboard.py`` in a tiny mode, so the benchmark cannot rot: it builds its database
(migrated to head, filled by COPY), times every case through the real inbox, board and report
functions, prints the plan of the slowest statement, and drops the database afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("CCMS_BENCH_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import pg_reachable, sa_url  # noqa: E402 — the benchmarks' own helper

pytestmark = pytest.mark.skipif(not pg_reachable(ADMIN_URL), reason="PostgreSQL is not reachable")


def _databases() -> set[str]:
    engine = create_engine(sa_url(ADMIN_URL))
    try:
        with engine.connect() as conn:
            return set(conn.scalars(text("SELECT datname FROM pg_database")))
    finally:
        engine.dispose()


def test_dashboard_bench_runs_every_case_on_a_tiny_data_set():
    database = f"bench_dashboard_test_{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMS_")}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dashboard.py"), "--items", "2000", "--events",
         "10000", "--shops", "5", "--repeat", "3", "--admin-url", ADMIN_URL,
         "--database", database],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout
    # 0: every goal met, 1: one missed (this machine may be busy); anything else is a crash
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    rows = re.search(r"rows: (.*)", out).group(1)
    assert "2,000 voc_items" in rows and "10,000 voc_events" in rows
    for case in ("newest, big shop", "newest, 2-shop merchant", "open + breached, big shop",
                 "open by due time, big shop", "q = reference, big shop", "q = e-mail, big shop",
                 "q = order number, big shop", "page 20 by cursor, big shop"):
        assert re.search(rf"│ inbox\s+│ {re.escape(case)}\s+│", out), case
    assert re.search(r"│ board\s+│ big shop\s+│", out)
    assert re.search(r"│ report\s+│ \d{4}-\d\d, big shop\s+│ [\d,]+ received", out)
    assert re.search(r"│ report job\s+│ fetch: \d{4}-\d\d, big shop\s+│ [\d,]+ bytes", out)
    for group in ("inbox", "board", "report"):
        assert re.search(rf"^{group}: worst p95 [\d.]+ ms", out, re.M), group
    assert "load average" in out
    # the plan of the slowest statement, as EXPLAIN (ANALYZE, BUFFERS) prints it
    assert "Execution Time:" in out and "Buffers:" in out
    assert database not in _databases()
