"""RQ job functions by area. Jobs are small idempotent functions that take ids, not objects, and
reach the store through :func:`ccms_addon.runtime.current`."""
