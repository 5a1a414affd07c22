"""The whole pipeline with kfp.local: metrics report, push, caching, anomalies, retraining."""

import json
import os
import subprocess
import sys

import pytest

from synthetic.generator import SyntheticConfig, write_csv

FAST = ["--set", "epochs=1", "--set", "embed_dim=16", "--set", "max_len=20", "--set", "num_blocks=1"]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    first = run("run-local", "--root", str(root), *FAST)
    assert first.returncode == 0, first.stderr[-3000:]
    return root, first


@pytest.mark.slow
def test_run_local_writes_the_report_and_pushes(local_run):
    root, result = local_run
    report = json.loads((root / "report" / "metrics.json").read_text())
    assert set(report["domains"]) == {
        "Books",
        "Clothing_Shoes_and_Jewelry",
        "Sports_and_Outdoors",
        "Toys_and_Games",
        "Video_Games",
    }
    for metrics in report["domains"].values():
        assert set(metrics) == {"HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR", "users"}
    assert sum(m["users"] for m in report["domains"].values()) == 500
    assert report["blessed"] is True and os.path.isfile(os.path.join(report["pushed_to"], "saved_model.pb"))
    assert os.path.dirname(report["pushed_to"]) == str(root / "serving" / "syncrec")
    assert (root / "serving" / "models.config").exists()
    assert "pushed to: " + report["pushed_to"] in result.stdout and "| Books |" in result.stdout


@pytest.mark.slow
def test_run_local_prints_one_line_per_stage_and_logs_the_rest(local_run):
    root, result = local_run
    lines = result.stdout.splitlines()
    assert len(lines) < 40, result.stdout
    for stage in ("Transform", "ExampleValidator", "Resolver", "Trainer", "Evaluator", "Pusher", "Report"):
        assert any(line.startswith(f"- {stage} ") for line in lines), stage
    assert not any("INFO" in line or "tensorflow" in line.lower() for line in lines)
    log = (root / "logs" / "run-local.log").read_text()
    assert "finished with status" in log  # kfp.local's own output went to the log


@pytest.mark.slow
def test_unchanged_rerun_reuses_transform_and_training(local_run):
    root, _ = local_run
    versions = sorted(os.listdir(root / "serving" / "syncrec"))
    again = run("run-local", "--root", str(root), *FAST)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((root / "report" / "metrics.json").read_text())
    assert report["cache"] == {"transform": True, "train": True}
    assert sorted(os.listdir(root / "serving" / "syncrec")) == versions  # the same model is not pushed twice


@pytest.mark.slow
def test_a_corrupt_cache_entry_is_noticed_and_replaced(local_run):
    root, _ = local_run
    shard = sorted((root / "cache" / "transform").glob("*/train/part-*.tfrecord.gz"))[0]
    shard.write_bytes(shard.read_bytes()[:20])  # truncated, as a full disk or a killed copy leaves it
    again = run("run-local", "--root", str(root), *FAST)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((root / "report" / "metrics.json").read_text())["cache"]["transform"] is False
    assert "is corrupt" in (root / "logs" / "run-local.log").read_text()
    assert len(sorted((root / "cache" / "transform").glob("*/train/part-*.tfrecord.gz"))[0].read_bytes()) > 20


@pytest.mark.slow
def test_anomalies_stop_the_run_with_a_readable_report(tmp_path):
    rows = (
        ["user_id,item_id,domain,timestamp"]
        + [f"u{u},i{k},D,{k}" for u in range(5) for k in range(4)]
        + [f"u9,i,D,bad{k}" for k in range(40)]
    )
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    result = run(
        "run-local", "--input", str(tmp_path / "log.csv"), "--format", "raw", "--root", str(tmp_path / "r"), *FAST
    )
    assert result.returncode == 1
    assert (
        "ExampleAnomalies" in result.stderr
        and "40 of 60 rows rejected" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert not (tmp_path / "r" / "serving").exists()


@pytest.mark.slow
def test_missing_input_is_one_clear_error(tmp_path):
    result = run("run-local", "--input", str(tmp_path / "none.csv"), "--format", "raw", "--root", str(tmp_path / "r"))
    assert result.returncode == 1 and "matches no file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_retrain_adds_data_warm_starts_and_refuses_a_broken_model(tmp_path):
    common = dict(domains=3, items_per_domain=60, clusters=6, mean_events_per_user=12, p_sequential=0.7)
    write_csv(SyntheticConfig(events=12000, seed=1, **common), str(tmp_path / "day1.csv"))
    write_csv(SyntheticConfig(events=6000, seed=2, **common), str(tmp_path / "day2.csv"))
    # ~300 valid users a domain: NDCG@10 moves by ~0.02 between equally good models, so the tolerance says so.
    shape = [
        "--set",
        "embed_dim=16",
        "--set",
        "num_blocks=1",
        "--set",
        "max_len=20",
        "--set",
        "blessing_tolerance=0.05",
    ]
    train = ["--set", "epochs=3", "--set", "learning_rate=0.005", *shape]
    root = str(tmp_path / "r")
    first = run("run-local", "--input", str(tmp_path / "day1.csv"), "--format", "raw", "--root", root, *train)
    assert first.returncode == 0, first.stderr[-3000:]
    first_report = json.loads(open(os.path.join(root, "report", "metrics.json")).read())
    assert first_report["pushed_to"]

    second = run("retrain", "--input", str(tmp_path / "day2.csv"), "--root", root, *train)
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
    drifted = run("retrain", "--input", str(tmp_path / "shifted.csv"), "--root", root, *train)
    assert drifted.returncode == 1 and "drift: domain mix (L-infinity)" in drifted.stderr, drifted.stderr[-2000:]
    assert "Traceback" not in drifted.stderr and "Trainer" not in drifted.stdout

    versions = sorted(os.listdir(os.path.join(root, "serving", "syncrec")))
    worse = run(
        "retrain",
        "--input",
        str(tmp_path / "day2.csv"),
        "--root",
        root,
        "--set",
        "epochs=1",
        "--set",
        "learning_rate=1e-7",
        "--set",
        "warm_start=none",
        *shape,
    )
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
    missing = run(
        "retrain", "--input", str(tmp_path / "day2.csv"), "--root", root, "--set", f"warm_start={nan_model}", *train
    )
    assert (
        missing.returncode == 1
        and "is not an exported SavedModel" in missing.stderr
        and "Transform" not in missing.stdout
    )
    diverged = run(
        "retrain",
        "--input",
        str(tmp_path / "day2.csv"),
        "--root",
        root,
        "--set",
        f"warm_start={nan_model}/saved_model",
        *train,
    )
    assert diverged.returncode == 1 and "training diverged" in diverged.stderr and "Traceback" not in diverged.stderr
    assert sorted(os.listdir(os.path.join(root, "serving", "syncrec"))) == versions


NAN_EXPORT = """
import sys
import numpy as np
from model_keras.train import _export
from model_keras.warm_start import load_exported
model, vocabulary = load_exported(sys.argv[1])
model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
_export(model, model.config, vocabulary, sys.argv[2])
"""
