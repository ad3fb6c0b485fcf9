"""``ccms-addon demo``: the whole add-on on its embedded default, in one command.

It owns every process it starts — the embedded Redis, the web server and one worker (with the
dispatcher and RQ's scheduler) — and stops all of them on Ctrl-C or SIGTERM, so nothing of ours
outlives it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ccms_addon.config import Settings
from ccms_addon.queue import EmbeddedRedis

#: the demo shop registered for each built-in platform
DEMO_SHOPS = {
    "shopify": "ccms-demo.myshopify.com",
    "cafe24": "ccmsdemo",
    "woocommerce": "https://woo.ccms-demo.test",
}


DEMO_NAMES = {"shopify": "Demo Outfitters", "cafe24": "데모몰", "woocommerce": "デモストア"}

_WEEKDAYS = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}

#: widget settings of the demo shops: one per language, each with its own contact channels
DEMO_WIDGETS = {
    "shopify": {"default_locale": "en", "phone": "+1 555 0100", "email": "care@demo-outfitters.test",
                "chat_url": "https://chat.demo-outfitters.test", "ack_promise_hours": 4,
                "offset_bottom": 88,
                "hours": {"timezone": "America/New_York", "weekly": _WEEKDAYS},
                "categories": [{"key": "delivery", "labels": {"en": "Delivery", "ko": "배송",
                                                              "ja": "配送"}},
                               {"key": "product", "labels": {"en": "Product", "ko": "상품",
                                                             "ja": "商品"}}]},
    "cafe24": {"default_locale": "ko", "phone": "02-0000-0000", "top_bar": True,
               "kakao_channel_url": "https://pf.kakao.com/_demo", "ack_promise_hours": 1,
               "offset_bottom": 80, "color": "#2e2e2e",
               "hours": {"timezone": "Asia/Seoul", "weekly": _WEEKDAYS},
               "consent_text": {"ko": "문의 처리를 위해 연락처를 수집·이용하는 데 동의합니다.",
                                "en": "I agree that my contact details are used to answer me.",
                                "ja": "お問い合わせ対応のため連絡先を利用することに同意します。"}},
    "woocommerce": {"default_locale": "ja", "email": "support@demo-store.test",
                    "position": "bottom-left", "offset_bottom": 72, "color": "#96588a",
                    "hours": {"timezone": "Asia/Tokyo", "weekly": _WEEKDAYS},
                    "ack_promise_hours": 24},
}


def _demo_secrets(var_dir: Path) -> dict[str, str]:
    """App-level demo secrets, made once and kept under var/ so restarts keep working."""
    path = var_dir / "demo-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {"CCMS_SHOPIFY_API_SECRET": "shpss_demo_" + secrets.token_hex(16),
              "CCMS_CAFE24_WEBHOOK_KEY": "c24_demo_" + secrets.token_hex(16),
              "woocommerce_webhook_secret": "wc_demo_" + secrets.token_hex(16)}
    var_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def _register_demo_shops(settings: Settings, woo_secret: str) -> dict[str, dict]:
    """One shop per platform; an existing demo shop gets a fresh API token (tokens are shown once)."""
    import secrets as token_source

    from sqlalchemy import select

    from ccms_addon.crypto import token_digest
    from ccms_addon.runtime import build_runtime
    from ccms_addon.store import repository
    from ccms_addon.store.models import Shop

    runtime = build_runtime(settings)
    shops: dict[str, dict] = {}
    with runtime.db.session() as session:
        for platform, domain in DEMO_SHOPS.items():
            if platform not in runtime.platforms:
                continue
            shop = session.scalar(select(Shop).where(Shop.platform == platform,
                                                     Shop.domain == domain))
            if shop is None:
                new = repository.create_shop(
                    session, runtime.box, platform=platform, domain=domain,
                    name=DEMO_NAMES[platform],
                    webhook_secret=woo_secret if platform == "woocommerce" else None,
                    settings={"widget": DEMO_WIDGETS[platform]})
                shop, token = new.shop, new.api_token
            else:
                token = "ccms_" + token_source.token_urlsafe(32)
                shop.api_token_digest = token_digest(token)
            shops[platform] = {"shop_id": shop.id, "domain": domain, "widget_key": shop.widget_key,
                               "api_token": token}
    runtime.close()
    return shops


def run_demo(host: str, port: int, console: Console) -> None:
    base_settings = Settings.from_env()
    var_dir = base_settings.var_dir
    demo_secrets = _demo_secrets(var_dir)
    env = os.environ.copy()
    for key in ("CCMS_SHOPIFY_API_SECRET", "CCMS_CAFE24_WEBHOOK_KEY"):
        env.setdefault(key, demo_secrets[key])
    env["CCMS_PUBLIC_URL"] = env.get("CCMS_PUBLIC_URL", f"http://{host}:{port}")
    env["CCMS_DEMO"] = "1"

    redis_server = None
    if not env.get("CCMS_REDIS_URL"):
        redis_server = EmbeddedRedis(var_dir).start()
        env["CCMS_REDIS_URL"] = redis_server.url
    children: list[subprocess.Popen] = []

    def stop(*_args) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server is not None:
            redis_server.stop()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        from ccms_addon.store.migrations import upgrade
        settings = Settings.from_env(env)
        console.print(f"[bold]store[/bold] {settings.database_url}")
        upgrade(settings.database_url)
        shops = _register_demo_shops(settings, demo_secrets["woocommerce_webhook_secret"])
        command = [sys.executable, "-m", "ccms_addon.cli"]
        children.append(subprocess.Popen(command + ["serve", "--host", host, "--port", str(port)],
                                         env=env))
        children.append(subprocess.Popen(command + ["worker"], env=env))
        _print_welcome(console, env, shops, host, port, demo_secrets)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        console.print("[red]a demo process exited; stopping the others[/red]")
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        stop()


def _print_welcome(console: Console, env: dict, shops: dict, host: str, port: int,
                   demo_secrets: dict) -> None:
    base = f"http://{host}:{port}"
    table = Table(title="Demo shops", show_lines=False)
    for column in ("platform", "domain", "shop_id", "widget_key", "api_token"):
        table.add_column(column)
    for platform, shop in shops.items():
        table.add_row(platform, shop["domain"], str(shop["shop_id"]), shop["widget_key"],
                      shop["api_token"])
    console.print(table)
    samples = Path(__file__).resolve().parents[1].parent / "shared" / "platform-samples"
    shopify = shops.get("shopify", {})
    console.print(f"""
[bold]ccms-addon demo is running[/bold] (Ctrl-C stops everything)
  storefronts  {base}/demo/shopify  {base}/demo/cafe24  {base}/demo/woocommerce
  web          {base}   (health: {base}/readyz)
  webhooks     {base}/webhooks/<platform>
  merchant API {base}/api/v1/orders   (OpenAPI: {base}/api/v1/openapi.json)
  redis        {env['CCMS_REDIS_URL']}

Send a signed sample order and read it back:
  ccms-addon webhooks replay {samples}/shopify/orders-updated.json --url {base} \\
      --platform shopify --shop {shopify.get('domain', '')} --topic orders/updated \\
      --secret {env['CCMS_SHOPIFY_API_SECRET']}
  curl -H 'Authorization: Bearer {shopify.get('api_token', '')}' {base}/api/v1/orders
""")
