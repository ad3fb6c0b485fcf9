"""The built-in notifiers are found exactly as a third-party notifier would be: through the
``ccms_addon`` entry-point group and the ``register_notifiers`` hook."""

from __future__ import annotations

import importlib.metadata

from ccms_addon.notifiers.email import EmailNotifier
from ccms_addon.notifiers.webhook import WebhookNotifier
from ccms_addon.outbox import Notifier
from ccms_addon.plugin_manager import get_plugin_manager

BUILT_IN = {"email": "ccms_addon.notifiers.email", "webhook": "ccms_addon.notifiers.webhook"}


def test_entry_points_resolve_to_the_notifier_modules():
    points = {ep.name: ep for ep in importlib.metadata.entry_points(group="ccms_addon")}
    for name, module in BUILT_IN.items():
        assert points[name].value == module
        assert points[name].load().__name__ == module


def test_hook_register_notifiers():
    notifiers = [n for batch in get_plugin_manager().hook.register_notifiers() for n in batch]
    by_channel = {n.channel: n for n in notifiers}
    assert len(by_channel) == len(notifiers)  # channel names are unique
    assert isinstance(by_channel["email"], EmailNotifier)
    assert isinstance(by_channel["webhook"], WebhookNotifier)
    for notifier in notifiers:
        assert isinstance(notifier, Notifier)
    assert by_channel["email"].settings_name == "smtp"
    assert by_channel["webhook"].settings_name == "webhook"


def test_without_entry_points_no_notifier_is_registered():
    assert get_plugin_manager(load_entry_points=False).hook.register_notifiers() == []
