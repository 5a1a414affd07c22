"""Shared fixtures. Importing model_keras first selects tf-keras before TensorFlow loads."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EMBEDDED_SAMPLE = REPO / "data" / "amazon-sample" / "amazon_seq.txt"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, present on CI and dev machines; tests needing it skip elsewhere."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_examples(tmp_path_factory):
    """The embedded Amazon sample transformed once per session (T=20 keeps tests fast)."""
    from components.transform import TransformConfig, run_transform

    out = tmp_path_factory.mktemp("sample_examples")
    stats = run_transform(TransformConfig(input=str(EMBEDDED_SAMPLE), format="syncrec", output=str(out), max_len=20))
    return out, stats


os.environ.setdefault("PYTHONHASHSEED", "0")
