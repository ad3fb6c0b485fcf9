"""The migrations build exactly the schema the models describe, on the suite's database.

A model change without its migration (or the other way round) fails here rather than on a
merchant's server."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from ccms_addon.store.db import make_engine
from ccms_addon.store.models import Base


def _relevant(diff) -> bool:
    # SQLite reports its partial indexes without their WHERE clause, and autogenerate cannot
    # compare expression indexes (lower(contact_email)) on any dialect: both show up as
    # remove/add pairs of an index that is there
    kind = diff[0][0] if isinstance(diff, list) else diff[0]
    return kind not in ("add_index", "remove_index")


def test_migrated_schema_matches_the_models(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diffs = [d for d in compare_metadata(context, Base.metadata) if _relevant(d)]
    finally:
        engine.dispose()
    assert diffs == []


def _index_names(conn) -> set[str]:
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return set(conn.execute(text(query)).scalars())


def test_every_model_index_exists_after_migrating(database_url):
    """Names straight from the catalogue: the inspector skips expression indexes."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            present, dialect = _index_names(conn), conn.dialect.name
    finally:
        engine.dispose()
    missing = [f"{table.name}.{index.name}" for table in Base.metadata.sorted_tables
               for index in table.indexes
               if index.name not in present
               # the trigram indexes exist on PostgreSQL only (migration 0005)
               and not (dialect == "sqlite" and index.dialect_options["postgresql"]["using"])]
    assert missing == []
