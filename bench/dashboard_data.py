"""The data set ``bench/dashboard.py`` measures against: merchants, shops, staff, customers, orders
with lines, VOC items with their issues and timelines, written fast.

What it looks like (the defaults; everything scales with ``--items``, ``--events``, ``--shops``):

* 50 shops of ~30 merchants: one merchant runs 10 shops, a few run 2–3, the rest one each; Shopify,
  Cafe24 and WooCommerce, in their merchants' time zones, languages and currencies. Shop sizes
  follow a power law: the biggest shop has ~14 % of all items, the smallest a few hundred.
* 300,000 orders (1–3 lines each, products with a popularity curve) of customers who buy again at
  realistic rates, so the repurchase figures have something to count.
* 1,000,000 VOC items over 18 months, growing ~3× from the first month to the last, in shop-local
  office-heavy hours and fewer at weekends: kinds, channels, categories, severities, assignees and
  products by distributions a customer-care desk sees; due times from the SLA table in business
  hours (Mon–Fri 09–18 local); acknowledged / responded / closed times drawn from lognormal delays,
  so items of the last days are still open, and a backlog of ~0.4 % never worked (the breaches);
  satisfaction asked on closing and answered for about a third; duplicates, recurrences, reopened
  items, root causes. One VocIssue per problem raised (15 % raise two).
* 5,000,000 VocEvents: each item's real transitions (received, acknowledged, assigned, started,
  responded, closed, reopened, satisfaction, recurrence_flagged) plus staff notes until the total
  is met (complaints and claims get the most).

Rows are generated in Python in time order (ids grow with time, as in production) and written by
binary ``COPY`` through ``repository.load_rows``; the big tables' plain indexes are dropped during
the load and rebuilt afterwards (as ``pg_dump`` restores do), foreign-key triggers are skipped when
the role may (``session_replication_role``), then ``VACUUM ANALYZE``.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import text

from ccms_addon.store import repository
from ccms_addon.store.models import (Customer, Merchant, Order, OrderLine, Shop, Staff, StaffRole,
                                     VocEvent, VocIssue, VocItem)
from ccms_addon.voc.settings import DEFAULT_SLA_HOURS

UTC = timezone.utc
DAY = 86_400
#: raise when the generator changes what it writes: ``--keep`` then builds the data set again
DATA_VERSION = 2
#: the tables filled by COPY, in load order, with the indexes dropped during the load
BIG_TABLES = ("customers", "orders", "order_lines", "voc_items", "voc_issues", "voc_events")
#: items generated (and written) per chunk
CHUNK = 25_000

#: platform → (share, [(time zone, locale, currency, country)])
PLATFORMS = {
    "shopify": (0.5, [("America/New_York", "en", "USD", "US"), ("America/Los_Angeles", "en", "USD", "US"),
                      ("Europe/London", "en", "GBP", "GB"), ("Asia/Tokyo", "ja", "JPY", "JP"),
                      ("Australia/Sydney", "en", "AUD", "AU")]),
    "cafe24": (0.3, [("Asia/Seoul", "ko", "KRW", "KR")]),
    "woocommerce": (0.2, [("Europe/Berlin", "en", "EUR", "DE"), ("America/Chicago", "en", "USD", "US"),
                          ("Asia/Seoul", "ko", "KRW", "KR")]),
}

KINDS = {"complaint": 35, "inquiry": 40, "claim": 6, "suggestion": 7, "praise": 7, "want_slip": 5}
#: kind → channel weights
CHANNELS = {
    "complaint": {"widget": 40, "email": 22, "follow_up": 12, "platform": 8, "phone": 12, "social": 6},
    "inquiry": {"widget": 50, "email": 25, "platform": 10, "phone": 12, "social": 3},
    "claim": {"widget": 85, "email": 10, "phone": 5},
    "suggestion": {"widget": 55, "email": 25, "follow_up": 15, "social": 5},
    "praise": {"follow_up": 45, "widget": 25, "email": 15, "social": 15},
    "want_slip": {"staff": 100},
}
#: kind → category weights
CATEGORIES = {
    "complaint": {"delivery_delay": 30, "damaged": 18, "quality": 15, "wrong_item": 12, "refund": 10,
                  "staff": 5, "billing": 5, "packaging": 5},
    "inquiry": {"order_status": 30, "product_info": 25, "shipping": 20, "payment": 10, "returns": 10,
                "account": 5},
    "claim": {"refund": 50, "damaged": 30, "wrong_item": 20},
    "suggestion": {"product_request": 50, "website": 50},
    "praise": {"service": 60, "product": 40},
    "want_slip": {"quality": 40, "delivery_delay": 30, "packaging": 30},
}
SEVERITIES = {"low": 20, "normal": 55, "high": 20, "critical": 5}
SATISFACTION = {5: 40, 4: 30, 3: 15, 2: 8, 1: 7}
#: kind → weight of its share of staff notes
NOTE_WEIGHT = {"complaint": 3.0, "claim": 3.0, "inquiry": 1.0, "suggestion": 0.5, "praise": 0.3,
               "want_slip": 1.5}
#: share of items never worked (still open, long past due)
BACKLOG = 0.004
#: words the benchmark searches for: one in many items, one in a few
COMMON_WORD = {"en": "refund", "ko": "환불", "ja": "返金"}
RARE_PHRASE = {"en": "cracked lid", "ko": "뚜껑에 금이", "ja": "蓋にひび"}
#: a rare word of two characters: no trigram inside it (a common length in Korean and Japanese)
RARE_SHORT = {"en": "ox", "ko": "곰팡", "ja": "錆び"}

NOUNS = ("Tumbler", "Desk Organizer", "Linen Shirt", "Ceramic Mug", "Backpack", "Candle", "Notebook",
         "Wool Scarf", "Water Bottle", "Phone Case", "Tote Bag", "Face Cream", "Tea Set", "Lamp",
         "Sneakers", "Cushion", "Umbrella", "Wallet", "Headphones", "Cutting Board")
ADJECTIVES = ("Walnut", "Classic", "Mini", "Organic", "Travel", "Premium", "Recycled", "Everyday",
              "Bamboo", "Vintage", "Compact", "Soft")

TEMPLATES = {
    "en": {
        "delivery_delay": ["My order {order} still hasn't arrived. It's been {days} days since I ordered "
                           "the {product}.", "Where is my {product}? Tracking has not moved for {days} days."],
        "damaged": ["The {product} arrived damaged, the box was crushed. I want a refund or a new one.",
                    "Received the {product} broken. Very disappointed."],
        "quality": ["The {product} stopped working after {days} days.",
                    "Quality of the {product} is much worse than the photos."],
        "wrong_item": ["I ordered the {product} but received something else in order {order}."],
        "refund": ["I returned the {product} {days} days ago and still have no refund.",
                   "Please refund order {order}, the {product} did not fit."],
        "staff": ["The agent on the phone was rude when I asked about order {order}."],
        "billing": ["I was charged twice for order {order}."],
        "packaging": ["Far too much plastic around the {product}."],
        "order_status": ["Has order {order} shipped yet?", "When will my {product} ship?"],
        "product_info": ["Is the {product} dishwasher safe?", "What size is the {product}?"],
        "shipping": ["Do you ship to Canada? How long does it take?"],
        "payment": ["Can I pay for the {product} in instalments?"],
        "returns": ["How do I return the {product}? Is return shipping free?"],
        "account": ["I can't log in to my account."],
        "product_request": ["Please make the {product} in a bigger size."],
        "website": ["The checkout page is slow on my phone."],
        "service": ["Thank you, your team solved my problem with order {order} in minutes!"],
        "product": ["I love the {product}, best purchase this year."],
    },
    "ko": {
        "delivery_delay": ["주문한 {product} 아직 도착하지 않았어요. 주문한 지 {days}일이 지났습니다.",
                           "{product} 배송이 {days}일째 멈춰 있어요. 주문번호 {order}"],
        "damaged": ["{product} 상자가 찌그러진 채로 파손되어 왔습니다. 환불이나 교환 부탁드립니다."],
        "quality": ["{product} {days}일 만에 고장났어요.", "{product} 품질이 사진과 너무 달라요."],
        "wrong_item": ["{product} 주문했는데 다른 상품이 왔어요. 주문번호 {order}"],
        "refund": ["{days}일 전에 {product} 반품했는데 아직 환불이 안 됐어요.",
                   "주문 {order} 환불 요청합니다."],
        "staff": ["상담원이 불친절했습니다. 주문번호 {order}"],
        "billing": ["주문 {order} 결제가 두 번 되었어요."],
        "packaging": ["{product} 포장이 너무 과해요."],
        "order_status": ["주문 {order} 발송됐나요?", "{product} 언제 출고되나요?"],
        "product_info": ["{product} 식기세척기 사용 가능한가요?", "{product} 사이즈 문의드려요."],
        "shipping": ["제주도 배송 가능한가요? 며칠 걸리나요?"],
        "payment": ["{product} 무이자 할부 되나요?"],
        "returns": ["{product} 반품은 어떻게 하나요? 반품 배송비 무료인가요?"],
        "account": ["로그인이 안 돼요."],
        "product_request": ["{product} 큰 사이즈도 만들어 주세요."],
        "website": ["모바일 결제 페이지가 느려요."],
        "service": ["주문 {order} 문제를 바로 해결해 주셔서 감사합니다!"],
        "product": ["{product} 정말 마음에 들어요."],
    },
    "ja": {
        "delivery_delay": ["注文した{product}がまだ届きません。注文から{days}日経ちました。"],
        "damaged": ["{product}が破損して届きました。返金か交換をお願いします。"],
        "quality": ["{product}が{days}日で壊れました。"],
        "wrong_item": ["{product}を注文しましたが別の商品が届きました。注文番号{order}"],
        "refund": ["{days}日前に{product}を返品しましたが、まだ返金されていません。"],
        "staff": ["電話の担当者の対応が失礼でした。注文番号{order}"],
        "billing": ["注文{order}で二重に請求されました。"],
        "packaging": ["{product}の梱包が過剰です。"],
        "order_status": ["注文{order}は発送されましたか？"],
        "product_info": ["{product}は食洗機に対応していますか？"],
        "shipping": ["北海道への配送は何日かかりますか？"],
        "payment": ["{product}は分割払いできますか？"],
        "returns": ["{product}の返品方法を教えてください。"],
        "account": ["ログインできません。"],
        "product_request": ["{product}の大きいサイズを作ってください。"],
        "website": ["スマホの決済ページが遅いです。"],
        "service": ["注文{order}の件、すぐに対応していただきありがとうございました！"],
        "product": ["{product}がとても気に入りました。"],
    },
}
FILLERS = {
    "en": ["I have been a customer for years.", "Please get back to me soon.", "Thanks in advance.",
           "This is the second time this happens.", "I need it before the weekend.",
           "My daughter was really looking forward to it."],
    "ko": ["오래된 고객입니다.", "빠른 답변 부탁드립니다.", "감사합니다.", "벌써 두 번째예요.",
           "주말 전에 꼭 받아야 해요."],
    "ja": ["長く利用しています。", "早めのご連絡をお願いします。", "よろしくお願いします。", "二回目です。"],
}
NOTES = ["Called the customer, no answer.", "Asked the warehouse to check.", "Carrier claim opened.",
         "Customer sent photos.", "Waiting for the supplier.", "Offered a voucher.",
         "Checked the payment gateway log.", "Escalated to the team lead."]
ROOT_CAUSES = ["Carrier delay at the regional hub", "Weak outer box", "Picking error in the warehouse",
               "Supplier batch defect", "Payment gateway retry"]
PREVENTIONS = ["Switched carrier for the region", "Double-wall boxes for fragile items",
               "Barcode check at packing", "Batch quarantined, QC sample raised", "Idempotent charges"]


@dataclass
class Scale:
    items: int = 1_000_000
    events: int = 5_000_000
    shops: int = 50
    orders: int = 300_000
    months: int = 18
    seed: int = 7

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class ShopPlan:
    index: int
    merchant: int
    platform: str
    zone: str
    locale: str
    currency: str
    country: str
    weight: float
    id: int = 0
    offset: int = 0            # seconds east of UTC (fixed: DST is immaterial here)
    products: list[tuple[str, str]] = field(default_factory=list)   # (product id, title)
    staff: list[int] = field(default_factory=list)                  # agents' staff ids
    customers: int = 0
    first_customer: int = 0
    #: orders sorted by placed time: parallel lists
    order_times: list[float] = field(default_factory=list)
    order_rows: list[tuple[int, int, str, str]] = field(default_factory=list)  # id, customer, number, product
    references: dict[int, int] = field(default_factory=dict)        # year → last sequence


@dataclass
class Plan:
    """Who is who in the data set (what the benchmark needs to choose its subjects)."""

    scale: Scale
    now: datetime
    shops: list[ShopPlan]
    #: merchant index → its shops
    merchants: dict[int, list[ShopPlan]]

    @property
    def big_shop(self) -> ShopPlan:
        return max(self.shops, key=lambda s: s.weight)

    @property
    def big_merchant(self) -> list[ShopPlan]:
        return max(self.merchants.values(), key=len)


def merchant_sizes(shops: int) -> list[int]:
    """Shops per merchant: one with 10 (fewer in a small run), a few with 2–3, the rest with 1."""
    sizes = [max(2, min(10, shops // 5))]
    for size in (3, 3, 3, 2, 2, 2, 2):
        if sum(sizes) + size <= shops - 1:
            sizes.append(size)
    sizes += [1] * (shops - sum(sizes))
    return sizes


def plan_shops(scale: Scale, rng: random.Random) -> tuple[list[ShopPlan], dict[int, list[ShopPlan]]]:
    """The shops, their merchants and sizes. The biggest shop belongs to a single-shop merchant;
    the other sizes are dealt at random, so the 10-shop merchant has big and small shops."""
    weights = [1 / (rank + 1) ** 0.9 for rank in range(scale.shops)]
    total = sum(weights)
    owners = [merchant for merchant, size in enumerate(merchant_sizes(scale.shops))
              for _ in range(size)]
    ranks = list(range(1, scale.shops))
    rng.shuffle(ranks)
    ranks.insert(len(owners) - 1, 0)   # the last owner runs one shop (unless there are only 2)
    names, shares = list(PLATFORMS), [PLATFORMS[p][0] for p in PLATFORMS]
    shops, merchants = [], {}
    for index, (rank, merchant) in enumerate(zip(ranks, owners)):
        platform = rng.choices(names, shares)[0]
        zone, locale, currency, country = rng.choice(PLATFORMS[platform][1])
        plan = ShopPlan(index=index, merchant=merchant, platform=platform, zone=zone,
                        locale=locale, currency=currency, country=country,
                        weight=weights[rank] / total)
        shops.append(plan)
        merchants.setdefault(merchant, []).append(plan)
    return shops, merchants


# ------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------


class Clock:
    """Creation times: growth over the history, shop-local office-heavy hours, quieter weekends."""

    #: local hour → weight
    HOURS = [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 4, 6, 7, 7, 6, 6, 7, 7, 6, 5, 4, 4, 4, 3, 2, 1.5]
    GROWTH = 2.0   # the last day has 1 + GROWTH times the volume of the first

    def __init__(self, now: datetime, months: int, rng: random.Random):
        self.now = now.timestamp()
        self.days = int(months * 30.4)
        self.start = (now - timedelta(days=self.days)).replace(hour=0, minute=0, second=0,
                                                                 microsecond=0).timestamp()
        self.rng = rng
        cumulative, acc = [], 0.0
        for weight in self.HOURS:
            acc += weight
            cumulative.append(acc)
        self.hour_cum = cumulative

    def created(self, offset: int) -> float:
        rng, g = self.rng, self.GROWTH
        while True:
            u = rng.random()
            t = (-1 + math.sqrt(1 + 2 * g * u * (1 + g / 2))) / g
            day = int(t * (self.days + 1))   # the last is today
            local_day = int((self.start + offset) // DAY) + day
            if (local_day + 3) % 7 >= 5 and rng.random() < 0.45:   # 1970-01-01 was a Thursday
                continue
            hour = bisect.bisect(self.hour_cum, rng.random() * self.hour_cum[-1])
            stamp = local_day * DAY + hour * 3600 + rng.random() * 3600 - offset
            if stamp < self.now - 60:
                return stamp


def business_add(stamp: float, hours: float, offset: int) -> float:
    """``hours`` of Mon–Fri 09:00–18:00 (shop-local) after ``stamp``: the default business hours
    of ``ccms_addon.voc.business_hours`` without holidays, cheap enough for a million items."""
    local = stamp + offset
    day, second = divmod(local, DAY)
    remaining = hours * 3600
    while True:
        if (day + 3) % 7 < 5:
            start = max(second, 9 * 3600)
            if start < 18 * 3600:
                available = 18 * 3600 - start
                if remaining <= available:
                    return day * DAY + start + remaining - offset
                remaining -= available
        day += 1
        second = 0


def utc(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


class Loader:
    """COPY rows into the big tables with their plain indexes dropped, then rebuild them."""

    def __init__(self, engine, progress: Callable[[str, int], None]):
        self.engine = engine
        self.progress = progress
        self.saved: list[tuple[str, str]] = []

    def drop_indexes(self) -> None:
        with self.engine.begin() as conn:
            self.saved = [tuple(row) for row in conn.execute(text(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i "
                "WHERE i.schemaname = current_schema() AND i.tablename = ANY(:tables) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
                "WHERE c.conindid = to_regclass(quote_ident(i.indexname)))"),
                {"tables": list(BIG_TABLES)})]
            for name, _ in self.saved:
                conn.execute(text(f'DROP INDEX "{name}"'))

    def rebuild_indexes(self, tick: Callable[[], None]) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SET maintenance_work_mem = '256MB'"))
            for _, definition in self.saved:
                conn.execute(text(definition))
                conn.commit()
                tick()

    def load(self, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
        with self.engine.begin() as conn:
            skip_triggers(conn)
            repository.load_rows(conn, table, columns, rows)
        self.progress(table.name, len(rows))


def skip_triggers(conn) -> None:
    """Skip the foreign-key triggers for this load (the rows are consistent by construction) when
    the role may; otherwise they simply run."""
    try:
        with conn.begin_nested():
            conn.execute(text("SET LOCAL session_replication_role = replica"))
    except Exception:  # noqa: BLE001 — not a superuser: checked loads are only slower
        pass


# ------------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------------


def _weighted(table: dict) -> tuple[list, list[float]]:
    keys, acc, cumulative = list(table), 0.0, []
    for key in keys:
        acc += table[key]
        cumulative.append(acc)
    return keys, cumulative


def lognormal_hours(rng: random.Random, median: float, sigma: float = 1.0) -> float:
    return median * math.exp(sigma * rng.gauss(0, 1)) * 3600


class Generator:
    ITEM_COLUMNS = ("id", "shop_id", "reference", "kind", "channel", "status", "subject", "body",
                    "locale", "customer_id", "order_id", "contact_name", "contact_email",
                    "contact_phone", "category", "severity", "assignee_id", "product_ref",
                    "duplicate_of_id", "recurrence", "escalation_level", "reopened_count",
                    "thread_ref", "root_cause", "prevention_action", "satisfaction",
                    "satisfaction_comment", "satisfaction_requested_at", "acknowledge_due_at",
                    "respond_due_at", "acknowledged_at", "responded_at", "closed_at", "created_at",
                    "updated_at")
    EVENT_COLUMNS = ("id", "shop_id", "voc_item_id", "type", "from_status", "to_status", "actor",
                     "note", "data", "created_at")
    ISSUE_COLUMNS = ("id", "shop_id", "voc_item_id", "category", "summary", "handled", "created_at")

    def __init__(self, scale: Scale, now: datetime):
        self.scale = scale
        self.now = now
        self.rng = random.Random(scale.seed)
        self.clock = Clock(now, scale.months, self.rng)
        shops, merchants = plan_shops(scale, self.rng)
        self.plan = Plan(scale=scale, now=now, shops=shops, merchants=merchants)
        self.kinds = _weighted(KINDS)
        self.channels = {k: _weighted(v) for k, v in CHANNELS.items()}
        self.categories = {k: _weighted(v) for k, v in CATEGORIES.items()}
        self.severities = _weighted(SEVERITIES)
        self.scores = _weighted(SATISFACTION)
        self.next_id = {"customers": 1, "orders": 1, "order_lines": 1, "voc_items": 1,
                        "voc_issues": 1, "voc_events": 1}
        self.first_item: dict[tuple[int, int, str], int] = {}   # (shop, order, category) → item
        self.recent_categories: dict[tuple[int, str, str], int] = {}

    def pick(self, weighted: tuple[list, list[float]]):
        keys, cumulative = weighted
        return keys[bisect.bisect(cumulative, self.rng.random() * cumulative[-1])]

    # --- the few rows written through the ORM

    def write_shops(self, session) -> None:
        rng = self.rng
        merchant_ids = {}
        for index in sorted(self.plan.merchants):
            merchant = Merchant(name=f"Bench merchant {index + 1}",
                                email=f"owner{index + 1}@merchant.example",
                                created_at=self.now - timedelta(days=900))
            session.add(merchant)
            session.flush()
            merchant_ids[index] = merchant.id
            volume = sum(s.weight for s in self.plan.merchants[index])
            owner = Staff(merchant_id=merchant.id, email=f"owner{index + 1}@merchant.example",
                          name=f"Owner {index + 1}", role=StaffRole.OWNER, active=True)
            agents = [Staff(merchant_id=merchant.id, email=f"agent{n}.{index + 1}@merchant.example",
                            name=f"Agent {n}", role=StaffRole.AGENT if n else StaffRole.MANAGER,
                            active=True)
                      for n in range(2 + int(volume * 60))]
            session.add_all([owner, *agents])
            session.flush()
            for shop in self.plan.merchants[index]:
                shop.staff = [a.id for a in agents]
        for shop in self.plan.shops:
            digest = hashlib.sha256(f"bench-{shop.index}".encode()).hexdigest()
            domain = {"shopify": f"bench-{shop.index}.myshopify.com",
                      "cafe24": f"benchmall{shop.index}",
                      "woocommerce": f"https://shop{shop.index}.example"}[shop.platform]
            row = Shop(merchant_id=merchant_ids[shop.merchant], platform=shop.platform, domain=domain,
                       name=f"Bench shop {shop.index}", widget_key=f"wk_bench_{shop.index}",
                       api_token_digest=digest, currency=shop.currency, timezone=shop.zone,
                       locale=shop.locale, settings={}, inbound_key=f"bench{shop.index}",
                       installed_at=self.now - timedelta(days=800))
            session.add(row)
            session.flush()
            shop.id = row.id
            shop.offset = int(ZoneInfo(shop.zone).utcoffset(self.now.replace(tzinfo=None)).total_seconds())
            shop.products = [(f"{shop.index}{n:05d}", f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}")
                             for n in range(40 + int(shop.weight * 2000))]

    # --- customers, orders, lines

    def orders(self) -> Iterator[tuple[str, tuple, list[tuple]]]:
        """(table, columns, rows) batches: each shop's customers, then its orders and lines."""
        rng, scale, clock = self.rng, self.scale, self.clock
        for shop in self.plan.shops:
            count = max(20, int(scale.orders * shop.weight))
            shop.customers = max(5, int(count * 0.45))
            shop.first_customer = self.next_id["customers"]
            self.next_id["customers"] += shop.customers
            customers = []
            for n in range(shop.customers):
                created = utc(clock.start)
                customers.append((shop.first_customer + n, shop.id, f"c{shop.index}-{n}",
                                  f"customer{n}@shop{shop.index}.example", f"Customer {n}",
                                  f"+1555{shop.index:02d}{n:06d}", created, created, created))
            yield "customers", ("id", "shop_id", "platform_customer_id", "email", "name", "phone",
                                "platform_updated_at", "created_at", "updated_at"), customers
            stamps = sorted(clock.created(shop.offset) for _ in range(count))
            products = shop.products
            orders, lines = [], []
            for n, placed in enumerate(stamps):
                order_id = self.next_id["orders"]
                self.next_id["orders"] += 1
                customer = shop.first_customer + int(shop.customers * rng.random() ** 1.8)
                number = str(1001 + n)
                total = Decimal(0)
                first_product = None
                for line in range(1 + int(rng.random() ** 2 * 3)):
                    product_id, title = products[int(len(products) * rng.random() ** 2.5)]
                    first_product = first_product or product_id
                    price = Decimal(rng.randrange(5, 200)) * (1000 if shop.currency == "KRW" else
                                                              100 if shop.currency == "JPY" else 1)
                    quantity = 1 + int(rng.random() ** 4 * 3)
                    total += price * quantity
                    lines.append((self.next_id["order_lines"], shop.id, order_id, str(line + 1), title,
                                  f"SKU-{product_id}", product_id, product_id + "-v", quantity, price))
                    self.next_id["order_lines"] += 1
                placed_at = utc(placed)
                fulfilled = utc(placed + DAY) if placed + DAY < clock.now else None
                delivered = utc(placed + 3 * DAY) if placed + 3 * DAY < clock.now else None
                orders.append((order_id, shop.id, f"o{shop.index}-{n}", number, shop.currency, total,
                               "paid", "delivered" if delivered else "fulfilled" if fulfilled
                               else "unfulfilled", customer,
                               f"customer{customer - shop.first_customer}@shop{shop.index}.example",
                               placed_at, fulfilled, delivered, shop.locale,
                               shop.country, True, placed_at, True, placed_at, placed_at))
                shop.order_times.append(placed)
                shop.order_rows.append((order_id, customer, number, first_product))
            yield "orders", ("id", "shop_id", "platform_order_id", "number", "currency", "total",
                             "financial_status", "fulfillment_status", "customer_id", "email",
                             "placed_at", "fulfilled_at", "delivered_at", "locale", "country_code",
                             "accepts_marketing", "platform_updated_at", "is_complete",
                             "created_at", "updated_at"), orders
            yield "order_lines", ("id", "shop_id", "order_id", "platform_line_id", "title", "sku",
                                  "product_id", "variant_id", "quantity", "unit_price"), lines

    # --- VOC items, issues, events

    def voc(self) -> Iterator[tuple[list[tuple], list[tuple], list[tuple]]]:
        """(items, issues, events) per chunk of items, in time order."""
        scale, rng = self.scale, self.rng
        shops = self.plan.shops
        cumulative, acc = [], 0.0
        for shop in shops:
            acc += shop.weight
            cumulative.append(acc)
        with_shop = []
        for _ in range(scale.items):
            shop = shops[min(len(shops) - 1, bisect.bisect(cumulative, rng.random() * acc))]
            with_shop.append((self.clock.created(shop.offset), shop.index))
        with_shop.sort()
        done_items = done_events = 0
        for start in range(0, len(with_shop), CHUNK):
            chunk = with_shop[start:start + CHUNK]
            items, issues, timelines, weights = [], [], [], []
            for created, index in chunk:
                item, item_issues, timeline, weight = self.item(shops[index], created)
                items.append(item)
                issues += item_issues
                timelines.append(timeline)
                weights.append(weight)
            done_items += len(chunk)
            target = scale.events * done_items // scale.items - done_events
            events = self.fill_notes(items, timelines, weights, target)
            done_events += len(events)
            yield items, issues, events

    def item(self, shop: ShopPlan, created: float):
        rng, now = self.rng, self.clock.now
        kind = self.pick(self.kinds)
        channel = self.pick(self.channels[kind])
        category = self.pick(self.categories[kind])
        severity = self.pick(self.severities)
        if kind in ("complaint", "claim") and severity == "low" and rng.random() < 0.5:
            severity = "normal"
        item_id = self.next_id["voc_items"]
        self.next_id["voc_items"] += 1
        year = datetime.fromtimestamp(created, UTC).year
        sequence = shop.references[year] = shop.references.get(year, 0) + 1
        reference = f"VOC-{year}-{sequence:06d}"

        order_id = customer_id = product_ref = number = None
        if kind in ("complaint", "claim", "praise") or (kind == "inquiry" and rng.random() < 0.5):
            back = created - rng.uniform(1, 40) * DAY
            at = bisect.bisect(shop.order_times, back) - 1
            if at >= 0 and (kind == "claim" or rng.random() < 0.8):
                order_id, customer_id, number, product_ref = shop.order_rows[at]
        if customer_id is None and rng.random() < 0.4:
            customer_id = shop.first_customer + int(shop.customers * rng.random() ** 1.8)
        if product_ref is None and kind in ("complaint", "suggestion", "want_slip", "inquiry") \
                and rng.random() < 0.5:
            product_ref = shop.products[int(len(shop.products) * rng.random() ** 2.5)][0]
        product = (shop.products[int(product_ref[-5:])][1] if product_ref
                   else rng.choice(shop.products)[1])
        locale = shop.locale
        words = rng.choice(TEMPLATES[locale][category]).format(
            product=product, days=rng.randint(2, 20), order=number or rng.randint(1001, 9999))
        body = " ".join([words] + rng.sample(FILLERS[locale], rng.randint(0, 3)))
        if rng.random() < 0.0005:
            body += f" {RARE_PHRASE[locale]}."
        if rng.random() < 0.0005:
            body += f" {RARE_SHORT[locale]}."
        subject = words[:60] if channel in ("email", "widget") else None
        if customer_id is not None:
            n = customer_id - shop.first_customer
            name, email = f"Customer {n}", f"customer{n}@shop{shop.index}.example"
            phone = f"+1555{shop.index:02d}{n:06d}" if channel == "phone" else None
        else:
            name = f"Visitor {rng.randrange(10 ** 6)}" if rng.random() < 0.7 else None
            email = f"visitor{rng.randrange(10 ** 7)}@mail.example" if channel != "phone" else None
            phone = f"+1555{rng.randrange(10 ** 8):08d}" if channel == "phone" else None

        ack_due = business_add(created, 1, shop.offset)
        respond_due = business_add(created, DEFAULT_SLA_HOURS[kind][severity], shop.offset)
        backlog = created < now - 7 * DAY and rng.random() < BACKLOG
        acknowledged = created + (rng.uniform(5, 60) if channel in ("widget", "email") and rng.random() < 0.3
                                  else max(60.0, min(lognormal_hours(rng, 1.2), 30 * DAY)))
        started = acknowledged + rng.uniform(60, 2 * 3600)
        responded = started + max(300.0, min(lognormal_hours(rng, 4.0), 20 * DAY))
        closed = responded + max(600.0, min(lognormal_hours(rng, 30.0, 0.8), 30 * DAY))
        if backlog:
            status = rng.choice(("received", "acknowledged", "in_progress"))
            acknowledged = None if status == "received" else acknowledged
            started = started if status == "in_progress" else None
            responded = closed = None
        elif closed <= now:
            status = "closed"
        elif responded <= now:
            status, closed = "responded", None
        elif started <= now and rng.random() < 0.7:
            status, responded, closed = "in_progress", None, None
        elif acknowledged <= now:
            status, started, responded, closed = "acknowledged", None, None, None
        else:
            status, acknowledged, started, responded, closed = "received", None, None, None, None
        assignee = (rng.choice(shop.staff) if (acknowledged and rng.random() < 0.9)
                    or rng.random() < 0.2 else None)

        duplicate_of = None
        if order_id is not None:
            key = (shop.id, order_id, category)
            duplicate_of = self.first_item.get(key)
            if duplicate_of is None:
                self.first_item[key] = item_id
        recurrence = False
        if product_ref and duplicate_of is None and kind in ("complaint", "claim"):
            key = (shop.id, product_ref, category)
            seen = self.recent_categories.get(key, 0) + 1
            self.recent_categories[key] = seen
            recurrence = seen % 7 == 3   # a few products keep failing the same way
        reopened = 1 if status == "closed" and rng.random() < 0.02 else 0
        escalation = 0
        if status in ("received", "acknowledged", "in_progress") and respond_due < now:
            escalation = 2 if now - respond_due > DAY else 1
        satisfaction = comment = requested = None
        root_cause = prevention = None
        if status == "closed":
            if kind in ("complaint", "inquiry", "claim") and rng.random() < 0.7:
                requested = closed
                if rng.random() < 0.35:
                    satisfaction = self.pick(self.scores)
                    comment = "Thanks" if rng.random() < 0.3 and satisfaction >= 4 else (
                        "Still waiting for my refund" if rng.random() < 0.3 else None)
            if kind in ("complaint", "claim") and rng.random() < 0.4:
                choice = rng.randrange(len(ROOT_CAUSES))
                root_cause, prevention = ROOT_CAUSES[choice], PREVENTIONS[choice]
        last = max(s for s in (created, acknowledged, started, responded, closed) if s)
        updated = (closed + 3 * DAY) if satisfaction and closed + 3 * DAY < now else last

        item = (item_id, shop.id, reference, kind, channel, status, subject, body, locale,
                customer_id, order_id, name, email, phone, category, severity, assignee,
                product_ref, duplicate_of, recurrence, escalation, reopened,
                f"<{item_id}@mail.example>" if channel == "email" else None, root_cause, prevention,
                satisfaction, comment, utc(requested), utc(ack_due), utc(respond_due),
                utc(acknowledged), utc(responded), utc(closed), utc(created), utc(updated))

        issues = [(self.take("voc_issues"), shop.id, item_id, category, None,
                   status == "closed", utc(created))]
        if rng.random() < 0.15:
            other = self.pick(self.categories["complaint"])
            if other != category:
                issues.append((self.take("voc_issues"), shop.id, item_id, other,
                               "also mentioned", False, utc(created)))

        actor = f"staff:{assignee}" if assignee else "staff:1"
        first = "customer" if channel not in ("staff", "phone") else actor
        timeline = [("received", None, "received", first, None,
                     {"channel": channel, **({"duplicate_of": duplicate_of} if duplicate_of else {})},
                     created)]
        if recurrence:
            timeline.append(("recurrence_flagged", None, None, "system", None,
                             {"category": category, "product_ref": product_ref}, created))
        if acknowledged:
            timeline.append(("acknowledged", "received", "acknowledged",
                             "system" if acknowledged - created < 120 else actor, None, None,
                             acknowledged))
            if assignee:
                timeline.append(("assigned", None, None, actor, None, {"assignee_id": assignee},
                                 acknowledged + 30))
        if started:
            timeline.append(("started", "acknowledged", "in_progress", actor, None, None, started))
        if responded:
            timeline.append(("responded", "in_progress", "responded", actor,
                             "Thank you for your patience, we have sorted it out.", None, responded))
        if closed:
            if reopened:
                timeline += [("closed", "responded", "closed", actor, None, None, closed - 7200),
                             ("reopened", "closed", "in_progress", "customer", None, None,
                              closed - 5400),
                             ("responded", "in_progress", "responded", actor, None, None,
                              closed - 3600)]
            timeline.append(("closed", "responded", "closed", actor, None,
                             {"root_cause": root_cause} if root_cause else None, closed))
            if satisfaction:
                timeline.append(("satisfaction", None, None, "customer", comment,
                                 {"score": satisfaction}, closed + rng.uniform(600, 3 * DAY)))
        span = ((closed or now) - created, created)
        weight = NOTE_WEIGHT[kind] * (2 if status != "closed" else 1)
        return item, issues, (item_id, shop.id, actor, span, timeline), weight

    def take(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] += 1
        return value

    def fill_notes(self, items, timelines, weights, target: int) -> list[tuple]:
        """The chunk's timelines with staff notes added (or optional events dropped) to make
        ``target`` events, numbered in time order."""
        rng, now = self.rng, self.clock.now
        count = sum(len(t[4]) for t in timelines)
        if target > count:
            for at in rng.choices(range(len(timelines)), weights, k=target - count):
                item_id, shop_id, actor, (length, created), timeline = timelines[at]
                timeline.append(("note", None, None, actor, rng.choice(NOTES), None,
                                 min(now, created + rng.random() * length)))
        elif target < count:
            optional = [(t, e) for t, tl in enumerate(timelines) for e, ev in enumerate(tl[4])
                        if ev[0] in ("assigned", "started", "recurrence_flagged")]
            drop = set(map(tuple, rng.sample(optional, min(len(optional), count - target))))
            for t, timeline in enumerate(timelines):
                timeline[4][:] = [ev for e, ev in enumerate(timeline[4]) if (t, e) not in drop]
        flat = [(ev[6], item_id, shop_id, ev) for item_id, shop_id, _, _, timeline in timelines
                for ev in timeline]
        flat.sort(key=lambda row: row[0])
        events = []
        for stamp, item_id, shop_id, (type_, before, after, actor, note, data, _) in flat:
            events.append((self.take("voc_events"), shop_id, item_id, type_, before, after, actor,
                           note, data, utc(stamp)))
        return events


