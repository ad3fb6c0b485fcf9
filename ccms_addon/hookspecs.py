"""Every hook of ccms-addon. The docstrings below are the documentation of the hooks.

Built-in platform adapters (``ccms_addon.plugins.shopify``, ``.cafe24``, ``.woocommerce``) implement
these exactly as a third-party plugin would: they are found through the ``ccms_addon`` entry-point group.
Hook names are snake_case; ``register_*`` hooks return a list; broadcast hooks are in the past tense and
fire after the change they announce is committed to the store.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ccms_addon")


@hookspec
def register_platforms():
    """Return a list of platform adapters this plugin provides.

    Each adapter implements :class:`ccms_addon.platforms.PlatformAdapter`; its ``name`` is the URL
    segment of its webhook endpoint (``/webhooks/<name>``) and must be unique across all plugins: a
    second adapter with the same name stops the application at start-up.

    :return: a list of adapter objects (possibly empty)
    """


@hookspec
def order_synced(shop_id, order_id, platform_order_id, created):
    """An order was inserted or changed in the VOC store (after the transaction committed).

    Called by the worker once per order a delivery or a fetch changed; an update that lost to a newer
    version (an out-of-order delivery) does not fire it. Implementations must be quick and idempotent:
    enqueue a job for anything slow.

    :param shop_id: the shop's id in the store
    :param order_id: the order's id in the store
    :param platform_order_id: the order's id on its platform
    :param created: True when the order was new to the store
    """


@hookspec
def voc_item_created(shop_id, voc_item_id, kind, channel):
    """A VOC item (complaint, inquiry, suggestion, praise, claim, want-slip) was recorded.

    Fired after the item and its first VocEvent are committed, whatever the channel it came in by.

    :param shop_id: the shop's id in the store
    :param voc_item_id: the item's id in the store
    :param kind: a :class:`ccms_addon.store.models.VocKind` value
    :param channel: a :class:`ccms_addon.store.models.VocChannel` value
    """


@hookspec
def register_notifiers():
    """Return a list of notifiers: the channels the add-on can send a message through.

    A notifier has a ``channel`` name (``"email"``, ``"webhook"``, ``"kakao_alimtalk"``…), unique
    across plugins, and implements :class:`ccms_addon.outbox.Notifier`: ``send(message, config)``
    hands one :class:`ccms_addon.outbox.OutgoingMessage` to its provider or raises one of the
    outbox's delivery errors, which decide between a retry with backoff, a permanent failure, and
    "may have been delivered" (never resent). The outbox records every message before the first
    attempt and guarantees that a message is handed to ``send`` at most once after success, so a
    notifier itself keeps no state.

    :return: a list of notifier objects (possibly empty)
    """


@hookspec(firstresult=True)
def classify_voc(shop_id, kind, channel, subject, body, order_id):
    """Give a new VOC item its category and severity (a smarter classifier than keyword rules).

    Called inside the transaction that records the item, before the shop's keyword rules, only
    when the channel did not already set both. The first plugin that answers wins; answer ``None``
    to let the next one (and then the rules) decide. Must be quick: it runs in the request that
    records the item (a model server call needs a short timeout and must fail to ``None``).

    :param shop_id: the shop's id in the store
    :param kind: a :class:`ccms_addon.store.models.VocKind` value
    :param channel: the intake channel's name
    :param subject: the subject, or ``None``
    :param body: the customer's own words
    :param order_id: the order's id in the store, or ``None``
    :return: ``{"category": str | None, "severity": "low"|"normal"|"high"|"critical"|None}``
             or ``None``
    """


@hookspec
def register_channels():
    """Return a list of VOC intake channels this plugin provides (social mentions, a chat app…).

    A channel is an object with ``name`` (unique, ≤ 40 characters, stored on each item),
    ``labels`` (a dict locale → name shown in the dashboard) and ``reply_notifier``: the notifier
    channel (see ``register_notifiers``) a reply to an item of this channel goes out on, or
    ``None`` when replies are given outside the add-on (a phone call) and only recorded. The
    plugin brings items in by calling :func:`ccms_addon.voc.intake.record_voc_item` with
    ``channel=<name>``; :class:`ccms_addon.voc.channels.Channel` is a ready-made dataclass.

    :return: a list of channel objects (possibly empty)
    """
