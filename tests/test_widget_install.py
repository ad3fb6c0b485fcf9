"""install_widget (what ``ccms-addon widget install --shop ID`` runs) on the real store, against the
loopback Shopify Admin API."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ccms_addon.platforms import PlatformAuthError
from ccms_addon.store.models import Shop, ShopStatus
from ccms_addon.widget_install import (ShopNotFoundError, WidgetInstallError, install_widget,
                                       loader_url)
from tests.platform_servers.shopify import ShopifyAdminServer

TOKEN = "shpat_install_test"
PUBLIC_URL = "https://care.example"
API_KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def shopify_server():
    with ShopifyAdminServer(TOKEN) as server:
        yield server


@pytest.fixture
def rt(runtime):
    """The test runtime, served at an https public URL (Shopify refuses a plain-http script tag)."""
    runtime.settings = replace(runtime.settings, public_url=PUBLIC_URL,
                               platforms={**runtime.settings.platforms,
                                          "shopify": {**runtime.settings.platform_settings("shopify"),
                                                      "api_key": API_KEY}})
    return runtime


@pytest.fixture
def shopify_shop(rt, make_shop, shopify_server):
    new = make_shop("shopify", "my-shop.myshopify.com", credentials={"access_token": TOKEN},
                    settings={"api_base_url": shopify_server.base_url, "widget": {"color": "#123456"}})
    return new.shop


def stored(rt, shop_id: int) -> Shop:
    with rt.db.session() as session:
        shop = session.get(Shop, shop_id)
        session.expunge(shop)
        return shop


def test_loader_url(rt) -> None:
    assert loader_url(rt.settings) == f"{PUBLIC_URL}/widget/v1/loader.js"


def test_install_creates_the_script_tag_and_records_it(rt, shopify_shop, shopify_server) -> None:
    result = install_widget(rt, shopify_shop.id)

    (tag,) = shopify_server.state.script_tags.values()
    assert tag["src"] == f"{PUBLIC_URL}/widget/v1/loader.js?shop_key={shopify_shop.widget_key}"
    assert shopify_server.state.metafields[("ccms", "widget_key")] == shopify_shop.widget_key
    assert result.method == "script_tag" and result.reference == str(tag["id"])
    assert f"activateAppId={API_KEY}/ccms_widget" in result.detail

    shop = stored(rt, shopify_shop.id)
    record = shop.settings["widget_injection"]
    assert {k: record[k] for k in ("method", "reference", "detail", "loader_url")} == {
        "method": "script_tag", "reference": str(tag["id"]), "detail": result.detail,
        "loader_url": f"{PUBLIC_URL}/widget/v1/loader.js"}
    assert record["installed_at"]
    assert shop.settings["widget"] == {"color": "#123456"}  # the rest of the settings kept
    assert shop.settings["api_base_url"] == shopify_server.base_url
    assert TOKEN not in json.dumps(shop.settings)


def test_install_twice_is_idempotent(rt, shopify_shop, shopify_server) -> None:
    first = install_widget(rt, shopify_shop.id)
    shopify_server.requests.clear()
    second = install_widget(rt, shopify_shop.id)
    assert second == first
    assert [(c["method"], c["path"]) for c in shopify_server.requests if c["method"] != "GET"] == [
        ("POST", "/admin/api/2026-07/graphql.json")]
    assert len(shopify_server.state.script_tags) == 1


def test_install_after_the_app_embed_is_on(rt, shopify_shop, shopify_server) -> None:
    install_widget(rt, shopify_shop.id)
    shopify_server.set_app_embed(True)
    result = install_widget(rt, shopify_shop.id)
    assert result.method == "theme_app_extension"
    assert shopify_server.state.script_tags == {}
    assert stored(rt, shopify_shop.id).settings["widget_injection"]["method"] == "theme_app_extension"


def test_refused_token_records_nothing(rt, make_shop, shopify_server) -> None:
    shop = make_shop("shopify", "revoked.myshopify.com", credentials={"access_token": "shpat_revoked"},
                     settings={"api_base_url": shopify_server.base_url}).shop
    with pytest.raises(PlatformAuthError):
        install_widget(rt, shop.id)
    assert "widget_injection" not in stored(rt, shop.id).settings


def test_unknown_and_uninstalled_shops(rt, shopify_shop) -> None:
    with pytest.raises(ShopNotFoundError):
        install_widget(rt, shopify_shop.id + 1000)
    with rt.db.session() as session:
        session.get(Shop, shopify_shop.id).status = ShopStatus.UNINSTALLED
    with pytest.raises(WidgetInstallError, match="uninstalled"):
        install_widget(rt, shopify_shop.id)


def test_woocommerce_shop_gets_the_plugin_zip_under_the_var_dir(rt, make_shop) -> None:
    shop = make_shop("woocommerce", "https://shop.example").shop
    result = install_widget(rt, shop.id)
    archive = rt.settings.var_dir / "downloads" / "ccms-widget.zip"
    assert result.method == "wordpress_plugin" and archive.is_file()
    assert str(archive) in result.detail and shop.widget_key in result.detail
    assert stored(rt, shop.id).settings["widget_injection"]["method"] == "wordpress_plugin"
