"""A job the logging tests run through a real RQ worker (jobs are found by import path)."""

import logging

log = logging.getLogger("ccms_addon.tests.operations")


def log_from_a_job(contact: str) -> str:
    log.info("job told %s", contact)
    return "done"
