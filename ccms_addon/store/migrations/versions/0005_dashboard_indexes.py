"""Dashboard indexes: the inbox across a merchant's shops, its search, the board and the report

Measured with bench/dashboard.py (1M items, 5M events, 50 shops; docs/benchmarks.md):

* ``ix_voc_items_created`` (created_at, id): the newest page over several shops (PostgreSQL cannot
  merge the per-shop ranges of (shop_id, created_at) in time order; this one is read backwards,
  skipping the other merchants' items).
* ``ix_voc_items_shop_email`` (shop_id, lower(contact_email)), ``ix_voc_items_shop_phone``: the
  search's exact branches, so each branch of its OR has an index.
* trigram GIN indexes on subject, body and contact name (PostgreSQL with ``pg_trgm``): the
  search's ``ILIKE '%words%'`` branches. The extension is created when the role may (it is a
  trusted extension: a database owner may); without it these three are skipped and the search
  reads the shops' items, as before.
* ``ix_voc_items_shop_customer`` (shop_id, customer_id, kind; PostgreSQL also carries status,
  responded_at, closed_at): a customer's items; the board's repurchase figure reads its
  complainers from this index alone.
* ``ix_voc_items_shop_closed`` (shop_id, closed_at): items closed in a period (the report's
  prevention actions, the repurchase cohort).
* ``ix_voc_issues_shop_created`` (shop_id, created_at, category, handled): the issues of a month.
* ``ix_orders_shop_customer`` (shop_id, customer_id, placed_at; PostgreSQL also carries
  cancelled_at): a customer's orders in time order, from the index alone (the repurchase figure).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

#: (index, column) of the trigram indexes
TRIGRAM = (("ix_voc_items_subject_trgm", "subject"), ("ix_voc_items_body_trgm", "body"),
           ("ix_voc_items_contact_name_trgm", "contact_name"))


def _trigrams_available(bind) -> bool:
    """pg_trgm installed (or installable by this role now)."""
    installed = "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"
    if bind.execute(sa.text(installed)).scalar():
        return True
    if not bind.execute(sa.text(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).scalar():
        return False
    try:
        with bind.begin_nested():  # a refusal must not abort the migration's transaction
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:
        return False
    return True


def upgrade() -> None:
    with op.batch_alter_table('voc_items', schema=None) as batch_op:
        batch_op.create_index('ix_voc_items_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_voc_items_shop_email',
                              ['shop_id', sa.text('lower(contact_email)')], unique=False)
        batch_op.create_index('ix_voc_items_shop_phone', ['shop_id', 'contact_phone'],
                              unique=False)
        batch_op.create_index('ix_voc_items_shop_customer', ['shop_id', 'customer_id', 'kind'],
                              unique=False,
                              postgresql_include=['status', 'responded_at', 'closed_at'])
        batch_op.create_index('ix_voc_items_shop_closed', ['shop_id', 'closed_at'], unique=False)
    with op.batch_alter_table('voc_issues', schema=None) as batch_op:
        batch_op.create_index('ix_voc_issues_shop_created',
                              ['shop_id', 'created_at', 'category', 'handled'], unique=False)
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_shop_customer', ['shop_id', 'customer_id', 'placed_at'],
                              unique=False, postgresql_include=['cancelled_at'])
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql' and _trigrams_available(bind):
        for name, column in TRIGRAM:
            op.create_index(name, 'voc_items', [column], unique=False, postgresql_using='gin',
                            postgresql_ops={column: 'gin_trgm_ops'})


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        for name, _ in TRIGRAM:
            op.execute(f'DROP INDEX IF EXISTS {name}')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_shop_customer')
    with op.batch_alter_table('voc_issues', schema=None) as batch_op:
        batch_op.drop_index('ix_voc_issues_shop_created')
    with op.batch_alter_table('voc_items', schema=None) as batch_op:
        batch_op.drop_index('ix_voc_items_shop_closed')
        batch_op.drop_index('ix_voc_items_shop_customer')
        batch_op.drop_index('ix_voc_items_shop_phone')
        batch_op.drop_index('ix_voc_items_shop_email')
        batch_op.drop_index('ix_voc_items_created')
