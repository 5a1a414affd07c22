"""The whole pipeline with kfp.local: metrics report, push, caching, anomalies (retraining: test_retrain.py)."""

import json
import os

import pytest

from tests.pipeline.local_runs import FAST, run


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
