"""The shared VOC store: one schema for every platform, shop and channel.

Every row that belongs to a shop carries ``shop_id`` and every query is scoped by it (see
``repository.py``). Money is ``Numeric`` with its ISO 4217 currency beside it, never a float; KRW and
JPY have no minor unit, so 15000 KRW is stored and shown as 15000. Timestamps are UTC.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer,
                        LargeBinary, MetaData, Numeric, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from ccms_addon.platforms import FinancialStatus, FulfillmentStatus

#: constraint names Alembic can find again on every database
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: money columns: 20 digits with 4 decimals covers any ISO 4217 currency (BHD has 3)
Money = Numeric(20, 4, asdecimal=True)

#: primary keys: 64-bit on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite
Id = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), Decimal: Money}


class ShopStatus(str, enum.Enum):
    ACTIVE = "active"
    UNINSTALLED = "uninstalled"


class DeliveryStatus(str, enum.Enum):
    """Where a webhook delivery is in the pipeline. Only ``processed``, ``ignored`` and ``failed``
    are final; the dispatcher (re-)enqueues everything else once ``next_attempt_at`` has passed."""

    RECEIVED = "received"
    RETRYING = "retrying"      # carried data stored; the platform API must be asked again later
    PROCESSED = "processed"
    IGNORED = "ignored"        # a topic no adapter handles: kept, not failed
    FAILED = "failed"          # invalid payload or retries exhausted: kept for a human


class VocKind(str, enum.Enum):
    COMPLAINT = "complaint"
    INQUIRY = "inquiry"
    SUGGESTION = "suggestion"
    PRAISE = "praise"
    CLAIM = "claim"
    WANT_SLIP = "want_slip"


class VocChannel(str, enum.Enum):
    """The built-in intake channels. The column is a plain string: a plugin's ``register_channels``
    adds its own (``instagram``, ``naver_talk``…)."""

    WIDGET = "widget"
    FOLLOW_UP = "follow_up"
    PLATFORM = "platform"
    EMAIL = "email"
    PHONE = "phone"
    STAFF = "staff"
    SOCIAL = "social"


class VocSeverity(str, enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class StaffRole(str, enum.Enum):
    """``owner``: everything, settings and staff included; ``manager``: every item and the reports;
    ``agent``: the items of the inbox (assigning, replying, closing); ``viewer``: reads the inbox,
    the items and the reports, changes nothing."""

    OWNER = "owner"
    MANAGER = "manager"
    AGENT = "agent"
    VIEWER = "viewer"


class VocStatus(str, enum.Enum):
    """ISO 10002 / CCMS lifecycle: received → acknowledged → in_progress → responded → closed."""

    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESPONDED = "responded"
    CLOSED = "closed"


class OutboundStatus(str, enum.Enum):
    """An outbound message is recorded ``pending`` before any attempt. ``sending``: an attempt
    claimed it and has not yet sent a byte the provider could keep — a later attempt may take it
    over. ``delivering``: the attempt passed its point of no return (SMTP content, the HTTP
    request); a row found there is parked ``unknown`` and never sent again."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERING = "delivering"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class PrivacyRequestKind(str, enum.Enum):
    DATA_REQUEST = "data_request"
    CUSTOMER_REDACT = "customer_redact"
    SHOP_REDACT = "shop_redact"


def _enum(enum_cls: type[enum.Enum], length: int = 32):
    """Enums are stored as their string values (portable, readable in SQL)."""
    from sqlalchemy import Enum
    return Enum(enum_cls, native_enum=False, length=length, validate_strings=True,
                values_callable=lambda e: [m.value for m in e])


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    shops: Mapped[list["Shop"]] = relationship(back_populates="merchant")


class Shop(Base):
    """A store on one platform. ``domain`` is its identity there: ``x.myshopify.com``, a Cafe24 mall
    id, or a WooCommerce site URL. Secrets are stored encrypted (``ccms_addon.crypto``)."""

    __tablename__ = "shops"
    __table_args__ = (UniqueConstraint("platform", "domain"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    platform: Mapped[str] = mapped_column(String(40))
    domain: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[ShopStatus] = mapped_column(_enum(ShopStatus), default=ShopStatus.ACTIVE)
    widget_key: Mapped[str] = mapped_column(String(64), unique=True)
    api_token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str | None] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    #: the local part's token of the shop's inbound VOC address (``voc-<key>@<inbound domain>``)
    inbound_key: Mapped[str | None] = mapped_column(String(40), unique=True)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    uninstalled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="shops")


