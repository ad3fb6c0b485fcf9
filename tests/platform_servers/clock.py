"""A clock shared by a loopback platform and the client under test.

The platforms' rate limits are leaky buckets that drain with time. A test that makes the client's
waits instant must make the platform's time move by the same amount, or the bucket never drains:
:class:`FakeClock` is both the client's ``sleep`` and the server's ``clock``. Every wait the client
makes is recorded in ``sleeps``.
"""

from __future__ import annotations

import threading


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    @property
    def slept(self) -> float:
        return sum(self.sleeps)
