"""The intake channels: the built-in ones and those plugins add through ``register_channels``.

A channel says how a reply reaches the customer: ``reply_notifier`` names the notifier (``email``,
a plugin's ``kakao_alimtalk``…) that carries it, or ``None`` when staff answer outside the add-on
(a phone call, at the counter) and the dashboard only records that they did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pluggy

from ccms_addon.store.models import VocChannel

hookimpl = pluggy.HookimplMarker("ccms_addon")


@dataclass(frozen=True)
class Channel:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    reply_notifier: str | None = "email"

    def label(self, locale: str) -> str:
        return self.labels.get(locale) or self.labels.get("en") or self.name


BUILT_IN = (
    Channel(VocChannel.WIDGET.value, {"en": "Widget", "ko": "위젯", "ja": "ウィジェット"}),
    Channel(VocChannel.FOLLOW_UP.value, {"en": "Follow-up", "ko": "사후 연락", "ja": "フォローアップ"}),
    Channel(VocChannel.PLATFORM.value, {"en": "Store platform", "ko": "쇼핑몰 플랫폼",
                                        "ja": "ストアプラットフォーム"}),
    Channel(VocChannel.EMAIL.value, {"en": "Email", "ko": "이메일", "ja": "メール"}),
    Channel(VocChannel.PHONE.value, {"en": "Phone", "ko": "전화", "ja": "電話"}, None),
    Channel(VocChannel.STAFF.value, {"en": "In person / staff", "ko": "대면·직원 기록",
                                     "ja": "対面・スタッフ記録"}, None),
    Channel(VocChannel.SOCIAL.value, {"en": "Social media", "ko": "소셜 미디어",
                                      "ja": "ソーシャルメディア"}, None),
)


class BuiltInChannels:
    """Registered like any plugin, so the built-ins and a plugin's channels are one list."""

    @hookimpl
    def register_channels(self):
        return list(BUILT_IN)


def channel_registry(pm: pluggy.PluginManager) -> dict[str, Channel]:
    """Every channel by name; two plugins claiming one name stop start-up."""
    registry: dict[str, Channel] = {}
    for channels in pm.hook.register_channels():
        for channel in channels or ():
            if channel.name in registry:
                raise RuntimeError(f"two plugins register the VOC channel {channel.name!r}")
            if len(channel.name) > 40:
                raise RuntimeError(f"the VOC channel name {channel.name!r} is over 40 characters")
            registry[channel.name] = channel
    return registry
