"""The built-in Cafe24 plugin: Korean hosted shops (mall ids such as ``cafe24bestshop``).

Registered through the ``ccms_addon`` entry-point group exactly as a third-party plugin would be. Its
adapter verifies Cafe24 webhooks by the app's ``X-API-Key`` webhook key, turns Cafe24 event numbers
(90023 order placed, 90147 customer deleted, …) into canonical events, and reads orders and customers
from the Cafe24 Admin API. Settings come from ``CCMS_CAFE24_*`` (``webhook_key``, ``allowed_ips``).
"""

from ccms_addon import hookimpl

from .adapter import Cafe24Adapter


@hookimpl
def register_platforms() -> list[Cafe24Adapter]:
    """The Cafe24 adapter."""
    return [Cafe24Adapter()]
