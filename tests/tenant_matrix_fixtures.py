"""Two tenants on the real store for the cross-tenant route matrix (tests/test_tenant_matrix.py).

Merchant A and merchant B each have a Shopify shop with an owner and an agent (passwords), a
fulfilled order with two lines and a customer, a free-return program that enrolled the order (so
a follow-up and its signed link exist), a guarantee claim, VOC items (one closed with a
satisfaction link) and, for B, a stored monthly report. Every value of B that a caller could name
— ids, references, order numbers, tokens — is collected in :class:`Tenant`; the strings that only
B's data contains are its ``markers``, searched for in every answer A gets.

B has more VOC items than A: references are numbered per shop (A's first item and B's first item
share a number), so the matrix names B's last item, whose reference A does not have.

The whole world is built once per test module: :func:`build_world` makes it,
:func:`close_world` removes every row and Redis key it made.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.datastructures import MultiDict

from ccms_addon.app import create_app
from ccms_addon.config import Settings
from ccms_addon.links import make_token
from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.programs import service as programs
from ccms_addon.programs.claims import ClaimRequest, submit_claim
from ccms_addon.programs.followups import LINK_PURPOSE
from ccms_addon.programs.schemas import load_terms
from ccms_addon.runtime import Runtime, build_runtime, set_current
from ccms_addon.staff import add_staff
from ccms_addon.store import repository
from ccms_addon.store.models import (Base, FollowUp, Merchant, Order, OrderLine, ProgramKind,
                                     StaffRole, VocChannel, VocItem, VocKind)
from ccms_addon.voc import reports
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.service import SATISFACTION_PURPOSE, VocDesk
from ccms_addon.widgets import ratelimit
from tests.conftest import SHOPIFY_SECRET, _empty_tables
from tests.install.conftest import SHOPIFY_API_KEY, session_token

PASSWORD = "correct horse battery staple"
#: the https host the embedded (iframe) session runs on: its cookie is Secure
EMBEDDED_BASE = "https://care.example"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FREE_RETURN_TERMS = {"window_days": 365, "conditions": ["unused"],
                     "steps": [{"key": "reminder", "offset_days": 30, "kind": "reminder",
                                "template": "free_return_reminder"}]}
#: VOC items per tenant: B has more, so its last reference is one A does not have
ITEMS = {"a": 2, "b": 6}


@dataclass
class Tenant:
    """One merchant with one shop, and every value of it a route can be given."""

    label: str
    merchant_id: int
    shop_id: int
    domain: str
    widget_key: str
    api_token: str
    owner_id: int
    owner_email: str
    agent_id: int
    agent_email: str
    order_id: int
    platform_order_id: str
    order_number: str
    buyer_email: str
    line_ids: list[str]
    program_id: int
    program_name: str
    claim_id: int
    follow_up_id: int
    item_ids: list[int]
    references: list[str]
    satisfaction_token: str
    follow_up_token: str
    #: strings found only in this tenant's data (never in the other's answers)
    markers: tuple[str, ...]

    @property
    def item_id(self) -> int:
        """The item the matrix names: the last one (its reference is this tenant's alone)."""
        return self.item_ids[-1]

    @property
    def reference(self) -> str:
        return self.references[-1]


class Dashboard:
    """A browser signed in to the dashboard: keeps its cookies and the page's CSRF token."""

    def __init__(self, client: FlaskClient, base_url: str = "http://localhost"):
        self.client = client
        self.base_url = base_url
        self.token = ""

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, base_url=self.base_url, **kwargs)

    def post(self, path: str, data: dict | list | None = None):
        form = list(data.items()) if isinstance(data, dict) else list(data or [])
        return self.client.post(path, base_url=self.base_url,
                                data=MultiDict(form + [("csrf_token", self.token)]))

    def request(self, method: str, path: str, form: dict | None = None):
        if method == "POST":
            return self.post(path, form or {})
        return self.client.open(path, method=method, base_url=self.base_url)

    def learn_csrf(self) -> None:
        page = self.get("/dashboard/inbox").get_data(as_text=True)
        found = CSRF.search(page)
        assert found, "the signed-in inbox carries no CSRF token"
        self.token = found.group(1)


@dataclass
class World:
    runtime: Runtime
    app: Flask
    a: Tenant
    b: Tenant
    #: A's dashboard sessions: the owner signed in with a password, the owner launched inside
    #: Shopify's admin, and an agent signed in with a password
    dashboards: dict[str, Dashboard] = field(default_factory=dict)
    redis: Any = None
    #: B's rows (:func:`tenant_rows`) before A made any request
    b_rows: dict[str, list[tuple]] = field(default_factory=dict)

    def api_headers(self, extra: dict | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.a.api_token}", **(extra or {})}


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def _order(tenant: str, number: str, buyer: str, name: str) -> OrderRecord:
    delivered = datetime.now(timezone.utc) - timedelta(days=1)
    return OrderRecord(
        platform_order_id=f"{tenant}-po-{number}", number=f"#{number}", currency="KRW",
        total=Decimal("45000"), updated_at=delivered, placed_at=delivered - timedelta(days=2),
        financial_status=FinancialStatus.PAID, fulfillment_status=FulfillmentStatus.FULFILLED,
        email=buyer, phone="010-5555-" + number, customer_name=name,
        customer=CustomerRecord(platform_customer_id=f"{tenant}-c-{number}", email=buyer,
                                name=name),
        lines=(OrderLineRecord(f"{tenant}-line-{number}-1", f"{name} mug", 1, Decimal("15000"),
                               product_id="101"),
               OrderLineRecord(f"{tenant}-line-{number}-2", f"{name} shirt", 2, Decimal("15000"),
                               product_id="202")),
        fulfilled_at=delivered - timedelta(days=1), delivered_at=delivered, locale="en",
        accepts_marketing=True)


