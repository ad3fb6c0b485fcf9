"""Access to the real platform samples in ../shared/platform-samples (beside the checkout).

The samples are read where they are, never copied into the project: ``CCMS_PLATFORM_SAMPLES`` names
their folder when the checkout is elsewhere (CI's clean clone; .ci/run sets it), and on a user's
fresh clone they are absent and the tests that need them skip with a reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = Path(os.environ.get("CCMS_PLATFORM_SAMPLES")
                   or REPO_ROOT.parent / "shared" / "platform-samples")


def samples_available() -> bool:
    return SAMPLES_DIR.is_dir()


def sample_names(platform: str) -> list[str]:
    """Sample file stems of one platform (e.g. ``orders-create``); [] when the samples are absent."""
    folder = SAMPLES_DIR / platform
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def read_sample(platform: str, name: str) -> bytes:
    """The raw bytes of a sample, or skip the test when the samples are not beside the checkout."""
    path = SAMPLES_DIR / platform / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"platform sample {platform}/{name}.json not found at {SAMPLES_DIR}")
    return path.read_bytes()


def sample_params(platform: str) -> list:
    """pytest parameters, one per sample of a platform; a single skipping param when absent."""
    names = sample_names(platform)
    if not names:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no samples at {SAMPLES_DIR}"))]
    return names
