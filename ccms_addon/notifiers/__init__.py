"""The built-in notifiers: email over SMTP and a signed HTTP webhook.

Each module here is a plugin found through the ``ccms_addon`` entry-point group (``email =
ccms_addon.notifiers.email``, ``webhook = ccms_addon.notifiers.webhook``), exactly as a third-party
channel (KakaoTalk Alimtalk, SMS) would be. A notifier sends one message once and says precisely
what happened (:mod:`ccms_addon.outbox`'s delivery errors); retries and backoff are the outbox's.
"""
