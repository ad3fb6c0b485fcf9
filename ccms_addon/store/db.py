"""Engine and sessions for the VOC store, on SQLite (embedded default) or PostgreSQL.

Besides the ORM sessions, a :class:`Database` runs the statements of the request hot paths (the
webhook inbox, the widget's order lookup) on **direct connections** (:meth:`Database.run`): DBAPI
connections detached from the engine's pool, kept by the process for reuse, in autocommit mode, on
which statements compiled once by SQLAlchemy (:class:`CompiledSQL`) run with the driver's own
statement cache (server-side prepared statements on PostgreSQL). A single statement is then one
round trip and its own transaction — no pool checkout and pre-ping, no ``BEGIN``/``COMMIT``, no
per-request statement building — while the SQL and the conversion of values both ways stay
SQLAlchemy's. On SQLite, their writes queue on a lock file beside the database (see
:func:`_writers_lock`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover — not on Windows: SQLite's own busy wait only
    fcntl = None

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement

from ccms_addon.store import tenancy

#: SQLite waits this long (ms) for a writer lock instead of failing with "database is locked"
SQLITE_BUSY_TIMEOUT_MS = 10_000

_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_databases: "weakref.WeakSet[Database]" = weakref.WeakSet()
#: direct connections a Database keeps idle for reuse, at most
MAX_IDLE_DIRECT = 8


def _dispose_after_fork() -> None:
    # A forked RQ work-horse must not reuse the parent's pooled connections.
    for engine in list(_engines):
        engine.dispose(close=False)
    for database in list(_databases):
        database._forget_direct()


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
        tenancy.install(self.sessionmaker, self.engine.dialect.name)  # the RLS backstop
        self._compiled: dict[tuple[str, str], CompiledSQL] = {}
        self._forget_direct()
        _databases.add(self)

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

    def compiled(self, name: str, build: Callable[[str], ClauseElement]) -> "CompiledSQL":
        """The statement ``build(dialect_name)`` compiled for the current engine's dialect, once
        per name and dialect."""
        dialect = self.engine.dialect
        key = (name, dialect.name)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = CompiledSQL.compile(build(dialect.name), dialect)
        return found

    def run(self, name: str, build: Callable[[str], ClauseElement],
            values: Mapping[str, Any]) -> list[tuple]:
        """Run the statement ``build`` makes (compiled once, see :meth:`compiled`) with ``values``
        on a direct connection, in autocommit; its rows. A connection the server closed since
        its last use (a restart) is replaced once; any other error drops the connection and is
        raised as SQLAlchemy's (``sqlalchemy.exc.DBAPIError`` subclasses)."""
        statement = self.compiled(name, build)
        for attempt in (1, 2):
            conn = self._acquire()
            try:
                rows = conn.execute(statement, values)
            except conn.errors as exc:
                conn.close()
                if attempt == 2 or not conn.connection_lost(exc):
                    raise DBAPIError.instance(statement.sql, None, exc, conn.errors) from exc
                self._close_idle()  # a server restart closed those too
                continue
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return rows
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self._close_idle()
        self.engine.dispose()

    def _close_idle(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ---- direct connections: a small per-process stack, reused by whichever thread runs next
    # (one connection for a sync worker; as many as run at once for threads; the dev server's
    # short-lived threads leave nothing behind)

    def _acquire(self) -> "DirectConnection":
        engine, pid = self.engine, os.getpid()
        with self._idle_lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.engine is engine and conn.pid == pid:
                    return conn
                conn.close()  # the engine was replaced (tests) or the process forked
        try:
            return DirectConnection(engine)
        except SQLAlchemyError:
            raise
        except Exception as exc:  # noqa: BLE001 — the driver's own, from connecting
            raise DBAPIError.instance(None, None, exc, engine.dialect.loaded_dbapi.Error) from exc

    def _release(self, conn: "DirectConnection") -> None:
        if conn.engine is self.engine:
            with self._idle_lock:
                if len(self._idle) < MAX_IDLE_DIRECT:
                    self._idle.append(conn)
                    return
        conn.close()

    def _forget_direct(self) -> None:
        """A new, empty stack (also in a forked child: the parent's connections are its own)."""
        self._idle: list[DirectConnection] = []
        self._idle_lock = threading.Lock()


@dataclass(frozen=True)
class CompiledSQL:
    """A SQLAlchemy statement compiled for one dialect, with its values' conversions: the bind
    processors of its parameters and the result processors of its columns, exactly those
    SQLAlchemy itself would apply."""

    sql: str
    dialect: Dialect
    #: parameter names in the order the driver wants them; None for a named paramstyle
    order: tuple[str, ...] | None
    binds: Mapping[str, Callable[[Any], Any]]
    #: values of the parameters the statement carries itself (a LIMIT), already converted
    defaults: Mapping[str, Any]
    #: result column types (dialect implementations), None for a statement without rows
    columns: tuple[Any, ...] | None
    #: an INSERT, UPDATE or DELETE
    writes: bool = False

    @classmethod
    def compile(cls, statement: ClauseElement, dialect: Dialect) -> "CompiledSQL":
        compiled = statement.compile(dialect=dialect)
        binds, defaults = {}, {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if not bind.required:  # a value of the statement's own (LIMIT 5)
                value = bind.effective_value
                defaults[name] = processor(value) if processor else value
            elif processor is not None:
                binds[name] = processor
        selected = statement.exported_columns  # a SELECT's columns, or DML's RETURNING ones
        columns = tuple(c.type.dialect_impl(dialect) for c in selected) if selected else None
        return cls(sql=compiled.string, dialect=dialect,
                   order=tuple(compiled.positiontup) if compiled.positional else None,
                   binds=binds, defaults=defaults, columns=columns,
                   writes=bool(getattr(statement, "is_dml", False)))

    def parameters(self, values: Mapping[str, Any]):
        """The driver's parameters for ``values`` (every bind name of the statement)."""
        binds = self.binds
        if binds:
            values = {k: (binds[k](v) if k in binds else v) for k, v in values.items()}
        if self.defaults:
            values = {**self.defaults, **values}
        if self.order is None:
            return values
        return tuple(values[name] for name in self.order)

    def convert(self, rows: Sequence[Sequence[Any]], description) -> list[tuple]:
        """Rows as SQLAlchemy would return them (dates, decimals, enums…)."""
        if not rows or not self.columns:
            return [tuple(r) for r in rows]
        processors = [t.result_processor(self.dialect, d[1])
                      for t, d in zip(self.columns, description)]
        return [tuple(p(v) if p else v for p, v in zip(processors, row)) for row in rows]


class DirectConnection:
    """One autocommit DBAPI connection, detached from the engine's pool (the engine's connect
    events — SQLite's pragmas — did run on it), used by one thread at a time. Each statement
    commits on its own: durable when :meth:`execute` returns."""

    __slots__ = ("engine", "pid", "conn", "cursor", "postgres", "used", "errors", "lock_fd")

    def __init__(self, engine: Engine):
        self.engine = engine
        self.pid = os.getpid()
        self.postgres = engine.dialect.name == "postgresql"
        self.errors = engine.dialect.loaded_dbapi.Error
        proxied = engine.raw_connection()
        try:
            conn = proxied.driver_connection
            proxied.detach()  # ours alone from now on: the pool neither resets nor reuses it
            if self.postgres:
                conn.autocommit = True
            else:
                conn.isolation_level = None  # sqlite3: no implicit BEGIN, each statement commits
        except BaseException:
            proxied.invalidate()
            raise
        self.conn = conn
        self.cursor = conn.cursor()
        self.used = False
        self.lock_fd = _writers_lock(engine) if not self.postgres else None

    def execute(self, statement: CompiledSQL, values: Mapping[str, Any]) -> list[tuple]:
        """Run ``statement`` (a SELECT, or DML with RETURNING) with ``values``; its rows,
        converted (all of them are read, which on SQLite is what ends the statement and so its
        transaction)."""
        cursor = self.cursor
        if self.postgres:
            cursor.execute(statement.sql, statement.parameters(values), prepare=True)
            rows = cursor.fetchall()  # every statement run here returns rows (SELECT, RETURNING)
        elif statement.writes and self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            try:
                cursor.execute(statement.sql, statement.parameters(values))
                rows = cursor.fetchall()
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        else:
            cursor.execute(statement.sql, statement.parameters(values))
            rows = cursor.fetchall()
        self.used = True
        return statement.convert(rows, cursor.description) if rows else rows

    def connection_lost(self, exc: BaseException) -> bool:
        """True when ``exc`` says the server closed this connection (a restart, an idle timeout):
        worth one more try on a new connection if this one had worked before."""
        if not (self.used and self.postgres):
            return False
        import psycopg
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and \
            getattr(exc, "sqlstate", None) in (None, "57P01", "57P02", "57P03")

    def close(self) -> None:
        """Close this connection (after an error, or when it is not kept)."""
        if self.pid != os.getpid():
            return  # a forked child must not close its parent's connection
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 — dropping a broken connection
            pass
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _writers_lock(engine: Engine) -> int | None:
    """SQLite: a file beside the database that the direct connections of every process on the
    host lock (``flock``) around a write. SQLite lets one writer in at a time and makes the others
    sleep and retry (1, 2, 5, 10… ms); waiting on this lock instead, the next writer is woken the
    moment the previous one has committed, so concurrent webhook deliveries queue up instead of
    oversleeping (measured: the ingest's p99 halves under load). Other writers (ORM sessions)
    keep SQLite's own busy wait. None where there is no file or no ``flock``."""
    database = engine.url.database
    if fcntl is None or not database or database == ":memory:" or database.startswith("file:"):
        return None
    try:
        return os.open(f"{database}-writers.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