class Staff(Base):
    """A person of the merchant's who works the VOC inbox, across all the merchant's shops."""

    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("merchant_id", "email"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"),
                                             index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole), default=StaffRole.AGENT)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    #: werkzeug's salted scrypt/pbkdf2 hash; None for someone who only signs in from the platform
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("shop_id", "platform_customer_id"),
                      Index("ix_customers_shop_email", "shop_id", "email"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_customer_id: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(64))
    platform_updated_at: Mapped[datetime | None]
    redacted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Order(Base):
    """The newest state the platform reported (``platform_updated_at`` decides; see repository)."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("shop_id", "platform_order_id"),
                      Index("ix_orders_shop_platform_updated", "shop_id", "platform_updated_at", "id"),
                      Index("ix_orders_shop_number", "shop_id", "number"),
                      # the board's repurchase figure (migration 0005)
                      Index("ix_orders_shop_customer", "shop_id", "customer_id", "placed_at",
                            postgresql_include=["cancelled_at"]))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_order_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal]
    financial_status: Mapped[FinancialStatus] = mapped_column(_enum(FinancialStatus))
    fulfillment_status: Mapped[FulfillmentStatus] = mapped_column(_enum(FulfillmentStatus))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(64))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    placed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    #: when the goods were handed to the carrier and, where the platform says so, delivered: the
    #: after-sale programs count their windows from delivery (from fulfilment when unknown)
    fulfilled_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    #: the shopper's language at checkout and shipping country (their time zone for follow-ups)
    locale: Mapped[str | None] = mapped_column(String(16))
    country_code: Mapped[str | None] = mapped_column(String(2))
    #: the shopper's marketing consent as the platform recorded it (None: unknown = no consent)
    accepts_marketing: Mapped[bool | None] = mapped_column(Boolean)
    platform_updated_at: Mapped[datetime]
    is_complete: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer | None] = relationship()
    lines: Mapped[list["OrderLine"]] = relationship(order_by="OrderLine.id",
                                                    cascade="all, delete-orphan")
    #: refunds join on the platform's order id: a refund may arrive before its order does
    refunds: Mapped[list["Refund"]] = relationship(
        primaryjoin="and_(foreign(Refund.shop_id) == Order.shop_id, "
                    "foreign(Refund.platform_order_id) == Order.platform_order_id)",
        order_by="Refund.id", viewonly=True)


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "platform_line_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    platform_line_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    sku: Mapped[str | None] = mapped_column(String(200))
    product_id: Mapped[str | None] = mapped_column(String(64))
    variant_id: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("shop_id", "platform_refund_id"),
                      Index("ix_refunds_shop_order", "shop_id", "platform_order_id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_refund_id: Mapped[str] = mapped_column(String(64))
    platform_order_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    note: Mapped[str | None] = mapped_column(Text)
    refunded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The durable inbox. A delivery is acknowledged to the platform only once this row is committed;
    (platform, shop_id, delivery_id) is unique, so a second copy of a delivery creates nothing."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("platform", "shop_id", "delivery_id"),
                      Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_shop", "shop_id", "received_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(40))
    delivery_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus), default=DeliveryStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: when the dispatcher may hand the row to RQ (again); null = at once
    next_attempt_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class VocItem(Base):
    """One voice of the customer, whatever the channel: the unit of the ISO 10002 lifecycle."""

    __tablename__ = "voc_items"
    __table_args__ = (UniqueConstraint("shop_id", "reference"),
                      Index("ix_voc_items_shop_status", "shop_id", "status", "created_at"),
                      Index("ix_voc_items_shop_created", "shop_id", "created_at"),
                      Index("ix_voc_items_shop_order", "shop_id", "order_id"),
                      Index("ix_voc_items_shop_product", "shop_id", "product_ref", "category",
                            "created_at"),
                      # the dashboard's (migration 0005, measured by bench/dashboard.py)
                      Index("ix_voc_items_created", "created_at", "id"),
                      Index("ix_voc_items_shop_email", "shop_id", text("lower(contact_email)")),
                      Index("ix_voc_items_shop_phone", "shop_id", "contact_phone"),
                      Index("ix_voc_items_shop_customer", "shop_id", "customer_id", "kind",
                            postgresql_include=["status", "responded_at", "closed_at"]),
                      Index("ix_voc_items_shop_closed", "shop_id", "closed_at"),
                      *(Index(f"ix_voc_items_{column}_trgm", column, postgresql_using="gin",
                              postgresql_ops={column: "gin_trgm_ops"}).ddl_if(dialect="postgresql")
                        for column in ("subject", "body", "contact_name")))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    reference: Mapped[str] = mapped_column(String(32))
    kind: Mapped[VocKind] = mapped_column(_enum(VocKind))
    #: a :class:`VocChannel` value or a channel a plugin registered
    channel: Mapped[str] = mapped_column(String(40))
    status: Mapped[VocStatus] = mapped_column(_enum(VocStatus), default=VocStatus.RECEIVED)
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    locale: Mapped[str | None] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    contact_phone: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(100))
    severity: Mapped[str | None] = mapped_column(String(20))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"),
                                                    index=True)
    #: the platform's product id of the order line the item is about (recurrence is per product)
    product_ref: Mapped[str | None] = mapped_column(String(120))
    #: the earlier item about the same order and problem, when this one repeats it
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("voc_items.id", ondelete="SET NULL"))
    #: raised when the same category on the same product came back within the shop's window
    recurrence: Mapped[bool] = mapped_column(Boolean, default=False)
    #: 0 none, 1 the assignee was warned that the SLA is about to break, 2 the owner was told too
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    #: the Message-ID of the customer's email, so a reply lands in their thread
    thread_ref: Mapped[str | None] = mapped_column(String(300))
    root_cause: Mapped[str | None] = mapped_column(Text)
    prevention_action: Mapped[str | None] = mapped_column(Text)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    satisfaction_comment: Mapped[str | None] = mapped_column(Text)
    satisfaction_requested_at: Mapped[datetime | None]
    acknowledge_due_at: Mapped[datetime | None]
    respond_due_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    responded_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    events: Mapped[list["VocEvent"]] = relationship(order_by="VocEvent.id", back_populates="item")
    issues: Mapped[list["VocIssue"]] = relationship(order_by="VocIssue.id", back_populates="item")


class VocIssue(Base):
    """Every problem the customer raised in one item, handled or not (an item about a late parcel
    may also say the courier was rude): the record ISO 10002 asks for, and the unit of recurrence."""

    __tablename__ = "voc_issues"
    __table_args__ = (Index("ix_voc_issues_shop_category", "shop_id", "category", "created_at"),
                      Index("ix_voc_issues_shop_created", "shop_id", "created_at", "category",
                            "handled"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    voc_item_id: Mapped[int] = mapped_column(ForeignKey("voc_items.id", ondelete="CASCADE"),
                                             index=True)
    category: Mapped[str] = mapped_column(String(100))
    summary: Mapped[str | None] = mapped_column(Text)
    handled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    item: Mapped[VocItem] = relationship(back_populates="issues")


class VocEvent(Base):
    """The timeline and audit trail of a VOC item: every change is one row."""

    __tablename__ = "voc_events"
    __table_args__ = (Index("ix_voc_events_item", "voc_item_id", "created_at"),
                      Index("ix_voc_events_shop_created", "shop_id", "created_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    voc_item_id: Mapped[int] = mapped_column(ForeignKey("voc_items.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    item: Mapped[VocItem] = relationship(back_populates="events")


class OutboundMessage(Base):
    """Every message the add-on sends (to a merchant or a shopper), keyed by an idempotency key
    recorded before the first attempt."""

    __tablename__ = "outbound_messages"
    __table_args__ = (UniqueConstraint("idempotency_key"),
                      Index("ix_outbound_messages_shop", "shop_id", "created_at"),
                      Index("ix_outbound_messages_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    locale: Mapped[str | None] = mapped_column(String(16))
    #: the structured form machine channels (a webhook) send: purpose, reference, links
    data: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[OutboundStatus] = mapped_column(_enum(OutboundStatus),
                                                   default=OutboundStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    #: when the current attempt claimed the row (a row left ``sending``/``delivering`` long after
    #: it was claimed lost its worker)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PrivacyRequest(Base):
    """A data-subject request from a platform (export or erasure) and what we did about it."""

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_shop", "shop_id", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[PrivacyRequestKind] = mapped_column(_enum(PrivacyRequestKind))
    platform_request_id: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[dict] = mapped_column(JSON, default=dict)
    #: the export, Fernet-encrypted (it is personal data)
    export_encrypted: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------------------------------
# After-sale programs: guarantees and follow-ups (ccms_addon.programs)
# --------------------------------------------------------------------------------------------------


class ProgramKind(str, enum.Enum):
    FREE_RETURN = "free_return"   # free returns for N days from delivery
    BUYBACK = "buyback"           # the seller buys the product back if a stated event happens
    FOLLOW_UP = "follow_up"       # satisfaction check-ins and follow-up sequences


class ProgramStatus(str, enum.Enum):
    ACTIVE = "active"       # enrolls new orders
    PAUSED = "paused"       # enrolls nothing new; existing enrollments run on
    ARCHIVED = "archived"


class EnrollmentStatus(str, enum.Enum):
    ACTIVE = "active"
    CANCELLED = "cancelled"   # the order was cancelled or refunded, or the shop left


class FollowUpStatus(str, enum.Enum):
    """``scheduled`` rows live only in SQL; near their due time the scheduler hands them to RQ
    (``queued``). ``dispatched`` means the message is recorded in the outbox, which owns its
    delivery from then on (``outbound_messages`` says whether it was sent)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    SKIPPED = "skipped"       # not sent on purpose: no consent, no contact (reason in skip_reason)
    CANCELLED = "cancelled"   # a stop condition: order cancelled or refunded, shop uninstalled


