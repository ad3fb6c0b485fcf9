"""A PostgreSQL login role that does not own the tables, as a production web role would be (the
suite's own role is a superuser, which PostgreSQL never holds to row-level security)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text

from ccms_addon.store.db import make_engine


@contextmanager
def web_role(database_url: str, prefix: str = "ccms_web") -> Iterator[str]:
    """Create a role granted DML on every table and sequence; yield its URL; drop it after."""
    role = f"{prefix}_{os.getpid()}"
    admin = make_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public '
                          f'TO "{role}"'))
        conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
    parts = urlsplit(database_url)
    try:
        yield urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}"))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
