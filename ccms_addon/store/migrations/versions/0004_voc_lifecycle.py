"""VOC lifecycle: staff, issues per item, assignment, duplicates, recurrence, escalation;
the RQ job that carries a queued follow-up

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:23.474158
"""
from alembic import op
import sqlalchemy as sa
import ccms_addon.store.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('owner', 'manager', 'agent', 'viewer', name='staffrole', native_enum=False, length=32), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_staff_merchant_id_merchants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff')),
    sa.UniqueConstraint('merchant_id', 'email', name=op.f('uq_staff_merchant_id_email'))
    )
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('voc_issues',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('voc_item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('category', sa.String(length=100), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('handled', sa.Boolean(), nullable=False),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_voc_issues_shop_id_shops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['voc_item_id'], ['voc_items.id'], name=op.f('fk_voc_issues_voc_item_id_voc_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voc_issues'))
    )
    with op.batch_alter_table('voc_issues', schema=None) as batch_op:
        batch_op.create_index('ix_voc_issues_shop_category', ['shop_id', 'category', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_voc_issues_voc_item_id'), ['voc_item_id'], unique=False)

    with op.batch_alter_table('follow_ups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.String(length=64), nullable=True))

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inbound_key', sa.String(length=40), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_shops_inbound_key'), ['inbound_key'])

    with op.batch_alter_table('voc_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voc_events_shop_id'))
        batch_op.create_index('ix_voc_events_shop_created', ['shop_id', 'created_at'], unique=False)

    with op.batch_alter_table('voc_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assignee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('product_ref', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('duplicate_of_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('recurrence', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('escalation_level', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('reopened_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('thread_ref', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('satisfaction_comment', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('satisfaction_requested_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.alter_column('channel',
               existing_type=sa.VARCHAR(length=32),
               type_=sa.String(length=40),
               existing_nullable=False)
        batch_op.create_index(batch_op.f('ix_voc_items_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index('ix_voc_items_shop_created', ['shop_id', 'created_at'], unique=False)
        batch_op.create_index('ix_voc_items_shop_order', ['shop_id', 'order_id'], unique=False)
        batch_op.create_index('ix_voc_items_shop_product', ['shop_id', 'product_ref', 'category', 'created_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_voc_items_assignee_id_staff'), 'staff', ['assignee_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_voc_items_duplicate_of_id_voc_items'), 'voc_items', ['duplicate_of_id'], ['id'], ondelete='SET NULL')
        batch_op.drop_column('assignee')



def downgrade() -> None:
    with op.batch_alter_table('voc_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assignee', sa.VARCHAR(length=200), nullable=True))
        batch_op.drop_constraint(batch_op.f('fk_voc_items_duplicate_of_id_voc_items'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_voc_items_assignee_id_staff'), type_='foreignkey')
        batch_op.drop_index('ix_voc_items_shop_product')
        batch_op.drop_index('ix_voc_items_shop_order')
        batch_op.drop_index('ix_voc_items_shop_created')
        batch_op.drop_index(batch_op.f('ix_voc_items_assignee_id'))
        batch_op.alter_column('channel',
               existing_type=sa.String(length=40),
               type_=sa.VARCHAR(length=32),
               existing_nullable=False)
        batch_op.drop_column('satisfaction_requested_at')
        batch_op.drop_column('satisfaction_comment')
        batch_op.drop_column('thread_ref')
        batch_op.drop_column('reopened_count')
        batch_op.drop_column('escalation_level')
        batch_op.drop_column('recurrence')
        batch_op.drop_column('duplicate_of_id')
        batch_op.drop_column('product_ref')
        batch_op.drop_column('assignee_id')

    with op.batch_alter_table('voc_events', schema=None) as batch_op:
        batch_op.drop_index('ix_voc_events_shop_created')
        batch_op.create_index(batch_op.f('ix_voc_events_shop_id'), ['shop_id'], unique=False)

    with op.batch_alter_table('follow_ups', schema=None) as batch_op:
        batch_op.drop_column('job_id')

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_shops_inbound_key'), type_='unique')
        batch_op.drop_column('inbound_key')

    with op.batch_alter_table('voc_issues', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voc_issues_voc_item_id'))
        batch_op.drop_index('ix_voc_issues_shop_category')

    op.drop_table('voc_issues')
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_merchant_id'))

    op.drop_table('staff')
