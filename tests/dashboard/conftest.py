"""Dashboard tests: two merchants on the real store — merchant A with a Cafe24 shop in Seoul and a
Shopify shop, its owner, manager and agent (with passwords); merchant B with one shop, its owner
and its own items — a loopback SMTP server for the replies, and a signed-in test client."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pytest
from rq import SimpleWorker

from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.staff import add_staff
from ccms_addon.store.models import Merchant, Shop, StaffRole, VocChannel, VocItem, VocKind
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from tests.install.conftest import SHOPIFY_API_KEY

SENDER = "care@ccms.test"
PASSWORD = "correct horse battery"
SHOPPER = "shopper@example.com"
HOURS = {"timezone": "Asia/Seoul",
         "weekly": {d: [["00:00", "23:59"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                     "sun")}}
WIDGET = {"hours": HOURS, "ack_promise_hours": 2,
          "categories": [{"key": "delivery", "labels": {"en": "Delivery", "ko": "배송",
                                                        "ja": "配送"}},
                         {"key": "quality", "labels": {"en": "Quality", "ko": "품질",
                                                       "ja": "品質"}}]}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER},
        "shopify": {**settings.platforms.get("shopify", {}), "api_key": SHOPIFY_API_KEY}})


@dataclass
class Team:
    merchant_id: int
    shop_ids: list[int]
    owner: int
    manager: int
    agent: int
    viewer: int
    emails: dict[str, str]


def _team(runtime, make_shop, prefix: str, shops: list[tuple[str, str, str]]) -> Team:
    merchant = Merchant(name=f"{prefix} merchant", email=f"owner@{prefix}.test")
    ids = []
    for platform, domain, zone in shops:
        made = make_shop(platform, domain, name=f"{prefix} {platform}", merchant=merchant,
                         credentials={"access_token": "token"}).shop
        with runtime.db.session() as s:
            row = s.get(Shop, made.id)
            row.timezone = zone
            row.settings = {"widget": WIDGET,
                            "voc": {"rules": [{"keywords": ["late", "늦"],
                                               "category": "delivery"}]}}
        ids.append(made.id)
        merchant_id = made.merchant_id
    roles = ("owner", "manager", "agent", "viewer")
    emails = {role: f"{role}@{prefix}.test" for role in roles}
    with runtime.db.session() as s:
        people = {role: add_staff(s, merchant_id, emails[role], f"{prefix} {role}",
                                  StaffRole(role), password=PASSWORD).id
                  for role in roles}
    return Team(merchant_id, ids, people["owner"], people["manager"], people["agent"],
                people["viewer"], emails)


@pytest.fixture
def team(runtime, make_shop) -> Team:
    """Merchant A: a Cafe24 shop in Seoul and a Shopify shop."""
    return _team(runtime, make_shop, "a", [("cafe24", "ashop", "Asia/Seoul"),
                                            ("shopify", "a-shop.myshopify.com", "Asia/Seoul")])


@pytest.fixture
def other(runtime, make_shop) -> Team:
    """Merchant B, whose items merchant A must never see."""
    return _team(runtime, make_shop, "b", [("shopify", "b-shop.myshopify.com", "Asia/Tokyo")])


def new_item(runtime, shop_id: int, body: str = "The parcel is late", **kwargs) -> VocItem:
    fields = dict(kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body=body, actor="shopper",
                  contact_email=SHOPPER, contact_name="Min Park", locale="en")
    fields.update(kwargs)
    return record_voc_item(runtime, shop_id, NewVocItem(**fields))


def item_row(runtime, item_id: int) -> VocItem:
    with runtime.db.session() as s:
        row = s.get(VocItem, item_id)
        s.expunge(row)
        return row


def deliver_all(runtime) -> None:
    """Run the outbox's jobs in a real RQ worker (burst)."""
    SimpleWorker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


class Dashboard:
    """A browser on the dashboard: signs in through the login form, posts with the page's token."""

    def __init__(self, client):
        self.client = client
        self.token = ""

    def sign_in(self, email: str, password: str = PASSWORD):
        form = self.client.get("/dashboard/login")
        answer = self.client.post("/dashboard/login", data={
            "csrf_token": csrf_of(form.get_data(as_text=True)), "email": email,
            "password": password})
        if answer.status_code == 303:
            self.token = csrf_of(self.client.get("/dashboard/inbox").get_data(as_text=True)) \
                if self.can_read_inbox() else ""
        return answer

    def can_read_inbox(self) -> bool:
        return self.client.get("/dashboard/inbox").status_code == 200

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | list | None = None, *, token: str | None = None):
        if isinstance(data, list):
            pairs = list(data) + [("csrf_token", self.token if token is None else token)]
            from werkzeug.datastructures import MultiDict
            return self.client.post(path, data=MultiDict(pairs))
        return self.client.post(path, data={**(data or {}),
                                            "csrf_token": self.token if token is None else token})


@pytest.fixture
def dashboard(app) -> Dashboard:
    return Dashboard(app.test_client())


@pytest.fixture
def signed_in(app, team):
    """``signed_in("owner" | "manager" | "agent" | "viewer")`` → a Dashboard signed in as that person."""

    def _sign(role: str = "owner") -> Dashboard:
        board = Dashboard(app.test_client())
        assert board.sign_in(team.emails[role]).status_code == 303
        return board

    return _sign