def _tenant(runtime: Runtime, label: str, number: str) -> Tenant:
    """Merchant ``label`` with everything the routes name; ``number`` makes its order unique."""
    upper = label.upper()
    domain = f"{label}-tenant-matrix.myshopify.com"
    buyer = f"{label}-buyer-{number}@tenant-{label}.test"
    name = f"{upper}name Buyer{number}"
    secret = f"{upper}-SECRET-VOICE-{number}"
    with runtime.db.session() as session:
        merchant = Merchant(name=f"{upper} Tenant Merchant {number}",
                            email=f"owner@tenant-{label}.test")
        new = repository.create_shop(session, runtime.box, platform="shopify", domain=domain,
                                     name=f"{upper} Shop {number}", merchant=merchant,
                                     credentials={"access_token": f"shpat_{label}"},
                                     webhook_secret=f"whsec_{label}")
        shop = new.shop
        shop.timezone = "Asia/Seoul"
        shop.settings = {"widget": {"categories": [
            {"key": "delivery", "labels": {"en": f"{upper} delivery {number}"}}]}}
        shop_id, merchant_id, widget_key = shop.id, shop.merchant_id, shop.widget_key
        owner = add_staff(session, merchant_id, f"owner@tenant-{label}.test", f"{upper} Owner",
                          StaffRole.OWNER, password=PASSWORD)
        agent = add_staff(session, merchant_id, f"agent@tenant-{label}.test", f"{upper} Agent",
                          StaffRole.AGENT, password=PASSWORD)
        owner_id, agent_id = owner.id, agent.id
        program = programs.create_program(
            session, shop_id, kind=ProgramKind.FREE_RETURN, name=f"{upper} returns {number}",
            terms=load_terms(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS), actor="test")
        program_id = program.id
        record = _order(label, number, buyer, name)
        changes = repository.upsert_orders(session, shop_id, [record])
    for change in changes:  # as the pipeline does: enrolls the order, schedules its follow-up
        runtime.pm.hook.order_synced(shop_id=shop_id, order_id=change.order_id,
                                     platform_order_id=change.platform_order_id,
                                     created=change.created)
    with runtime.db.session() as session:
        order = session.scalar(select(Order).where(Order.shop_id == shop_id))
        order_id = order.id
        line_ids = list(session.scalars(select(OrderLine.platform_line_id).where(
            OrderLine.order_id == order_id).order_by(OrderLine.id)))
        follow_up_id = session.scalar(select(FollowUp.id).where(FollowUp.shop_id == shop_id)
                                      .order_by(FollowUp.id).limit(1))
    assert follow_up_id is not None, "the program did not schedule a follow-up"
    claim_item, claim = submit_claim(runtime, shop_id, ClaimRequest(
        kind=ProgramKind.FREE_RETURN, order_id=order_id, message=f"{secret} claim",
        contact_email=buyer, conditions_accepted=True))
    desk = VocDesk(runtime)
    items = [claim_item]
    for n in range(ITEMS[label]):
        items.append(record_voc_item(runtime, shop_id, NewVocItem(
            kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, actor="shopper",
            subject=f"{secret} subject {n}", body=f"{secret} body {n}: the parcel is late",
            contact_email=buyer, contact_name=name, order_id=order_id, category="delivery",
            locale="en")))
    closed = items[1]
    desk.reply([shop_id], closed.id, "test", "Sorry", given_outside=True)
    desk.close([shop_id], closed.id, "test", root_cause=f"{secret} root cause",
               ask_satisfaction=False)
    settings = runtime.settings
    return Tenant(
        label=label, merchant_id=merchant_id, shop_id=shop_id, domain=domain,
        widget_key=widget_key, api_token=new.api_token, owner_id=owner_id,
        owner_email=f"owner@tenant-{label}.test", agent_id=agent_id,
        agent_email=f"agent@tenant-{label}.test", order_id=order_id,
        platform_order_id=record.platform_order_id, order_number=record.number,
        buyer_email=buyer, line_ids=line_ids, program_id=program_id,
        program_name=f"{upper} returns {number}", claim_id=claim.id,
        follow_up_id=follow_up_id, item_ids=[i.id for i in items],
        references=[i.reference for i in items],
        satisfaction_token=make_token(settings, SATISFACTION_PURPOSE,
                                      {"item": closed.id, "shop": shop_id}),
        follow_up_token=make_token(settings, LINK_PURPOSE, {"f": follow_up_id, "s": shop_id}),
        markers=(secret, buyer, name, domain, f"{upper} Shop {number}",
                 record.platform_order_id, f"{upper} delivery {number}",
                 f"{upper} Tenant Merchant {number}", f"owner@tenant-{label}.test",
                 f"agent@tenant-{label}.test", widget_key, *line_ids))


