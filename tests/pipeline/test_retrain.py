"""Retraining as `schedule` runs it: new logs added to the old, a warm start from the served model, a push only
when blessed, the history across pushes, and drift that stops the run; and the retrains that must not push (a model
worse than the served one on valid, a warm start from something that is not an exported model, a warm start that
diverges), each failing or refused with its reason while the served versions stay as they were."""

import json
import os
import subprocess
import sys

import pytest

from tests.pipeline.local_runs import SHAPE, TRAIN, first_push, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """One run-local on day 1 for the module (a minute of the suite): the refusals run first and push nothing, which
    they assert, so the retrain after them starts from the same served model as it would alone."""
    folder = tmp_path_factory.mktemp("retrain")
    return (folder, *first_push(folder))


def test_a_worse_or_broken_retrain_is_not_pushed(pushed):
    tmp_path, root, day2, _ = pushed
    versions = sorted(os.listdir(os.path.join(root, "serving", "syncrec")))
    untrained = ["--set", "epochs=1", "--set", "learning_rate=1e-7", "--set", "warm_start=none", *SHAPE]
    worse = run("retrain", "--input", day2, "--root", root, *untrained)
    assert worse.returncode == 0, worse.stderr[-3000:]
    report = json.loads(open(os.path.join(root, "report", "metrics.json")).read())
    assert report["blessed"] is False and report["pushed_to"] is None and "NotPushed" in worse.stdout
    assert any(reason.endswith("worse") for reason in report["blessing"]["reasons"])
    assert sorted(os.listdir(os.path.join(root, "serving", "syncrec"))) == versions

    # A diverged training (NaN loss) fails the run with the reason; nothing is pushed.
    nan_model = str(tmp_path / "nan_model")
    subprocess.run(
        [sys.executable, "-c", NAN_EXPORT, report["blessing"]["baseline"], nan_model], check=True, timeout=600
    )
    missing = run("retrain", "--input", day2, "--root", root, "--set", f"warm_start={nan_model}", *TRAIN)
    assert (
        missing.returncode == 1
        and "is not an exported SavedModel" in missing.stderr
        and "Transform" not in missing.stdout
    )
    diverged = run("retrain", "--input", day2, "--root", root, "--set", f"warm_start={nan_model}/saved_model", *TRAIN)
    assert diverged.returncode == 1 and "training diverged" in diverged.stderr and "Traceback" not in diverged.stderr
    # tried once: a local failure is deterministic (the compiled spec keeps the cluster's retries: test_pipeline_spec)
    assert diverged.stdout.count("x Trainer failed") == 1, diverged.stdout
    assert sorted(os.listdir(os.path.join(root, "serving", "syncrec"))) == versions


def test_retrain_adds_data_warm_starts_pushes_and_stops_on_drift(pushed):
    tmp_path, root, day2, first_report = pushed
    second = run("retrain", "--input", day2, "--root", root, *TRAIN)
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads(open(os.path.join(root, "report", "metrics.json")).read())
    assert (first_report["data"]["rows_read"], report["data"]["rows_read"]) == (12000, 18000)
    assert report["blessing"]["baseline"] == first_report["pushed_to"]
    assert "warm start from" in second.stdout + second.stderr
    assert report["blessed"] and report["pushed_to"] != first_report["pushed_to"]
    state = json.loads(open(os.path.join(root, "state.json")).read())
    assert [os.path.basename(p) for p in state["inputs"]] == ["day1.csv", "day2.csv"]
    assert "no drift" in second.stdout  # the same generator: the data did not move

    # The history across pushes, and the page a person reads.
    history = run("history", "--root", root)
    assert history.returncode == 0, history.stderr[-2000:]
    rows = [line for line in history.stdout.splitlines() if line.startswith("| 1") or line.startswith("| 2")]
    assert len(rows) == 2 and os.path.basename(report["pushed_to"]) in rows[1]
    assert os.path.getsize(os.path.join(root, "report", "history.png")) > 10_000
    page = open(os.path.join(root, "report", "index.html"), encoding="utf-8").read()
    for section in ("Metrics per domain", "Drift against the served model", "domain mix (L-infinity)", "History of pushes"):
        assert section in page, section
    assert page.count("data:image/png;base64,") == 2  # lambda/phi over epochs, and the history plot

    # Logs whose domain mix moved beyond the threshold stop the retrain with the statistic named.
    with open(tmp_path / "day1.csv", encoding="utf-8") as source, open(tmp_path / "shifted.csv", "w") as shifted:
        header, *lines = source.read().splitlines()
        shifted.write(header + "\n")
        for copy in range(3):
            shifted.writelines(f"s{copy}{line}\n" for line in lines if line.split(",")[2] == "d2")
    drifted = run("retrain", "--input", str(tmp_path / "shifted.csv"), "--root", root, *TRAIN)
    assert drifted.returncode == 1 and "drift: domain mix (L-infinity)" in drifted.stderr, drifted.stderr[-2000:]
    assert "Traceback" not in drifted.stderr and "Trainer" not in drifted.stdout


NAN_EXPORT = """
import sys
import numpy as np
from model_keras.train import _export
from model_keras.warm_start import load_exported
model, vocabulary = load_exported(sys.argv[1])
model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
_export(model, model.config, vocabulary, sys.argv[2])
"""
