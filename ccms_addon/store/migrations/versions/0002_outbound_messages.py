"""outbound messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 03:00:56.111824
"""
from alembic import op
import sqlalchemy as sa
import ccms_addon.store.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbound_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=40), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'sending', 'sent', 'failed', 'unknown', name='outboundstatus', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_outbound_messages_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_messages')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_outbound_messages_idempotency_key'))
    )
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_messages_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_outbound_messages_shop', ['shop_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_messages_shop')
        batch_op.drop_index('ix_outbound_messages_due')

    op.drop_table('outbound_messages')
