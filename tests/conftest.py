"""Shared fixtures. Importing model_keras first selects tf-keras before TensorFlow loads."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EMBEDDED_SAMPLE = REPO / "data" / "amazon-sample" / "amazon_seq.txt"
# The files that take minutes (whole pipelines, training runs, worker processes), longest first. They are collected
# first, so the two xdist workers (--dist loadfile hands out files in collection order) start with them and end on
# short files, instead of one long file running alone at the end while the other worker idles.
LONG_FILES = (
    "pipeline/test_retrain.py",
    "experiments/test_experiments.py",
    "model_keras/test_training.py",
    "pipeline/test_run_local.py",
    "model_keras/test_losses.py",
    "test_benchmarks.py",
    "model_keras/test_distributed.py",
    "reliability/test_pipeline_guards.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = Path(str(item.fspath)).relative_to(REPO / "tests").as_posix()
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: the order within a file, and among the other files, is kept


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
