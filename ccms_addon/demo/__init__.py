"""``ccms-addon demo``: the whole add-on on its embedded default, in one command.

It owns every process it starts — the embedded Redis, the web server, one worker (with the
dispatcher and RQ's scheduler) and, unless ``CCMS_SMTP_URL`` is set, a mailbox on loopback that
keeps the mail the add-on sends as files (``mailbox.py``) — and stops all of them on Ctrl-C or
SIGTERM, so nothing of ours outlives it. Once the web server answers it sends itself a few demo
orders as signed webhooks and, on the first run, a shopper's complaint (``seed.py``).
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

import requests

from rich.console import Console
from rich.table import Table

from ccms_addon.config import Settings
from ccms_addon.demo import seed
from ccms_addon.demo.mailbox import DEMO_SENDER, DemoMailbox
from ccms_addon.queue import EmbeddedRedis
from ccms_addon.runtime import build_runtime

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
    made = {"CCMS_SHOPIFY_API_SECRET": lambda: "shpss_demo_" + secrets.token_hex(16),
            "CCMS_CAFE24_WEBHOOK_KEY": lambda: "c24_demo_" + secrets.token_hex(16),
            "woocommerce_webhook_secret": lambda: "wc_demo_" + secrets.token_hex(16),
            "dashboard_password": lambda: secrets.token_urlsafe(12)}
    values = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: make() for name, make in made.items() if name not in values}
    if missing:  # a var dir of an earlier version keeps its secrets and gains the new ones
        values.update(missing)
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
        path.chmod(0o600)
    return values


def _register_demo_shops(runtime, woo_secret: str) -> dict[str, dict]:
    """One shop per platform; an existing demo shop gets a fresh API token (tokens are shown once)."""
    from sqlalchemy import select

    from ccms_addon.store import repository
    from ccms_addon.store.models import Shop

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
                token = repository.issue_api_token(session, shop)
            shops[platform] = {"shop_id": shop.id, "domain": domain, "widget_key": shop.widget_key,
                               "api_token": token}
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

    redis_server = mailbox = None
    if not env.get("CCMS_REDIS_URL"):
        redis_server = EmbeddedRedis(var_dir).start()
        env["CCMS_REDIS_URL"] = redis_server.url
    if not env.get("CCMS_SMTP_URL"):
        mailbox = DemoMailbox(var_dir).start()
        env["CCMS_SMTP_URL"] = mailbox.url
        env.setdefault("CCMS_SMTP_FROM", DEMO_SENDER)
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
        if mailbox is not None:
            mailbox.stop()
        if redis_server is not None:
            redis_server.stop()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        from ccms_addon.store.migrations import upgrade
        settings = Settings.from_env(env)
        console.print(f"[bold]store[/bold] {settings.database_url}")
        upgrade(settings.database_url)
        runtime = build_runtime(settings)
        try:
            shops = _register_demo_shops(runtime, demo_secrets["woocommerce_webhook_secret"])
            owner = seed.owner_account(runtime, shops, demo_secrets["dashboard_password"])
            command = [sys.executable, "-m", "ccms_addon.cli"]
            children.append(subprocess.Popen(
                command + ["serve", "--host", host, "--port", str(port)], env=env))
            children.append(subprocess.Popen(command + ["worker"], env=env))
            base = f"http://{host}:{port}"
            signing = {"shopify": env["CCMS_SHOPIFY_API_SECRET"],
                       "woocommerce": demo_secrets["woocommerce_webhook_secret"]}
            with console.status("starting; sending the demo orders to the add-on…"):
                welcome = _seed(runtime, console, base, shops, signing, var_dir, children)
        finally:
            runtime.close()
        _print_welcome(console, env, shops, base, owner, demo_secrets, welcome,
                       mailbox.folder if mailbox else None)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        console.print("[red]a demo process exited; stopping the others[/red]")
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        stop()


def _seed(runtime, console: Console, base: str, shops: dict, signing: dict, var_dir: Path,
          children: list[subprocess.Popen]) -> dict:
    """Send the demo orders once the web server answers, then (first run) a complaint; what the
    welcome shows of them. A problem here is told, never fatal: the demo runs all the same."""
    deliveries = seed.demo_deliveries()
    payloads = seed.write_payloads(var_dir, deliveries)
    welcome: dict = {"payloads": payloads, "reference": None}
    deadline = time.monotonic() + 60
    while not _ready(base):
        if time.monotonic() > deadline or any(child.poll() is not None for child in children):
            console.print("[yellow]the web server did not answer: no demo orders sent[/yellow]")
            return welcome
        time.sleep(0.3)
    for problem in seed.send_deliveries(runtime, base, shops, signing, deliveries):
        console.print(f"[yellow]demo order not accepted: {problem}[/yellow]")
    shopify = shops.get("shopify")
    if shopify:
        order_id = seed.wait_for_order(runtime, shopify["shop_id"], "#1001")
        if order_id is None:
            console.print("[yellow]the worker has not stored order #1001 yet[/yellow]")
        else:
            try:
                welcome["reference"] = seed.first_complaint(runtime, shopify["shop_id"], order_id)
            except Exception as exc:  # noqa: BLE001 — the demo runs without it
                console.print(f"[yellow]no demo complaint: {exc}[/yellow]")
    return welcome


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _print_welcome(console: Console, env: dict, shops: dict, base: str, owner: str,
                   demo_secrets: dict, welcome: dict, mail_folder: Path | None) -> None:
    table = Table(title="Demo shops", show_lines=False)
    for column in ("platform", "domain", "shop_id", "widget_key", "api_token"):
        table.add_column(column, overflow="fold")  # a key cut short would be of no use
    for platform, shop in shops.items():
        table.add_row(platform, shop["domain"], str(shop["shop_id"]), shop["widget_key"],
                      shop["api_token"])
    console.print(table)
    shopify = shops.get("shopify", {})
    payload = welcome["payloads"].get("#1001")
    complaint = (f"\n  a first complaint, {welcome['reference']}, is waiting in the inbox"
                 if welcome["reference"] else "")
    mail = (f"\n  mail         every message the add-on sends is kept in {mail_folder}/ (.eml)"
            if mail_folder else "")
    console.print(f"""
[bold]ccms-addon demo is running[/bold] (Ctrl-C stops everything)
  storefronts  {base}/demo/shopify  {base}/demo/cafe24  {base}/demo/woocommerce
  dashboard    {base}/dashboard   sign in as {owner} / {demo_secrets['dashboard_password']}{complaint}
  web          {base}   (health: {base}/readyz)
  webhooks     {base}/webhooks/<platform>
  merchant API {base}/api/v1/orders   (OpenAPI: {base}/api/v1/openapi.json)
  redis        {env['CCMS_REDIS_URL']}{mail}

Try the widget on {base}/demo/shopify: "Where is my order?" with #1001 and {seed.SHOPPER_EMAIL}.

Send a signed order and read it back:
  ccms-addon webhooks replay {payload} --url {base} \\
      --platform shopify --shop {shopify.get('domain', '')} --topic orders/updated \\
      --secret {env['CCMS_SHOPIFY_API_SECRET']}
  curl -H 'Authorization: Bearer {shopify.get('api_token', '')}' {base}/api/v1/orders
""")
