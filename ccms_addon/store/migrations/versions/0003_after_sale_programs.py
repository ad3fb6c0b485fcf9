"""after-sale programs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:27:52.432949
"""
from alembic import op
import sqlalchemy as sa
import ccms_addon.store.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('programs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.Enum('free_return', 'buyback', 'follow_up', name='programkind', native_enum=False, length=32), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('status', sa.Enum('active', 'paused', 'archived', name='programstatus', native_enum=False, length=32), nullable=False),
    sa.Column('current_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_programs_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_programs')),
    sa.UniqueConstraint('shop_id', 'name', name=op.f('uq_programs_shop_id_name'))
    )
    op.create_table('program_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_program_versions_program_id_programs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_program_versions_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_program_versions')),
    sa.UniqueConstraint('program_id', 'version', name=op.f('uq_program_versions_program_id_version'))
    )
    with op.batch_alter_table('program_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_program_versions_shop_id'), ['shop_id'], unique=False)

    op.create_table('enrollments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('program_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.Enum('active', 'cancelled', name='enrollmentstatus', native_enum=False, length=32), nullable=False),
    sa.Column('anchor_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('cancelled_reason', sa.String(length=200), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_enrollments_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_enrollments_program_id_programs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['program_version_id'], ['program_versions.id'], name=op.f('fk_enrollments_program_version_id_program_versions')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_enrollments_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollments')),
    sa.UniqueConstraint('program_id', 'order_id', name=op.f('uq_enrollments_program_id_order_id'))
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index('ix_enrollments_shop_order', ['shop_id', 'order_id'], unique=False)

    op.create_table('claims',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('voc_item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('program_kind', sa.Enum('free_return', 'buyback', 'follow_up', name='programkind', native_enum=False, length=32), nullable=False),
    sa.Column('status', sa.Enum('pending', 'ineligible', 'approved', 'settled', 'rejected', 'failed', name='claimstatus', native_enum=False, length=32), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=True),
    sa.Column('event_date', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('eligibility', sa.JSON(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=20, scale=4), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('lines', sa.JSON(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.Column('settlement', sa.JSON(), nullable=True),
    sa.Column('settled_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_claims_enrollment_id_enrollments'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_claims_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_claims_shop_id_shops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['voc_item_id'], ['voc_items.id'], name=op.f('fk_claims_voc_item_id_voc_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claims')),
    sa.UniqueConstraint('voc_item_id', name=op.f('uq_claims_voc_item_id'))
    )
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index('ix_claims_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_claims_shop_status', ['shop_id', 'status', 'created_at'], unique=False)

    op.create_table('follow_ups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('step', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('channel', sa.String(length=40), nullable=False),
    sa.Column('status', sa.Enum('scheduled', 'queued', 'dispatched', 'skipped', 'cancelled', name='followupstatus', native_enum=False, length=32), nullable=False),
    sa.Column('due_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('skip_reason', sa.String(length=200), nullable=True),
    sa.Column('postponed', sa.Integer(), nullable=False),
    sa.Column('answer', sa.Integer(), nullable=True),
    sa.Column('answer_comment', sa.Text(), nullable=True),
    sa.Column('answered_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('complaint_opened', sa.Boolean(), nullable=False),
    sa.Column('voc_item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_follow_ups_enrollment_id_enrollments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_follow_ups_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_follow_ups_shop_id_shops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['voc_item_id'], ['voc_items.id'], name=op.f('fk_follow_ups_voc_item_id_voc_items'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_follow_ups')),
    sa.UniqueConstraint('enrollment_id', 'step', name=op.f('uq_follow_ups_enrollment_id_step'))
    )
    with op.batch_alter_table('follow_ups', schema=None) as batch_op:
        batch_op.create_index('ix_follow_ups_due', ['status', 'due_at'], unique=False)
        batch_op.create_index('ix_follow_ups_shop_order', ['shop_id', 'order_id'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fulfilled_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delivered_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('locale', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('country_code', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('accepts_marketing', sa.Boolean(), nullable=True))

    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('data', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('data')
        batch_op.drop_column('locale')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('accepts_marketing')
        batch_op.drop_column('country_code')
        batch_op.drop_column('locale')
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('fulfilled_at')

    with op.batch_alter_table('follow_ups', schema=None) as batch_op:
        batch_op.drop_index('ix_follow_ups_shop_order')
        batch_op.drop_index('ix_follow_ups_due')

    op.drop_table('follow_ups')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index('ix_claims_shop_status')
        batch_op.drop_index('ix_claims_due')

    op.drop_table('claims')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollments_shop_order')

    op.drop_table('enrollments')
    with op.batch_alter_table('program_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_program_versions_shop_id'))

    op.drop_table('program_versions')
    op.drop_table('programs')
