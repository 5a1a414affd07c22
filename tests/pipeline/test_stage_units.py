"""Blessing, pushing, caching and example validation as units."""
import json
import os

import pytest

from pipeline import cache
from pipeline.blessing import bless, latest_version
from pipeline.pusher import push
from components.validator import format_report, validate_examples


def metrics(**ndcg):
    return {"domains": {d: {"NDCG@10": v} for d, v in ndcg.items()}}


def test_blessing_rules():
    assert bless(metrics(A=0.1), None, 0.0)[0]
    assert bless(metrics(A=0.30, B=0.20), metrics(A=0.30, B=0.21), 0.01)[0]
    blessed, reasons = bless(metrics(A=0.40, B=0.10), metrics(A=0.30, B=0.20), 0.01)
    assert not blessed and "B: NDCG@10 0.1000 vs 0.2000" in reasons[1] and reasons[1].endswith("worse")


def test_push_versions_atomically_and_skips_duplicates(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"one")
    first = push(str(model), str(tmp_path / "serving"), "m")
    assert push(str(model), str(tmp_path / "serving"), "m") == first  # the same model again: no new version
    (model / "saved_model.pb").write_bytes(b"two")
    second = push(str(model), str(tmp_path / "serving"), "m")
    assert int(os.path.basename(second)) > int(os.path.basename(first))
    assert latest_version(str(tmp_path / "serving"), "m") == second
    assert not [n for n in os.listdir(tmp_path / "serving" / "m") if n.startswith(".staging")]
    assert 'base_path: "/models/m"' in (tmp_path / "serving" / "models.config").read_text()


def test_cache_round_trip_and_keys(tmp_path):
    src = tmp_path / "out"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    (tmp_path / "in.csv").write_text("x")
    key = cache.fingerprint([str(tmp_path / "in.csv")], {"p": 1}, code_dirs=cache.TRANSFORM_CODE)
    assert key == cache.fingerprint([str(tmp_path / "in.csv")], {"p": 1}, code_dirs=cache.TRANSFORM_CODE)
    assert key != cache.fingerprint([str(tmp_path / "in.csv")], {"p": 2}, code_dirs=cache.TRANSFORM_CODE)
    assert not cache.restore(str(tmp_path / "c"), "t", key, str(tmp_path / "r"))
    cache.store(str(tmp_path / "c"), "t", key, str(src))
    assert cache.restore(str(tmp_path / "c"), "t", key, str(tmp_path / "r"))
    assert (tmp_path / "r" / "a.txt").read_text() == "hello" and not (tmp_path / "r" / ".complete").exists()
    (tmp_path / "in.csv").write_text("y")
    assert cache.fingerprint([str(tmp_path / "in.csv")], {"p": 1}, code_dirs=cache.TRANSFORM_CODE) != key


def test_validator_passes_good_examples_and_reports_broken_ones(sample_examples, tmp_path):
    import shutil

    out, _ = sample_examples
    assert validate_examples(str(out))["anomalies"] == {}
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    vocab = json.loads((broken / "vocabulary.json").read_text())
    vocab["domains"] = vocab["domains"][:-1]  # examples now hold ids beyond the vocabulary
    vocab["domains"][-1]["end"] = vocab["domains"][-1]["start"] + 1
    (broken / "vocabulary.json").write_text(json.dumps(vocab))
    result = validate_examples(str(broken))
    assert "item" in result["anomalies"] or "target_item" in result["anomalies"]
    report = format_report(result)
    assert report.startswith("ExampleAnomalies") and "outside the vocabulary" in report and "first:" in report


def test_transform_stage_reads_several_inputs_and_caches(tmp_path):
    from pipeline.stages import transform_stage

    for day, users in (("a", range(0, 3)), ("b", range(3, 5))):
        (tmp_path / f"{day}.csv").write_text("user_id,item_id,domain,timestamp\n" + "".join(f"u{u},i{k},D,{k}\n" for u in users for k in range(3)))
    inputs = f"{tmp_path / 'a.csv'},{tmp_path / 'b.csv'}"
    for attempt in range(2):
        stage = transform_stage(inputs, "raw", 10, 3, 1, "", "", str(tmp_path / "cache"), str(tmp_path / "out" / "examples"))
        assert stage["users"] == 5 and stage["rows_read"] == 15
        assert stage["cache_hit"] == (attempt == 1)
    (tmp_path / "b.csv").write_text("user_id,item_id,domain,timestamp\nu9,i,D,1\nu9,j,D,2\nu9,k,D,3\n")
    stage = transform_stage(inputs, "raw", 10, 3, 1, "", "", str(tmp_path / "cache"), str(tmp_path / "out" / "examples"))
    assert not stage["cache_hit"] and stage["users"] == 4  # changed contents, new key, and no stale links
