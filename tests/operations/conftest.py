"""Helpers of the operations tests: scrape ``/metrics`` and read one figure, post signed deliveries."""

from __future__ import annotations

import json
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SHOPIFY_SECRET, WOO_SECRET

SHOPIFY_SHOP = "ops-test.myshopify.com"
WOO_SITE = "https://ops-woo.example.com"


class Scrape(dict):
    """One scrape: ``{(sample name, sorted label pairs): value}``."""

    def value(self, name: str, **labels) -> float:
        """The sample's value; 0 when the series is absent (a counter never incremented)."""
        return self.get((name, tuple(sorted(labels.items()))), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self}


def scrape(client, **kwargs) -> Scrape:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    result = Scrape()
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


@pytest.fixture
def shops(make_shop):
    return {"shopify": make_shop("shopify", SHOPIFY_SHOP).shop,
            "woocommerce": make_shop("woocommerce", WOO_SITE, webhook_secret=WOO_SECRET).shop}


def order_body(order_id: int | None = None) -> bytes:
    """A small order payload; each call a new order unless ``order_id`` is given."""
    order_id = order_id or uuid.uuid4().int % 10**12
    return json.dumps({"id": order_id, "date_modified_gmt": "2024-05-01T10:00:00",
                       "updated_at": "2024-05-01T10:00:00Z"}).encode()


def headers_for(runtime, platform: str, body: bytes, *, secret: str | None = None) -> dict:
    shop = {"shopify": SHOPIFY_SHOP, "woocommerce": WOO_SITE}[platform]
    topic = {"shopify": "orders/updated", "woocommerce": "order.updated"}[platform]
    secret = secret or {"shopify": SHOPIFY_SECRET, "woocommerce": WOO_SECRET}[platform]
    return runtime.platforms[platform].delivery_headers(body, shop_domain=shop, topic=topic,
                                                        secret=secret)
