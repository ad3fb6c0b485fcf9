"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 02:48:32.697485
"""
from alembic import op
import sqlalchemy as sa
import ccms_addon.store.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('merchants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchants'))
    )
    op.create_table('shops',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('platform', sa.String(length=40), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('status', sa.Enum('active', 'uninstalled', name='shopstatus', native_enum=False, length=32), nullable=False),
    sa.Column('widget_key', sa.String(length=64), nullable=False),
    sa.Column('api_token_digest', sa.String(length=64), nullable=False),
    sa.Column('webhook_secret_encrypted', sa.Text(), nullable=True),
    sa.Column('credentials_encrypted', sa.Text(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('installed_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('uninstalled_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_shops_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shops')),
    sa.UniqueConstraint('api_token_digest', name=op.f('uq_shops_api_token_digest')),
    sa.UniqueConstraint('platform', 'domain', name=op.f('uq_shops_platform_domain')),
    sa.UniqueConstraint('widget_key', name=op.f('uq_shops_widget_key'))
    )
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shops_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('customers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('platform_customer_id', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('platform_updated_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('redacted_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_customers_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('shop_id', 'platform_customer_id', name=op.f('uq_customers_shop_id_platform_customer_id'))
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_shop_email', ['shop_id', 'email'], unique=False)

    op.create_table('privacy_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.Enum('data_request', 'customer_redact', 'shop_redact', name='privacyrequestkind', native_enum=False, length=32), nullable=False),
    sa.Column('platform_request_id', sa.String(length=64), nullable=True),
    sa.Column('subject', sa.JSON(), nullable=False),
    sa.Column('export_encrypted', sa.Text(), nullable=True),
    sa.Column('completed_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_privacy_requests_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_privacy_requests'))
    )
    with op.batch_alter_table('privacy_requests', schema=None) as batch_op:
        batch_op.create_index('ix_privacy_requests_shop', ['shop_id', 'created_at'], unique=False)

    op.create_table('refunds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('platform_refund_id', sa.String(length=64), nullable=False),
    sa.Column('platform_order_id', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.Numeric(precision=20, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('refunded_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_refunds_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('shop_id', 'platform_refund_id', name=op.f('uq_refunds_shop_id_platform_refund_id'))
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index('ix_refunds_shop_order', ['shop_id', 'platform_order_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('platform', sa.String(length=40), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=100), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('occurred_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('received_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('received', 'retrying', 'processed', 'ignored', 'failed', name='deliverystatus', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('processed_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_webhook_deliveries_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('platform', 'shop_id', 'delivery_id', name=op.f('uq_webhook_deliveries_platform_shop_id_delivery_id'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_shop', ['shop_id', 'received_at'], unique=False)

    op.create_table('orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('platform_order_id', sa.String(length=64), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total', sa.Numeric(precision=20, scale=4), nullable=False),
    sa.Column('financial_status', sa.Enum('pending', 'authorized', 'partially_paid', 'paid', 'partially_refunded', 'refunded', 'voided', 'unknown', name='financialstatus', native_enum=False, length=32), nullable=False),
    sa.Column('fulfillment_status', sa.Enum('unfulfilled', 'partial', 'fulfilled', 'delivered', 'returned', 'unknown', name='fulfillmentstatus', native_enum=False, length=32), nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('customer_name', sa.String(length=200), nullable=True),
    sa.Column('placed_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('platform_updated_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('is_complete', sa.Boolean(), nullable=False),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_orders_customer_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_orders_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('shop_id', 'platform_order_id', name=op.f('uq_orders_shop_id_platform_order_id'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_shop_number', ['shop_id', 'number'], unique=False)
        batch_op.create_index('ix_orders_shop_platform_updated', ['shop_id', 'platform_updated_at', 'id'], unique=False)

    op.create_table('order_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('platform_line_id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=True),
    sa.Column('product_id', sa.String(length=64), nullable=True),
    sa.Column('variant_id', sa.String(length=64), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=20, scale=4), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_lines_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_lines_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_lines')),
    sa.UniqueConstraint('order_id', 'platform_line_id', name=op.f('uq_order_lines_order_id_platform_line_id'))
    )
    with op.batch_alter_table('order_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_lines_shop_id'), ['shop_id'], unique=False)

    op.create_table('voc_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reference', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.Enum('complaint', 'inquiry', 'suggestion', 'praise', 'claim', 'want_slip', name='vockind', native_enum=False, length=32), nullable=False),
    sa.Column('channel', sa.Enum('widget', 'follow_up', 'platform', 'email', 'phone', 'staff', 'social', name='vocchannel', native_enum=False, length=32), nullable=False),
    sa.Column('status', sa.Enum('received', 'acknowledged', 'in_progress', 'responded', 'closed', name='vocstatus', native_enum=False, length=32), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('contact_name', sa.String(length=200), nullable=True),
    sa.Column('contact_email', sa.String(length=320), nullable=True),
    sa.Column('contact_phone', sa.String(length=64), nullable=True),
    sa.Column('category', sa.String(length=100), nullable=True),
    sa.Column('severity', sa.String(length=20), nullable=True),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('root_cause', sa.Text(), nullable=True),
    sa.Column('prevention_action', sa.Text(), nullable=True),
    sa.Column('satisfaction', sa.Integer(), nullable=True),
    sa.Column('acknowledge_due_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('respond_due_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('responded_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_voc_items_customer_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_voc_items_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_voc_items_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voc_items')),
    sa.UniqueConstraint('shop_id', 'reference', name=op.f('uq_voc_items_shop_id_reference'))
    )
    with op.batch_alter_table('voc_items', schema=None) as batch_op:
        batch_op.create_index('ix_voc_items_shop_status', ['shop_id', 'status', 'created_at'], unique=False)

    op.create_table('voc_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('voc_item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('from_status', sa.String(length=32), nullable=True),
    sa.Column('to_status', sa.String(length=32), nullable=True),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('created_at', ccms_addon.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_voc_events_shop_id_shops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['voc_item_id'], ['voc_items.id'], name=op.f('fk_voc_events_voc_item_id_voc_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voc_events'))
    )
    with op.batch_alter_table('voc_events', schema=None) as batch_op:
        batch_op.create_index('ix_voc_events_item', ['voc_item_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_voc_events_shop_id'), ['shop_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('voc_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voc_events_shop_id'))
        batch_op.drop_index('ix_voc_events_item')

    op.drop_table('voc_events')
    with op.batch_alter_table('voc_items', schema=None) as batch_op:
        batch_op.drop_index('ix_voc_items_shop_status')

    op.drop_table('voc_items')
    with op.batch_alter_table('order_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_lines_shop_id'))

    op.drop_table('order_lines')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_shop_platform_updated')
        batch_op.drop_index('ix_orders_shop_number')

    op.drop_table('orders')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_shop')
        batch_op.drop_index('ix_webhook_deliveries_due')

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_refunds_shop_order')

    op.drop_table('refunds')
    with op.batch_alter_table('privacy_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_privacy_requests_shop')

    op.drop_table('privacy_requests')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_shop_email')

    op.drop_table('customers')
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shops_merchant_id'))

    op.drop_table('shops')
    op.drop_table('merchants')
