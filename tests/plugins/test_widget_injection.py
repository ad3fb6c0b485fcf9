"""inject_widget of the three adapters, against loopback servers speaking the documented admin APIs,
and the artefacts shipped for the platforms: Shopify's theme app extension and the WordPress plugin."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from ccms_addon.platforms import (PlatformAuthError, PlatformError, PlatformUnavailableError,
                                  ShopContext, WidgetInjection)
from ccms_addon.plugins.cafe24 import Cafe24Adapter
from ccms_addon.plugins.cafe24 import widget as cafe24_widget
from ccms_addon.plugins.shopify import ShopifyAdapter
from ccms_addon.plugins.shopify import widget as shopify_widget
from ccms_addon.plugins.woocommerce import WooCommerceAdapter
from ccms_addon.plugins.woocommerce import widget as woo_widget
from tests.platform_servers.cafe24 import ACCESS_TOKEN, Cafe24ServerState, running_server
from tests.platform_servers.shopify import ShopifyAdminServer

LOADER = "https://ccms.example/widget/v1/loader.js"
KEY = "wk_Abc-123_xyz"
WRITES = {"POST", "PUT", "DELETE"}


def writes(calls: list[dict]) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in calls if c["method"] in WRITES]


# --------------------------------------------------------------------------------------------------
# Shopify: app embed (theme app extension) with a ScriptTag fallback
# --------------------------------------------------------------------------------------------------

SHOP = "my-shop.myshopify.com"
TOKEN = "shpat_widget_test"
API_KEY = "0123456789abcdef0123456789abcdef"
SCRIPT_TAGS = "/admin/api/2026-07/script_tags.json"


@pytest.fixture
def shopify_server():
    with ShopifyAdminServer(TOKEN) as server:
        yield server


def shopify_shop(server: ShopifyAdminServer, token: str = TOKEN, **settings: str) -> ShopContext:
    return ShopContext(shop_id=1, domain=SHOP, credentials={"access_token": token},
                       settings={"api_base_url": server.base_url, "api_key": API_KEY, **settings})


def our_tags(server: ShopifyAdminServer) -> list[dict]:
    return list(server.state.script_tags.values())


def test_shopify_creates_a_script_tag_and_the_app_embed_metafields(shopify_server) -> None:
    result = ShopifyAdapter().inject_widget(shopify_shop(shopify_server), LOADER, KEY)

    (tag,) = our_tags(shopify_server)
    assert tag["src"] == f"{LOADER}?shop_key={KEY}"
    assert (tag["event"], tag["display_scope"]) == ("onload", "online_store")
    assert result == WidgetInjection(method="script_tag", reference=str(tag["id"]),
                                     detail=result.detail)
    link = (f"https://{SHOP}/admin/themes/current/editor?context=apps"
            f"&activateAppId={API_KEY}/ccms_widget")
    assert link in result.detail and "app embed" in result.detail
    # what the app embed block reads: app.metafields.ccms.widget_key / loader_url
    assert shopify_server.state.metafields == {("ccms", "widget_key"): KEY,
                                               ("ccms", "loader_url"): LOADER}
    post = next(c for c in shopify_server.requests if c["method"] == "POST"
                and c["path"] == SCRIPT_TAGS)
    assert post["json"] == {"script_tag": {"event": "onload", "src": tag["src"],
                                           "display_scope": "online_store"}}
    assert post["headers"]["X-Shopify-Access-Token"] == TOKEN


def test_shopify_second_call_changes_nothing(shopify_server) -> None:
    adapter, shop = ShopifyAdapter(), shopify_shop(shopify_server)
    first = adapter.inject_widget(shop, LOADER, KEY)
    shopify_server.requests.clear()

    second = adapter.inject_widget(shop, LOADER, KEY)

    assert second == first
    assert writes(shopify_server.requests) == [("POST", "/admin/api/2026-07/graphql.json")]
    graphql = [c["json"]["query"] for c in shopify_server.requests if c["path"].endswith("graphql.json")]
    assert not any("metafieldsSet" in q for q in graphql)  # the metafields are already right
    assert len(our_tags(shopify_server)) == 1


def test_shopify_updates_a_changed_src(shopify_server) -> None:
    adapter, shop = ShopifyAdapter(), shopify_shop(shopify_server)
    first = adapter.inject_widget(shop, LOADER, KEY)
    shopify_server.requests.clear()
    moved = "https://care.example.org/widget/v1/loader.js"

    second = adapter.inject_widget(shop, moved, KEY)

    (tag,) = our_tags(shopify_server)
    assert second.reference == first.reference == str(tag["id"])
    assert tag["src"] == f"{moved}?shop_key={KEY}"
    assert ("PUT", f"/admin/api/2026-07/script_tags/{tag['id']}.json") in writes(shopify_server.requests)
    assert shopify_server.state.metafields[("ccms", "loader_url")] == moved
    adapter.inject_widget(shop, moved, "wk_new_key")
    assert [t["src"] for t in our_tags(shopify_server)] == [f"{moved}?shop_key=wk_new_key"]


def test_shopify_keeps_one_tag_and_leaves_other_scripts_alone(shopify_server) -> None:
    state = shopify_server.state
    for tag_id, src in ((1, f"{LOADER}?shop_key=old"), (2, f"{LOADER}?shop_key={KEY}"),
                        (3, "https://ccms.example/other.js")):
        state.script_tags[tag_id] = {"id": tag_id, "src": src, "event": "onload"}

    result = ShopifyAdapter().inject_widget(shopify_shop(shopify_server), LOADER, KEY)

    assert result.reference == "2"  # the one already right is kept, the stale copy removed
    assert sorted(state.script_tags) == [2, 3]


def test_shopify_app_embed_on_replaces_the_script_tag(shopify_server) -> None:
    adapter, shop = ShopifyAdapter(), shopify_shop(shopify_server)
    adapter.inject_widget(shop, LOADER, KEY)
    shopify_server.set_app_embed(True)

    result = adapter.inject_widget(shop, LOADER, KEY)

    assert result.method == "theme_app_extension"
    assert result.reference == "theme:828155753"
    assert "Nothing else to do" in result.detail
    assert our_tags(shopify_server) == []  # never loaded twice
    again = adapter.inject_widget(shop, LOADER, KEY)
    assert again == result and our_tags(shopify_server) == []


def test_shopify_app_embed_switched_off_falls_back(shopify_server) -> None:
    shopify_server.set_app_embed(False)
    result = ShopifyAdapter().inject_widget(shopify_shop(shopify_server), LOADER, KEY)
    assert result.method == "script_tag" and len(our_tags(shopify_server)) == 1


def test_shopify_deep_link_without_the_app_key_opens_app_embeds(shopify_server) -> None:
    shop = ShopContext(1, SHOP, {"access_token": TOKEN}, {"api_base_url": shopify_server.base_url})
    result = ShopifyAdapter().inject_widget(shop, LOADER, KEY)
    assert f"https://{SHOP}/admin/themes/current/editor?context=apps " in result.detail


def test_shopify_retries_throttled_calls(shopify_server) -> None:
    shopify_server.fail_next(2, 429, retry_after="0.01")
    result = ShopifyAdapter().inject_widget(shopify_shop(shopify_server), LOADER, KEY)
    assert result.method == "script_tag" and len(our_tags(shopify_server)) == 1


def test_shopify_gives_up_on_a_429_storm(shopify_server) -> None:
    shopify_server.fail_next(3, 429, retry_after="0.01")
    with pytest.raises(PlatformUnavailableError, match="429"):
        ShopifyAdapter().inject_widget(shopify_shop(shopify_server), LOADER, KEY)
    assert len(shopify_server.requests) == 3


def test_shopify_graphql_throttled_is_unavailable(shopify_server) -> None:
    shopify_server.state.graphql_throttled = 1
    with pytest.raises(PlatformUnavailableError, match="throttled"):
        ShopifyAdapter().inject_widget(shopify_shop(shopify_server), LOADER, KEY)


@pytest.mark.parametrize("status", [500, 503])
def test_shopify_server_errors_are_unavailable(shopify_server, status: int) -> None:
    shopify_server.fail_next(1, status)
    with pytest.raises(PlatformUnavailableError, match=str(status)):
        ShopifyAdapter().inject_widget(shopify_shop(shopify_server), LOADER, KEY)
    assert len(shopify_server.requests) == 1


def test_shopify_refused_token(shopify_server) -> None:
    with pytest.raises(PlatformAuthError):
        ShopifyAdapter().inject_widget(shopify_shop(shopify_server, token="shpat_revoked"), LOADER, KEY)
    with pytest.raises(PlatformAuthError):
        ShopifyAdapter().inject_widget(
            ShopContext(1, SHOP, {}, {"api_base_url": shopify_server.base_url}), LOADER, KEY)
    assert our_tags(shopify_server) == []


def test_shopify_refused_script_tag_is_a_platform_error(shopify_server) -> None:
    """Shopify wants an https src: a 422 is neither transient nor a credential problem."""
    with pytest.raises(PlatformError, match="422") as raised:
        ShopifyAdapter().inject_widget(shopify_shop(shopify_server),
                                       "http://ccms.example/widget/v1/loader.js", KEY)
    assert not isinstance(raised.value, (PlatformUnavailableError, PlatformAuthError))


@pytest.mark.parametrize("text, enabled", [
    (None, False), ("", False), ("not json", False), ('{"current": "Default"}', False),
    (json.dumps({"current": {"blocks": {"1": {
        "type": "shopify://apps/ccms/blocks/ccms_widget/uuid", "disabled": False}}}}), True),
    (json.dumps({"current": {"blocks": {"1": {
        "type": "shopify://apps/ccms/blocks/ccms_widget/uuid", "disabled": True}}}}), False),
    (json.dumps({"current": {"blocks": {"1": {
        "type": "shopify://apps/other/blocks/chat/uuid", "disabled": False}}}}), False),
    ("/* generated */\n" + json.dumps({"current": "Default", "presets": {"Default": {"blocks": {
        "9": {"type": "shopify://apps/ccms/blocks/ccms_widget/uuid"}}}}}), True),
])
def test_app_embed_enabled(text: str | None, enabled: bool) -> None:
    assert shopify_widget.app_embed_enabled(text) is enabled


@pytest.mark.parametrize("loader, key, src", [
    (LOADER, "wk_1", f"{LOADER}?shop_key=wk_1"),
    (f"{LOADER}?v=2", "wk_1", f"{LOADER}?v=2&shop_key=wk_1"),
    (f"{LOADER}?shop_key=old", "a b&c", f"{LOADER}?shop_key=a%20b%26c"),
])
def test_script_tag_src(loader: str, key: str, src: str) -> None:
    assert shopify_widget.script_tag_src(loader, key) == src
    assert cafe24_widget.script_tag_src(loader, key) == src


EXTENSION = Path(shopify_widget.__file__).parent / "extension"


def test_theme_app_extension_is_an_app_embed_targeting_body() -> None:
    config = tomllib.loads((EXTENSION / "shopify.extension.toml").read_text())
    assert config["type"] == "theme" and config["name"]
    liquid = (EXTENSION / "blocks" / f"{shopify_widget.EMBED_HANDLE}.liquid").read_text()
    schema = json.loads(re.search(r"{%\s*schema\s*%}(.*?){%\s*endschema\s*%}", liquid, re.S)[1])
    assert schema["target"] == "body"
    assert schema["name"] == shopify_widget.EMBED_NAME and len(schema["name"]) <= 25
    assert {s["id"] for s in schema["settings"]} == {"widget_key"}
    assert "app.metafields.ccms.widget_key" in liquid and "app.metafields.ccms.loader_url" in liquid
    tag = re.search(r"<script[^>]*>", liquid)[0]
    assert "async" in tag
    assert '"{{ ccms_loader | escape }}"' in tag and '"{{ ccms_key | escape }}"' in tag


# --------------------------------------------------------------------------------------------------
# Cafe24: ScriptTags API on every page
# --------------------------------------------------------------------------------------------------

SCRIPTTAGS = "/api/v2/admin/scripttags"


@pytest.fixture
def cafe24_state() -> Cafe24ServerState:
    return Cafe24ServerState()


@pytest.fixture
def cafe24_server(cafe24_state: Cafe24ServerState):
    with running_server(cafe24_state) as base_url:
        yield base_url


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def cafe24(sleeps: list[float]) -> Cafe24Adapter:
    return Cafe24Adapter(timeout=(1.0, 2.0), sleep=sleeps.append)


def cafe24_shop(base_url: str, token: str = ACCESS_TOKEN, **settings: str) -> ShopContext:
    return ShopContext(shop_id=2, domain="cafe24bestshop", credentials={"access_token": token},
                       settings={"api_base_url": base_url, **settings})


def test_cafe24_creates_a_script_tag_on_all_pages(cafe24, cafe24_state, cafe24_server) -> None:
    result = cafe24.inject_widget(cafe24_shop(cafe24_server, shop_no="2"), LOADER, KEY)

    (tag,) = cafe24_state.scripttags.values()
    assert (tag["src"], tag["display_location"], tag["shop_no"]) == (
        f"{LOADER}?shop_key={KEY}", ["all"], 2)
    assert result.method == "script_tag" and result.reference == tag["script_no"]
    post = next(c for c in cafe24_state.calls if c["method"] == "POST")
    assert post["path"] == SCRIPTTAGS
    assert post["json"] == {"shop_no": 2, "request": {"src": tag["src"], "display_location": ["all"]}}
    assert post["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert post["headers"]["Content-Type"] == "application/json"
    listing = next(c for c in cafe24_state.calls if c["method"] == "GET")
    assert (listing["path"], listing["args"]) == (SCRIPTTAGS, {"shop_no": "2"})


def test_cafe24_second_call_changes_nothing(cafe24, cafe24_state, cafe24_server) -> None:
    shop = cafe24_shop(cafe24_server)
    first = cafe24.inject_widget(shop, LOADER, KEY)
    cafe24_state.calls.clear()
    assert cafe24.inject_widget(shop, LOADER, KEY) == first
    assert writes(cafe24_state.calls) == [] and len(cafe24_state.calls) == 1


def test_cafe24_updates_a_changed_src_or_location(cafe24, cafe24_state, cafe24_server) -> None:
    shop = cafe24_shop(cafe24_server)
    first = cafe24.inject_widget(shop, LOADER, KEY)
    cafe24_state.calls.clear()

    second = cafe24.inject_widget(shop, LOADER, "wk_rotated")

    (tag,) = cafe24_state.scripttags.values()
    assert second.reference == first.reference == tag["script_no"]
    assert tag["src"] == f"{LOADER}?shop_key=wk_rotated"
    assert writes(cafe24_state.calls) == [("PUT", f"{SCRIPTTAGS}/{tag['script_no']}")]
    tag["display_location"] = ["MAIN"]  # narrowed by hand in the mall's admin
    cafe24.inject_widget(shop, LOADER, "wk_rotated")
    assert tag["display_location"] == ["all"]


def test_cafe24_leaves_other_scripts_alone(cafe24, cafe24_state, cafe24_server) -> None:
    cafe24_state.scripttags["77"] = {"shop_no": 1, "script_no": "77", "client_id": cafe24_state.client_id,
                                     "src": "https://ccms.example/other.js", "display_location": ["all"]}
    cafe24.inject_widget(cafe24_shop(cafe24_server), LOADER, KEY)
    assert len(cafe24_state.scripttags) == 2 and cafe24_state.scripttags["77"]["src"].endswith("other.js")


def test_cafe24_retries_429_honouring_capped_retry_after(cafe24, cafe24_state, cafe24_server,
                                                         sleeps) -> None:
    cafe24_state.fail_times, cafe24_state.retry_after = 2, "9"
    result = cafe24.inject_widget(cafe24_shop(cafe24_server), LOADER, KEY)
    assert result.method == "script_tag" and len(cafe24_state.scripttags) == 1
    assert sleeps[:2] == [2.0, 2.0]


def test_cafe24_endless_429_is_unavailable(cafe24, cafe24_state, cafe24_server) -> None:
    cafe24_state.fail_times = 100
    with pytest.raises(PlatformUnavailableError, match="429"):
        cafe24.inject_widget(cafe24_shop(cafe24_server), LOADER, KEY)
    assert cafe24_state.scripttags == {}


def test_cafe24_503_is_unavailable(cafe24, cafe24_state, cafe24_server) -> None:
    cafe24_state.fail_status, cafe24_state.fail_times = 503, 1
    with pytest.raises(PlatformUnavailableError, match="503"):
        cafe24.inject_widget(cafe24_shop(cafe24_server), LOADER, KEY)


def test_cafe24_refused_token(cafe24, cafe24_state, cafe24_server) -> None:
    with pytest.raises(PlatformAuthError, match="401"):
        cafe24.inject_widget(cafe24_shop(cafe24_server, token="revoked"), LOADER, KEY)
    assert cafe24_state.scripttags == {}


def test_cafe24_refused_script_tag_is_a_platform_error(cafe24, cafe24_server) -> None:
    with pytest.raises(PlatformError, match="422") as raised:
        cafe24.inject_widget(cafe24_shop(cafe24_server), "http://ccms.example/widget/v1/loader.js", KEY)
    assert not isinstance(raised.value, (PlatformUnavailableError, PlatformAuthError))


# --------------------------------------------------------------------------------------------------
# WooCommerce: the WordPress plugin
# --------------------------------------------------------------------------------------------------


def woo_shop(download_dir: Path) -> ShopContext:
    return ShopContext(shop_id=3, domain="https://shop.example",
                       settings={"widget_download_dir": str(download_dir)})


def test_woocommerce_returns_the_plugin_and_the_steps(tmp_path: Path) -> None:
    result = WooCommerceAdapter().inject_widget(woo_shop(tmp_path), LOADER, KEY)

    assert (result.method, result.reference) == ("wordpress_plugin", "ccms-widget")
    archive = tmp_path / "ccms-widget.zip"
    assert archive.is_file() and str(archive) in result.detail
    assert KEY in result.detail and "https://ccms.example " in result.detail
    assert "Settings > CCMS Widget" in result.detail and "Upload Plugin" in result.detail
    again = WooCommerceAdapter().inject_widget(woo_shop(tmp_path), LOADER, KEY)
    assert again == result


def test_wordpress_plugin_zip_is_reproducible(tmp_path: Path) -> None:
    first = woo_widget.build_wordpress_plugin_zip(tmp_path / "a")
    second = woo_widget.build_wordpress_plugin_zip(tmp_path / "b" / "named.zip")
    assert first.name == "ccms-widget.zip" and second.name == "named.zip"
    assert first.read_bytes() == second.read_bytes()
    assert [p.name for p in tmp_path.rglob(".ccms-widget-*")] == []  # no temporary file left


def test_wordpress_plugin_zip_holds_the_escaped_plugin(tmp_path: Path) -> None:
    with zipfile.ZipFile(woo_widget.build_wordpress_plugin_zip(tmp_path)) as archive:
        assert sorted(archive.namelist()) == ["ccms-widget/ccms-widget.php", "ccms-widget/readme.txt"]
        php = archive.read("ccms-widget/ccms-widget.php").decode()
        readme = archive.read("ccms-widget/readme.txt").decode()

    assert php.startswith("<?php") and "Plugin Name:       CCMS Widget" in php
    assert "defined( 'ABSPATH' )" in php
    # the loader on every front-end page, async, with data-shop-key added by script_loader_tag
    assert "add_action( 'wp_enqueue_scripts'" in php and "wp_enqueue_script(" in php
    assert "'strategy'  => 'async'" in php
    assert "add_filter( 'script_loader_tag'" in php
    assert "' data-shop-key=\"' . esc_attr( $settings['widget_key'] ) . '\"'" in php
    # Settings > CCMS Widget, with capability and nonce checks on the form
    assert "add_options_page(" in php and "__( 'CCMS Widget', 'ccms-widget' )" in php
    assert "wp_nonce_field( CCMS_WIDGET_NONCE" in php
    assert "check_admin_referer( CCMS_WIDGET_NONCE" in php
    assert php.count("current_user_can( CCMS_WIDGET_CAPABILITY )") == 2
    assert "esc_url_raw(" in php and "esc_url(" in php and "sanitize_text_field(" in php
    # every value echoed into the page goes through an escaping function
    echoes = re.findall(r"\becho\s+([^;]+);", php)
    assert echoes and all(e.lstrip().startswith(("esc_attr(", "esc_html(", "esc_url("))
                          for e in echoes), echoes
    assert "=== CCMS Widget ===" in readme and "Stable tag: 1.0.0" in readme


def test_wordpress_plugin_php_lints() -> None:
    php = shutil.which("php")
    if php is None:
        pytest.skip("php is not installed")
    source = woo_widget.PLUGIN_DIR / "ccms-widget.php"
    result = subprocess.run([php, "-l", str(source)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("loader, addon", [
    (LOADER, "https://ccms.example"),
    ("https://example.com/care/widget/v1/loader.js", "https://example.com/care"),
    ("http://127.0.0.1:5000/widget/v1/loader.js", "http://127.0.0.1:5000"),
])
def test_addon_url_of(loader: str, addon: str) -> None:
    assert woo_widget.addon_url_of(loader) == addon


def test_woocommerce_needs_a_key_and_a_url(tmp_path: Path) -> None:
    with pytest.raises(PlatformError):
        WooCommerceAdapter().inject_widget(woo_shop(tmp_path), LOADER, "")
    with pytest.raises(PlatformError):
        WooCommerceAdapter().inject_widget(woo_shop(tmp_path), "ftp://x/widget/v1/loader.js", KEY)