class ClaimStatus(str, enum.Enum):
    PENDING = "pending"           # waiting for the merchant's decision
    INELIGIBLE = "ineligible"     # outside the terms; recorded, the merchant may still approve
    APPROVED = "approved"         # the platform-side refund or return is being created
    SETTLED = "settled"           # the platform created it
    REJECTED = "rejected"
    FAILED = "failed"             # the platform refused for good; a human must act


class Program(Base):
    """A guarantee or follow-up program of one shop. Its terms live in versions: an enrollment
    keeps the version it was sold with, whatever the merchant changes later."""

    __tablename__ = "programs"
    __table_args__ = (UniqueConstraint("shop_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[ProgramKind] = mapped_column(_enum(ProgramKind))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[ProgramStatus] = mapped_column(_enum(ProgramStatus), default=ProgramStatus.ACTIVE)
    current_version_id: Mapped[int | None] = mapped_column(Id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProgramVersion(Base):
    """Immutable terms of a program (validated by ``ccms_addon.programs.schemas``)."""

    __tablename__ = "program_versions"
    __table_args__ = (UniqueConstraint("program_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    terms: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Enrollment(Base):
    """One order in one program, under the terms of one version; at most one per (program, order)."""

    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("program_id", "order_id"),
                      Index("ix_enrollments_shop_order", "shop_id", "order_id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    program_version_id: Mapped[int] = mapped_column(ForeignKey("program_versions.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    status: Mapped[EnrollmentStatus] = mapped_column(_enum(EnrollmentStatus),
                                                     default=EnrollmentStatus.ACTIVE)
    #: where the windows start: delivery, else fulfilment, else when we saw the order fulfilled
    anchor_at: Mapped[datetime]
    #: the guarantee's last moment (None for a follow-up sequence)
    ends_at: Mapped[datetime | None]
    #: the shopper's time zone and language, fixed at enrollment
    timezone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(16))
    cancelled_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProductCollection(Base):
    """A platform's grouping of products a guarantee may name: a Shopify collection, a Cafe24
    category, a WooCommerce product category. Its members are fetched through the admin API when a
    program names it and refreshed daily (``ccms_addon.programs.collections``)."""

    __tablename__ = "product_collections"
    __table_args__ = (UniqueConstraint("shop_id", "platform_collection_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform_collection_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(255))
    product_count: Mapped[int] = mapped_column(Integer, default=0)
    #: the last complete fetch of its members (None: never fetched)
    synced_at: Mapped[datetime | None]
    #: the last fetch, complete or failed
    attempted_at: Mapped[datetime | None]
    #: why the last fetch failed (None after a success)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CollectionMember(Base):
    """A product's time in a collection. A refresh that no longer finds it sets ``removed_at``
    instead of deleting the row, so a claim is judged by the membership its order was enrolled
    under, whatever the merchant moved since."""

    __tablename__ = "collection_members"
    __table_args__ = (Index("ix_collection_members_shop_product", "shop_id", "product_id"),
                      Index("uq_collection_members_current", "collection_id", "product_id",
                            unique=True, sqlite_where=text("removed_at IS NULL"),
                            postgresql_where=text("removed_at IS NULL")))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    collection_id: Mapped[int] = mapped_column(ForeignKey("product_collections.id",
                                                          ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]


class FollowUp(Base):
    """One message of a program's sequence for one enrollment: SQL is the record of truth."""

    __tablename__ = "follow_ups"
    __table_args__ = (UniqueConstraint("enrollment_id", "step"),
                      Index("ix_follow_ups_due", "status", "due_at"),
                      Index("ix_follow_ups_shop_order", "shop_id", "order_id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))        # check_in | reminder | message
    purpose: Mapped[str] = mapped_column(String(20))     # transactional | marketing
    channel: Mapped[str] = mapped_column(String(40))
    status: Mapped[FollowUpStatus] = mapped_column(_enum(FollowUpStatus),
                                                   default=FollowUpStatus.SCHEDULED)
    due_at: Mapped[datetime]
    #: while queued: when the scheduler checks that the RQ job still exists (a Redis loss)
    lease_until: Mapped[datetime | None]
    #: while queued: the RQ job that carries it (several due follow-ups travel in one job)
    job_id: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None]
    skip_reason: Mapped[str | None] = mapped_column(String(200))
    #: times a marketing step was postponed because a complaint on the order was open
    postponed: Mapped[int] = mapped_column(Integer, default=0)
    answer: Mapped[int | None] = mapped_column(Integer)
    answer_comment: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    #: set by the one answer that opens the complaint (a conditional UPDATE: never two)
    complaint_opened: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the complaint a low check-in answer opened
    voc_item_id: Mapped[int | None] = mapped_column(ForeignKey("voc_items.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Claim(Base):
    """A guarantee claim: the VOC item of kind ``claim`` plus what deciding and settling it needs."""

    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("voc_item_id"),
                      Index("ix_claims_shop_status", "shop_id", "status", "created_at"),
                      Index("ix_claims_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    voc_item_id: Mapped[int] = mapped_column(ForeignKey("voc_items.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id",
                                                                 ondelete="SET NULL"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    program_kind: Mapped[ProgramKind] = mapped_column(_enum(ProgramKind))
    status: Mapped[ClaimStatus] = mapped_column(_enum(ClaimStatus))
    #: the qualifying event (buyback) or the return reason (free return), and when it happened
    event: Mapped[str | None] = mapped_column(String(64))
    event_date: Mapped[datetime | None]
    #: what the eligibility check found: {"eligible": bool, "reasons": [...], "percent": "80", …}
    eligibility: Mapped[dict] = mapped_column(JSON, default=dict)
    amount: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    lines: Mapped[list] = mapped_column(JSON, default=list)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    settlement: Mapped[dict | None] = mapped_column(JSON)
    settled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RepurchaseRollup(Base):
    """The board's repurchase figure of one shop for one cohort, kept so that it is computed once
    an hour at most (migration 0007; ``voc.metrics.board_repurchase``). The cohort's bounds move
    at the board's local midnight, so a new day never reads an old row; a row older than
    ``metrics.REPURCHASE_ROLLUP_MAX_AGE`` is computed again. Deleted with its shop."""

    __tablename__ = "repurchase_rollups"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         primary_key=True)
    cohort_from: Mapped[datetime] = mapped_column(primary_key=True)
    cohort_to: Mapped[datetime] = mapped_column(primary_key=True)
    window_days: Mapped[int] = mapped_column(Integer, primary_key=True)
    resolved_customers: Mapped[int] = mapped_column(Integer)
    resolved_repurchased: Mapped[int] = mapped_column(Integer)
    never_customers: Mapped[int] = mapped_column(Integer)
    never_repurchased: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime]


# Migration 0007's indexes of voc_items, PostgreSQL only: the board's series and top lists from the
# index alone (SQLite has no INCLUDE and reads ix_voc_items_shop_created), and the inbox's
# two-character search (the migration creates the function with it).
from sqlalchemy import func as _func  # noqa: E402 — beside the one index that needs it

Index("ix_voc_items_board", VocItem.shop_id, VocItem.created_at, postgresql_using="btree",
      postgresql_include=["kind", "category", "product_ref", "satisfaction",
                          "satisfaction_requested_at", "acknowledged_at", "responded_at",
                          "closed_at"]).ddl_if(dialect="postgresql")
Index("ix_voc_items_bigrams",
      _func.ccms_bigrams(VocItem.shop_id, VocItem.subject, VocItem.body, VocItem.contact_name),
      postgresql_using="gin").ddl_if(dialect="postgresql")
