"""The empty job of bench/followups.py's baseline: RQ's own cost per job, nothing else."""


def noop() -> None:
    return None
