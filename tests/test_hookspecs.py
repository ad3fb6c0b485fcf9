"""Every hookspec is documented, and has a test named test_hook_<name> (datasette's habit)."""

import inspect
from pathlib import Path

import pytest

from ccms_addon import hookimpl, hookspecs
from ccms_addon.platforms import CustomerRecord
from ccms_addon.store.models import VocChannel, VocEvent, VocItem, VocKind
from ccms_addon.voc.intake import NewVocItem, record_voc_item

HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if inspect.isfunction(fn) and hasattr(fn, "ccms_addon_spec"))


def test_hooks_exist():
    assert {"register_platforms", "order_synced", "voc_item_created"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hookspec_is_documented(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert len(doc.splitlines()[0]) > 10
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name} does not document {param}"
    if name.startswith("register_"):
        assert ":return:" in doc


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name):
    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    assert f"def test_hook_{name}" in tests


def test_hook_register_platforms(runtime):
    assert {"shopify", "cafe24", "woocommerce"} <= set(runtime.platforms)


def test_hook_voc_item_created(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    calls = []

    class Listener:
        @hookimpl
        def voc_item_created(self, shop_id, voc_item_id, kind, channel):
            calls.append((shop_id, voc_item_id, kind, channel))

    runtime.pm.register(Listener())
    first = record_voc_item(runtime, shop.id, NewVocItem(
        kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body="<b>late</b> again", actor="shopper"))
    second = record_voc_item(runtime, shop.id, NewVocItem(
        kind=VocKind.INQUIRY, channel=VocChannel.EMAIL, body="where is it?", actor="shopper"))
    assert calls == [(shop.id, first.id, "complaint", "widget"), (shop.id, second.id, "inquiry", "email")]
    assert first.reference.endswith("-000001") and second.reference.endswith("-000002")
    with runtime.db.session() as s:
        events = s.query(VocEvent).filter_by(voc_item_id=first.id).all()
        assert [e.type for e in events] == ["received"]
        assert s.get(VocItem, first.id).body == "<b>late</b> again"
