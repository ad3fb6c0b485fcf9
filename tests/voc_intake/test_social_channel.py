"""``register_channels``: a plugin adds a social sub-channel (Instagram) whose replies go out on its
own notifier; an item recorded through it is answered there, end to end — the outbox POSTs the
signed reply to a loopback HTTP receiver standing in for the plugin's relay to Instagram."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ccms_addon import hookimpl
from ccms_addon.notifiers.webhook import WebhookNotifier
from ccms_addon.outbox import Outbox
from ccms_addon.store.models import OutboundMessage, VocKind, VocStatus
from ccms_addon.voc.channels import Channel
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.service import VocDesk
from tests.loopback import WEBHOOK_SECRET
from tests.voc_intake.conftest import events


class InstagramDirect(WebhookNotifier):
    """The plugin's notifier: the webhook notifier's signed POST, to the plugin's own relay."""

    channel = "instagram_dm"
    settings_name = "instagram"


class InstagramPlugin:
    @hookimpl
    def register_channels(self):
        return [Channel("instagram", {"en": "Instagram", "ko": "인스타그램", "ja": "インスタグラム"},
                        reply_notifier="instagram_dm")]

    @hookimpl
    def register_notifiers(self):
        return [InstagramDirect()]


@pytest.fixture
def settings(settings, receiver):
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "instagram": {"url": receiver.url, "secret": WEBHOOK_SECRET}})


@pytest.fixture
def instagram(runtime):
    runtime.pm.register(InstagramPlugin(), name="test-instagram")
    return runtime


def test_an_instagram_item_is_answered_on_instagram(instagram, shop, receiver):
    runtime = instagram
    assert runtime.channels["instagram"].label("ko") == "인스타그램"
    # the plugin's intake: a DM mentioning a broken cup. The Instagram-scoped user id is the
    # address its notifier answers; the item keeps it where non-email recipients live.
    item = record_voc_item(runtime, shop.id, NewVocItem(
        kind=VocKind.COMPLAINT, channel="instagram", body="컵이 파손되어 왔어요 😢", actor="shopper",
        contact_name="@minji.k", contact_phone="igsid:17841400000000001", locale="ko",
        event_data={"instagram_message_id": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAw"}))
    assert item.channel == "instagram" and item.category == "quality"

    VocDesk(runtime).reply([shop.id], item.id, "staff:1:Lee", "죄송합니다. 새 컵을 보내드릴게요.")
    [message] = _messages(runtime)
    assert (message.channel, message.recipient) == ("instagram_dm", "igsid:17841400000000001")
    assert Outbox(runtime).deliver(message.idempotency_key) == "sent"

    [request] = receiver.requests
    assert request.verified
    sent = json.loads(request.body)
    assert (sent["channel"], sent["recipient"], sent["shop_id"]) == (
        "instagram_dm", "igsid:17841400000000001", shop.id)
    assert sent["body"].startswith("죄송합니다. 새 컵을 보내드릴게요.")
    assert sent["data"]["reference"] == item.reference
    trail = events(runtime, item.id)
    assert trail[-1].type == "reply" and trail[-1].data["notifier"] == "instagram_dm"
    assert trail[-1].to_status == VocStatus.RESPONDED.value


def _messages(runtime) -> list[OutboundMessage]:
    from sqlalchemy import select
    with runtime.db.session() as s:
        return s.scalars(select(OutboundMessage).where(OutboundMessage.channel == "instagram_dm")
                         ).all()
