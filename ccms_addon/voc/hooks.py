"""The VOC desk's own hook implementations, registered on every runtime like any plugin's."""

from __future__ import annotations

from ccms_addon import hookimpl


class VocHooks:
    """Queues the automatic acknowledgement of every new item (``voc_item_created`` fires after
    the item's commit). With Redis unreachable nothing is lost: the job is simply not queued and
    ``voc.jobs.sweep_unacknowledged`` finds the item, still ``received``, a little later."""

    def __init__(self, runtime):
        self.runtime = runtime

    @hookimpl
    def voc_item_created(self, shop_id, voc_item_id, kind, channel):
        from ccms_addon.voc.jobs import acknowledge_soon
        from ccms_addon.voc.service import acknowledged_automatically
        if acknowledged_automatically(kind, channel):
            acknowledge_soon(self.runtime, shop_id, voc_item_id)