def _sign_in(app: Flask, email: str) -> Dashboard:
    """A person signed in through the login form, as a browser does."""
    board = Dashboard(app.test_client())
    form = board.get("/dashboard/login").get_data(as_text=True)
    answer = board.client.post("/dashboard/login", data={
        "csrf_token": CSRF.search(form).group(1), "email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    board.learn_csrf()
    return board


def _embedded(app: Flask, tenant: Tenant) -> Dashboard:
    """A's owner launched inside Shopify's admin with an App Bridge session token."""
    board = Dashboard(app.test_client(), EMBEDDED_BASE)
    answer = board.get(f"/dashboard/?embedded=1&shop={tenant.domain}&host=YWRtaW4"
                       f"&id_token={session_token(shop=tenant.domain)}")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    board.learn_csrf()
    return board


def build_world(database_url: str, redis_url: str) -> World:
    """The runtime, the app (as the tests' factory builds it, widget rate limits out of reach)
    and the two tenants, with A's dashboard sessions."""
    var_dir = tempfile.mkdtemp(prefix="ccms-tenant-matrix-")
    settings = Settings.from_env({
        "CCMS_DATABASE_URL": database_url, "CCMS_REDIS_URL": redis_url,
        "CCMS_SECRET_KEY": "tenant-matrix-secret", "CCMS_VAR_DIR": var_dir,
        "CCMS_SHOPIFY_API_SECRET": SHOPIFY_SECRET,
    })
    settings = dataclasses.replace(settings, platforms={
        **settings.platforms,
        "shopify": {**settings.platforms.get("shopify", {}), "api_key": SHOPIFY_API_KEY}})
    connection = redis_lib.Redis.from_url(redis_url)
    connection.flushdb()
    runtime = build_runtime(settings, redis_connection=connection)
    _empty_tables(runtime)
    set_current(runtime)
    a = _tenant(runtime, "a", "5101")
    b = _tenant(runtime, "b", "7303")
    now = datetime.now(timezone.utc)
    reports.write_report(runtime, [b.shop_id], now.year, now.month, "Asia/Seoul", "en", "html")
    unreachable = [("1000000/minute", ratelimit.PER_IP), ("1000000/minute", ratelimit.PER_SHOP)]
    app = create_app(runtime=runtime, widget_limits={
        endpoint: unreachable for endpoint in ratelimit.DEFAULT_LIMITS})
    app.config["TESTING"] = True
    world = World(runtime=runtime, app=app, a=a, b=b, redis=connection,
                  b_rows=tenant_rows(runtime, b))
    world.dashboards = {"password": _sign_in(app, a.owner_email), "embedded": _embedded(app, a),
                        "agent": _sign_in(app, a.agent_email)}
    return world


def close_world(world: World) -> None:
    """Remove every row, Redis key and file the world made."""
    _empty_tables(world.runtime)
    world.redis.flushdb()
    set_current(None)
    world.runtime.close()
    world.redis.close()
    shutil.rmtree(world.runtime.settings.var_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# B's data, to prove it did not change
# --------------------------------------------------------------------------------------------------


def tenant_rows(runtime: Runtime, tenant: Tenant) -> dict[str, list[tuple]]:
    """Every row of every table that belongs to ``tenant``: its merchant, its shops, and every
    row carrying their ``shop_id`` or its ``merchant_id`` (new tables are included by
    themselves), each row whole, sorted — any insert, update or delete shows."""
    found: dict[str, list[tuple]] = {}
    with runtime.db.engine.connect() as conn:
        shop_ids = [row[0] for row in conn.execute(
            text("SELECT id FROM shops WHERE merchant_id = :m"), {"m": tenant.merchant_id})]
        for table in Base.metadata.sorted_tables:
            columns = table.c
            if table.name == "merchants":
                condition = columns.id == tenant.merchant_id
            elif table.name == "shops":
                condition = columns.merchant_id == tenant.merchant_id
            elif "shop_id" in columns:
                condition = columns.shop_id.in_(shop_ids)
            elif "merchant_id" in columns:
                condition = columns.merchant_id == tenant.merchant_id
            else:
                continue
            rows = conn.execute(table.select().where(condition)).all()
            found[table.name] = sorted((tuple(map(repr, row)) for row in rows))
    return found


def markers_in(body: str, markers: Iterable[str]) -> list[str]:
    """The markers ``body`` contains (case-insensitive)."""
    folded = body.casefold()
    return [marker for marker in markers if marker.casefold() in folded]


def shop_of_item(runtime: Runtime, reference: str) -> list[int]:
    """The shops that have an item with this reference."""
    with runtime.db.session() as session:
        return list(session.scalars(select(VocItem.shop_id).where(VocItem.reference == reference)))

