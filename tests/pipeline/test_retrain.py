"""Retraining as `schedule` runs it: new logs added to the old, a warm start from the served model, a push only
when blessed, the history across pushes, and drift that stops the run (refusals: tests/reliability)."""

import json
import os

import pytest

from tests.pipeline.local_runs import TRAIN, first_push, run

pytestmark = pytest.mark.slow


def test_retrain_adds_data_warm_starts_pushes_and_stops_on_drift(tmp_path):
    root, day2, first_report = first_push(tmp_path)
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
