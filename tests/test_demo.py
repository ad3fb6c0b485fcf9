"""`ccms-addon demo` runs the whole add-on on the embedded default and leaves nothing behind."""

import email
import email.policy
import json
import os
import re
import signal
import sqlite3
import socket
import subprocess
import sys
import time

import pytest
import requests

from ccms_addon.demo.seed import OWNER_EMAIL, SHOPPER_EMAIL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            children.add(int(entry))
    for child in list(children):
        children |= _descendants(child)
    return children


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_demo_serves_processes_and_stops_everything(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMS_")}
    env["CCMS_VAR_DIR"] = str(tmp_path / "var")
    demo = subprocess.Popen([sys.executable, "-m", "ccms_addon.cli", "demo", "--port", str(port)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            pytest.fail("demo did not become ready")
        # redis-server, the worker and its dispatcher child (which the worker starts once it
        # has warmed up)
        deadline = time.monotonic() + 30
        started = _descendants(demo.pid)
        while len(started) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            started = _descendants(demo.pid)
        for platform in ("shopify", "cafe24", "woocommerce"):
            page = requests.get(f"{base}/demo/{platform}", timeout=5)
            assert page.status_code == 200
            assert 'src="/widget/v1/loader.js" data-shop-key="wk_' in page.text
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert len(started) >= 3  # redis-server, web, worker (+ dispatcher, scheduler)
        var = tmp_path / "var"
        demo_secrets = json.loads((var / "demo-secrets.json").read_text())
        # the demo sent itself its orders through the webhook endpoint and a worker stored them;
        # a shopper's first complaint waits in the inbox and its acknowledgement was "sent"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((var / "demo-mail").glob("*jordan*.eml")):
            time.sleep(0.3)
        with sqlite3.connect(var / "ccms.sqlite3") as db:
            assert sorted(db.execute("SELECT number, email FROM orders")) == [
                ("#1001", SHOPPER_EMAIL), ("#1002", SHOPPER_EMAIL), ("2001", "yui.sato@shopper.test")]
            [(reference, body)] = db.execute("SELECT reference, body FROM voc_items")
        [ack] = (var / "demo-mail").glob("*jordan*.eml")
        message = email.message_from_bytes(ack.read_bytes(), policy=email.policy.default)
        assert reference in message["Subject"] and "torn seam" in message.get_content()
        # the owner signs in with what the welcome printed and finds it in the inbox
        with requests.Session() as browser:
            form = browser.get(f"{base}/dashboard/login", timeout=5).text
            token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            signed_in = browser.post(f"{base}/dashboard/login", timeout=5, data={
                "csrf_token": token, "email": OWNER_EMAIL,
                "password": demo_secrets["dashboard_password"]})
            assert signed_in.status_code == 200 and signed_in.url.endswith("/dashboard/inbox")
            assert reference in signed_in.text
        # the welcome's replay line works on any machine: it names the demo's own payload
        payload = var / "demo-payloads" / "shopify-order-1001.json"
        replay = subprocess.run(
            [sys.executable, "-m", "ccms_addon.cli", "webhooks", "replay", str(payload),
             "--url", base, "--platform", "shopify", "--shop", "ccms-demo.myshopify.com",
             "--topic", "orders/updated", "--secret", demo_secrets["CCMS_SHOPIFY_API_SECRET"]],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert replay.stdout.startswith("200")
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            output, _ = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            output, _ = demo.communicate()
    time.sleep(0.5)
    leftovers = [pid for pid in started if _alive(pid)]
    assert leftovers == [], output[-2000:]
