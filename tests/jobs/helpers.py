"""Running the real pipeline in tests: dispatcher batch, then a real RQ worker in burst mode."""

from rq import Worker

from ccms_addon.jobs.dispatcher import dispatch_due
from ccms_addon.queue import ALL_QUEUES, queue


def drain(runtime, *, rounds: int = 3) -> int:
    """Dispatch everything due and let a forking RQ worker process it; returns jobs handed over."""
    moved = 0
    for _ in range(rounds):
        batch = dispatch_due(runtime)
        if not batch:
            break
        moved += batch
        queues = [queue(name, runtime.redis, runtime.settings) for name in ALL_QUEUES]
        Worker(queues, connection=runtime.redis).work(burst=True)
    return moved
