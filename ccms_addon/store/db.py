"""Engine and sessions for the VOC store, on SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: SQLite waits this long (ms) for a writer lock instead of failing with "database is locked"
SQLITE_BUSY_TIMEOUT_MS = 10_000

_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _dispose_after_fork() -> None:
    # A forked RQ work-horse must not reuse the parent's pooled connections.
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_after_fork)


def make_engine(url: str, **kwargs) -> Engine:
    """An engine tuned for the add-on: SQLite in WAL mode with full fsync (an acknowledged webhook
    must survive a power cut), foreign keys on; PostgreSQL through psycopg 3 with pre-ping."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()
    else:
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
        engine = create_engine(url, **kwargs)
    _engines.add(engine)
    return engine


class Database:
    """The store's engine and session factory, built once per app or worker."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