def generate(engine, scale: Scale, now: datetime, progress: Callable[[str, int], None],
             rebuild_tick: Callable[[], None]) -> Plan:
    """Fill the (migrated, empty) database behind ``engine``; the plan of who is who."""
    from sqlalchemy.orm import Session

    gen = Generator(scale, now)
    with Session(engine) as session, session.begin():
        gen.write_shops(session)
    tables = {t.__tablename__: t.__table__ for t in (Customer, Order, OrderLine, VocItem,
                                                      VocIssue, VocEvent)}
    loader = Loader(engine, progress)
    loader.drop_indexes()
    for name, columns, rows in gen.orders():
        loader.load(tables[name], columns, rows)
    for items, issues, events in gen.voc():
        loader.load(tables["voc_items"], Generator.ITEM_COLUMNS, items)
        loader.load(tables["voc_issues"], Generator.ISSUE_COLUMNS, issues)
        loader.load(tables["voc_events"], Generator.EVENT_COLUMNS, events)
    loader.rebuild_indexes(rebuild_tick)
    with engine.begin() as conn:
        for name in BIG_TABLES:
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                              f"(SELECT coalesce(max(id), 1) FROM {name}))"))
    return gen.plan


def plan_only(scale: Scale, now: datetime, engine) -> Plan:
    """The plan of a database generated earlier with the same scale: the same shops in the same
    order (the generator is seeded), their ids read back."""
    gen = Generator(scale, now)
    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(text("SELECT id FROM shops ORDER BY id"))]
    for shop, shop_id in zip(gen.plan.shops, ids):
        shop.id = shop_id
    return gen.plan


def index_count(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(text(
            "SELECT count(*) FROM pg_indexes i WHERE i.schemaname = current_schema() "
            "AND i.tablename = ANY(:tables) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conindid = to_regclass(quote_ident(i.indexname)))"),
            {"tables": list(BIG_TABLES)})
