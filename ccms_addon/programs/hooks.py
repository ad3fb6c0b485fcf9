"""The programs' own hook implementations, registered on every runtime like any plugin's."""

from __future__ import annotations

import logging

import pluggy

log = logging.getLogger(__name__)
hookimpl = pluggy.HookimplMarker("ccms_addon")


class ProgramHooks:
    """Enrolls an order the moment it is synced fulfilled, and stops its follow-ups when it is
    cancelled or refunded. A failure here is logged, never raised into the pipeline: the
    enrollment sweep catches up (``enrollment.sweep_unenrolled``)."""

    def __init__(self, runtime):
        self.runtime = runtime

    @hookimpl
    def order_synced(self, shop_id, order_id, platform_order_id, created):
        from ccms_addon.programs.enrollment import order_changed
        try:
            with self.runtime.db.session() as session:
                order_changed(session, shop_id, order_id)
        except Exception:  # noqa: BLE001
            log.exception("programs could not react to order %s of shop %s", order_id, shop_id)
