"""Processes the end-to-end tests start (workers, servers) and stop, whatever happens: each the
leader of its own session, SIGKILLed with everything it forked (an RQ work-horse leaves its
parent's process group)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ccms_addon.config import Settings


def children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    found = []
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (a work-horse leaves its parent's process group)."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Processes:
    """Processes this test starts, each the leader of its own session; all stopped at teardown."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=self.logdir)
        finally:
            log.close()
        self.started.append((name, proc))
        return proc

    @staticmethod
    def kill_now(proc: subprocess.Popen) -> None:
        """SIGKILL a process, its process group and anything it forked elsewhere (a work-horse)."""
        below = descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in below:
            kill_quietly(pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, proc: subprocess.Popen, grace: float = 5.0) -> None:
        below = descendants(proc.pid)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in below:
            kill_quietly(pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        # workers and web first, the queue's server last, so nothing logs a lost Redis at exit
        ordered = sorted(reversed(self.started), key=lambda item: item[0].startswith("redis"))
        for _, proc in ordered:
            try:
                self.stop(proc)
            except Exception:  # noqa: BLE001 — stop the others whatever happens
                pass

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for path in sorted(self.logdir.glob("*.log")):
            text = path.read_text(errors="replace")
            out.append(f"--- {path.name}\n{text[-chars:]}")
        return "\n".join(out)


def process_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment of the test's settings, for the processes the test starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMS_")}
    env.update(CCMS_DATABASE_URL=settings.database_url, CCMS_REDIS_URL=redis_url,
               CCMS_SECRET_KEY=settings.secret_key, CCMS_VAR_DIR=str(settings.var_dir),
               CCMS_PUBLIC_URL=settings.public_url, CCMS_SWEEP_AFTER=str(settings.sweep_after),
               CCMS_DISPATCH_BATCH=str(settings.dispatch_batch), PYTHONUNBUFFERED="1")
    if settings.queue_prefix:
        env["CCMS_QUEUE_PREFIX"] = settings.queue_prefix
    if settings.encryption_keys:
        env["CCMS_ENCRYPTION_KEYS"] = ",".join(settings.encryption_keys)
    for platform, values in settings.platforms.items():
        for key, value in values.items():
            env[f"CCMS_{platform.upper()}_{key.upper()}"] = value
    return env
