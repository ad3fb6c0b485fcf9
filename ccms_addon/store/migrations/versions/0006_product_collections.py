"""Product collections a guarantee may name, and their members over time

``product_collections``: a Shopify collection, a Cafe24 category or a WooCommerce product category
of one shop, with when its members were last fetched. ``collection_members``: a product's time in
a collection (``removed_at`` set, never deleted, so a claim is judged by the membership at
enrollment); at most one current row per (collection, product).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 13:30:00.000000
"""
from alembic import op
import sqlalchemy as sa

from ccms_addon.store.models import UtcDateTime


#: 64-bit keys on PostgreSQL, the rowid on SQLite (as models.Id)
Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'product_collections',
        sa.Column('id', Id, nullable=False),
        sa.Column('shop_id', Id, nullable=False),
        sa.Column('platform_collection_id', sa.String(length=64), nullable=False),
        sa.Column('title', sa.String(length=255), nullable=True),
        sa.Column('product_count', sa.Integer(), nullable=False),
        sa.Column('synced_at', UtcDateTime(timezone=True), nullable=True),
        sa.Column('attempted_at', UtcDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'],
                                name=op.f('fk_product_collections_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_product_collections')),
        sa.UniqueConstraint('shop_id', 'platform_collection_id',
                            name=op.f('uq_product_collections_shop_id_platform_collection_id')))
    op.create_table(
        'collection_members',
        sa.Column('id', Id, nullable=False),
        sa.Column('shop_id', Id, nullable=False),
        sa.Column('collection_id', Id, nullable=False),
        sa.Column('product_id', sa.String(length=64), nullable=False),
        sa.Column('added_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('removed_at', UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['collection_id'], ['product_collections.id'],
                                name=op.f('fk_collection_members_collection_id_product_collections'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'],
                                name=op.f('fk_collection_members_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_members')))
    op.create_index('ix_collection_members_shop_product', 'collection_members',
                    ['shop_id', 'product_id'], unique=False)
    op.create_index('uq_collection_members_current', 'collection_members',
                    ['collection_id', 'product_id'], unique=True,
                    sqlite_where=sa.text('removed_at IS NULL'),
                    postgresql_where=sa.text('removed_at IS NULL'))


def downgrade() -> None:
    op.drop_index('uq_collection_members_current', table_name='collection_members')
    op.drop_index('ix_collection_members_shop_product', table_name='collection_members')
    op.drop_table('collection_members')
    op.drop_table('product_collections')
