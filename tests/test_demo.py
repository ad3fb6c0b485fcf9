"""`ccms-addon demo` runs the whole add-on on the embedded default and leaves nothing behind."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.samples import SAMPLES_DIR


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
        sample = SAMPLES_DIR / "shopify" / "orders-updated.json"
        if sample.exists():
            secrets = (tmp_path / "var" / "demo-secrets.json").read_text()
            import json
            secret = json.loads(secrets)["CCMS_SHOPIFY_API_SECRET"]
            replay = subprocess.run(
                [sys.executable, "-m", "ccms_addon.cli", "webhooks", "replay", str(sample),
                 "--url", base, "--platform", "shopify", "--shop", "ccms-demo.myshopify.com",
                 "--topic", "orders/updated", "--secret", secret],
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
