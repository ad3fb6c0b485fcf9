"""Row-level security on PostgreSQL: a backstop under the queries' own ``shop_id`` scoping.

Every query of the add-on names its shop (``repository.py``; the cross-tenant route matrix in
``tests/test_tenant_matrix.py`` holds every route to it). Underneath, migration 0008 gives every
table with a ``shop_id`` the policy ``tenant_scope``: a row is visible and writable when the
transaction's ``ccms.shop_ids`` setting is empty (workers, sweeps, the CLI, a request before it
knows its shop) or lists the row's shop. A request sets it, for each ORM transaction it opens,
once it knows its tenant from verified context only:

- the merchant API: the shop of the bearer token (``g.shop_id``, ``api/auth.py``);
- the dashboard: the signed-in person's shops (``g.dash_viewer``, ``dashboard/views.py``);
- the storefront widget: the shop of the widget key (``g.widget_shop``, ``widgets/views.py``);
- a platform's embedded admin: the shop of its session token (``g.ccms_admin``, ``install.py``).

PostgreSQL applies a table's policies to every role but its owner (and superusers). The add-on
runs its migrations as the owner; run the web processes as a separate role granted
``SELECT, INSERT, UPDATE, DELETE`` (README, "Row-level security"), or have the owner itself held
to the policies with ``ccms-addon db row-security force``. Measured cost: a policy keeps
PostgreSQL from using an index for a condition that is not leak-proof (``ILIKE``, the search's
trigram indexes), so under it a shop search reads the shop's rows instead of the trigram index;
that is why the owner is not forced by default. SQLite has no row-level security: nothing here
runs there.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import g, has_request_context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

#: the transaction-local setting the policies read
SETTING = "ccms.shop_ids"

#: every table with a ``shop_id`` (migration 0008 gives each the policy)
TENANT_TABLES = ("customers", "orders", "order_lines", "refunds", "webhook_deliveries",
                 "voc_items", "voc_issues", "voc_events", "outbound_messages",
                 "privacy_requests", "programs", "program_versions", "enrollments",
                 "follow_ups", "claims", "product_collections", "collection_members",
                 "repurchase_rollups")


def request_shop_ids() -> tuple[int, ...]:
    """The shops the current request may see, from what its authentication verified; () outside
    a request or before it knows its tenant."""
    if not has_request_context():
        return ()
    if g.get("shop_id") is not None:
        return (int(g.shop_id),)
    viewer = g.get("dash_viewer")
    if viewer is not None:
        return tuple(viewer.shop_ids) or (0,)  # a person with no shop sees none
    shop = g.get("widget_shop")
    if shop is not None:
        return (int(shop.id),)
    admin = g.get("ccms_admin")
    if admin is not None and getattr(admin, "shop_id", None) is not None:
        return (int(admin.shop_id),)
    return ()


def setting_value(shop_ids: Iterable[int]) -> str:
    return ",".join(str(int(i)) for i in sorted(set(shop_ids)))


def _scope_transaction(session: Session, transaction, connection: Connection) -> None:
    shop_ids = request_shop_ids()
    if shop_ids:
        connection.exec_driver_sql("SELECT set_config(%(name)s, %(value)s, true)",
                                   {"name": SETTING, "value": setting_value(shop_ids)})


def install(factory: sessionmaker, dialect_name: str) -> None:
    """Scope every transaction ``factory``'s sessions begin inside a request (PostgreSQL only)."""
    if dialect_name == "postgresql":
        event.listen(factory, "after_begin", _scope_transaction)


def set_force(connection: Connection, force: bool) -> None:
    """Hold the tables' owner to the policies too (``FORCE ROW LEVEL SECURITY``), or not."""
    verb = "FORCE" if force else "NO FORCE"
    for table in TENANT_TABLES:
        connection.execute(text(f'ALTER TABLE "{table}" {verb} ROW LEVEL SECURITY'))


def forced_tables(connection: Connection) -> list[str]:
    return list(connection.execute(text(
        "SELECT relname FROM pg_class WHERE relforcerowsecurity AND relname = ANY(:names) "
        "ORDER BY relname"), {"names": list(TENANT_TABLES)}).scalars())
