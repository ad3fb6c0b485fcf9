"""Row-level security on every table with a shop_id: the tenant backstop (PostgreSQL)

``ccms_tenant_allows(shop_id)``: true when the transaction's ``ccms.shop_ids`` setting is empty
(workers, sweeps, the CLI, a request before it knows its shop) or lists the shop. Each table gets
the policy ``tenant_scope`` (USING and WITH CHECK) and row-level security ENABLED — not FORCED:
the owner (migrations, and by default the add-on itself) is not held to it unless
``ccms-addon db row-security force`` (see ``ccms_addon/store/tenancy.py`` for why). SQLite has
no row-level security: nothing happens there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 13:40:00.000000
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

#: every table with a shop_id, as ccms_addon.store.tenancy.TENANT_TABLES when this was written
TABLES = ("customers", "orders", "order_lines", "refunds", "webhook_deliveries", "voc_items",
          "voc_issues", "voc_events", "outbound_messages", "privacy_requests", "programs",
          "program_versions", "enrollments", "follow_ups", "claims", "product_collections",
          "collection_members", "repurchase_rollups")

ALLOWS = """
CREATE OR REPLACE FUNCTION ccms_tenant_allows(shop bigint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(current_setting('ccms.shop_ids', true), '') = ''
      OR shop = ANY (string_to_array(current_setting('ccms.shop_ids', true), ',')::bigint[])
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(ALLOWS)
    for table in TABLES:
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY tenant_scope ON "{table}" USING (ccms_tenant_allows(shop_id)) '
                   f'WITH CHECK (ccms_tenant_allows(shop_id))')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'DROP POLICY IF EXISTS tenant_scope ON "{table}"')
        op.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
    op.execute('DROP FUNCTION IF EXISTS ccms_tenant_allows(bigint)')
