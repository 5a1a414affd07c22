"""Blessing, pushing, caching and example validation as units."""

import json
import os

import pytest

from components.validator import format_report, validate_examples
from model_keras.metrics import METRICS
from pipeline import cache
from pipeline.blessing import bless
from pipeline.pusher import latest_version
from pipeline.pusher import models_config, push


def metrics(health=None, **ndcg):
    row = lambda v: {**{m: v for m in METRICS}, "users": 100}  # noqa: E731
    return {
        "domains": {d: row(v) for d, v in ndcg.items()},
        "all": row(sum(ndcg.values()) / len(ndcg)),
        "health": health or {"non_finite_scores": 0, "constant_score_users": 0},
    }


def test_blessing_rules():
    assert bless(metrics(A=0.1), None, 0.0)[0]
    assert bless(metrics(A=0.30, B=0.20), metrics(A=0.30, B=0.21), 0.01)[0]
    blessed, reasons = bless(metrics(A=0.40, B=0.10), metrics(A=0.30, B=0.20), 0.01)
    assert not blessed and "B: NDCG@10 0.1000 vs 0.2000" in reasons[1] and reasons[1].endswith("worse")


@pytest.mark.parametrize(
    "health, value, reason",
    [
        ({"non_finite_scores": 5, "constant_score_users": 0}, 0.9, "5 scores are NaN or infinite"),
        ({"non_finite_scores": 0, "constant_score_users": 100}, 0.1, "100 of 100 users got the same score"),
        (None, float("nan"), "a metric is not finite"),
    ],
)
def test_a_broken_candidate_is_never_blessed_not_even_first(health, value, reason):
    for baseline in (None, metrics(A=0.0)):
        blessed, reasons = bless(metrics(health, A=value), baseline, 0.01)
        assert not blessed and any(reason in r for r in reasons)


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


def test_pushes_in_one_second_get_distinct_versions_and_clean_stale_staging(tmp_path):
    (tmp_path / "serving" / "m" / ".staging-123").mkdir(parents=True)  # left by a push that was killed
    pushed = []
    for content in (b"a", b"b", b"c"):
        model = tmp_path / f"model-{content.decode()}"
        model.mkdir()
        (model / "saved_model.pb").write_bytes(content)
        pushed.append(push(str(model), str(tmp_path / "serving"), "m"))
    assert len({os.path.basename(p) for p in pushed}) == 3
    assert sorted(os.listdir(tmp_path / "serving" / "m")) == sorted(
        [os.path.basename(p) for p in pushed] + ["batching_parameters.txt"]  # for KServe, which mounts m/ alone
    )


def test_a_push_labels_its_version_stable_or_canary(tmp_path):
    from pipeline.pusher import read_labels, served_version

    root = str(tmp_path / "serving")
    model = tmp_path / "model"
    model.mkdir()
    for content, canary in ((b"a", False), (b"b", True), (b"c", False)):
        (model / "saved_model.pb").write_bytes(content)
        version = int(os.path.basename(push(str(model), root, "m", canary=canary)))
        labels = read_labels(root, "m")
        if canary:
            assert labels == {"stable": first, "canary": version} and served_version(root, "m").endswith(str(first))
        else:
            first = version
            assert labels == {"stable": version} and served_version(root, "m").endswith(str(version))


def test_a_lock_left_by_a_killed_pod_is_broken_and_a_live_one_waited_for(tmp_path):
    import threading
    import time

    from pipeline.pusher import LOCK_DIR, serving_lock

    root = tmp_path / "serving"
    (root / LOCK_DIR).mkdir(parents=True)  # a pod died holding the lock
    old = time.time() - 7200
    os.utime(root / LOCK_DIR, (old, old))
    with serving_lock(str(root)):
        assert (root / LOCK_DIR / "owner").exists()
    assert not (root / LOCK_DIR).exists()
    order = []

    def second():
        with serving_lock(str(root)):
            order.append("second")

    with serving_lock(str(root)):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        order.append("first")
    thread.join(60)
    assert order == ["first", "second"]


def test_a_failed_push_removes_its_staging_folder_and_says_why_in_one_line(tmp_path, monkeypatch):
    import shutil

    from pipeline import pusher

    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"x" * 1000)

    def full_disk(source, target):
        os.makedirs(target)
        (tmp_path / "serving" / "m" / os.path.basename(target) / "partial").write_bytes(b"half")
        raise shutil.Error([(source, target, "[Errno 28] No space left on device")])

    monkeypatch.setattr(pusher.shutil, "copytree", full_disk)
    with pytest.raises(pusher.PushFailed) as err:
        push(str(model), str(tmp_path / "serving"), "m")
    assert str(err.value).count("\n") == 0 and "no space left on the volume" in str(err.value)
    assert not [n for n in os.listdir(tmp_path / "serving" / "m") if n.startswith(".staging")]


def test_concurrent_pushes_take_turns(tmp_path):
    import threading

    models = []
    for index in range(6):
        model = tmp_path / f"model{index}"
        model.mkdir()
        (model / "saved_model.pb").write_bytes(str(index).encode())
        models.append(model)
    results, errors = [], []

    def worker(model):
        try:
            results.append(push(str(model), str(tmp_path / "serving"), "m"))
        except Exception as err:  # noqa: BLE001 (the test reports any failure)
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(m,)) for m in models]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(results)) == 6


def test_models_config_refuses_unsafe_names_and_quotes_the_rest():
    assert 'name: "a.b-c_1"' in models_config("a.b-c_1")
    for bad in ("../x", 'a"b', "a\nb", "", "/abs"):
        with pytest.raises(ValueError, match="model name"):
            models_config(bad)


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
    assert (tmp_path / "r" / "a.txt").read_text() == "hello" and not (tmp_path / "r" / cache.MANIFEST).exists()
    (tmp_path / "r" / "a.txt").write_text("changed in the run folder")  # copies, not links: the cache is unaffected
    assert (
        cache.restore(str(tmp_path / "c"), "t", key, str(tmp_path / "r2"))
        and (tmp_path / "r2" / "a.txt").read_text() == "hello"
    )
    (tmp_path / "in.csv").write_text("y")
    assert cache.fingerprint([str(tmp_path / "in.csv")], {"p": 1}, code_dirs=cache.TRANSFORM_CODE) != key


def test_a_corrupt_cache_entry_is_removed_reported_and_missed(tmp_path, capsys):
    src = tmp_path / "out"
    src.mkdir()
    (src / "part.tfrecord.gz").write_bytes(b"x" * 1000)
    cache.store(str(tmp_path / "c"), "transform", "k", str(src))
    entry = tmp_path / "c" / "transform" / "k"
    (entry / "part.tfrecord.gz").write_bytes(b"x" * 10)  # truncated
    assert not cache.restore(str(tmp_path / "c"), "transform", "k", str(tmp_path / "r"))
    assert "is corrupt" in capsys.readouterr().err and not entry.exists()
    cache.store(str(tmp_path / "c"), "transform", "k", str(src))  # the stage ran again and stored a good entry
    assert cache.restore(str(tmp_path / "c"), "transform", "k", str(tmp_path / "r"))


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
        (tmp_path / f"{day}.csv").write_text(
            "user_id,item_id,domain,timestamp\n" + "".join(f"u{u},i{k},D,{k}\n" for u in users for k in range(3))
        )
    inputs = f"{tmp_path / 'a.csv'},{tmp_path / 'b.csv'}"
    for attempt in range(2):
        stage = transform_stage(**transform_args(inputs, tmp_path))
        assert stage["users"] == 5 and stage["rows_read"] == 15
        assert stage["cache_hit"] == (attempt == 1)
    (tmp_path / "b.csv").write_text("user_id,item_id,domain,timestamp\nu9,i,D,1\nu9,j,D,2\nu9,k,D,3\n")
    stage = transform_stage(**transform_args(inputs, tmp_path))
    assert not stage["cache_hit"] and stage["users"] == 4  # changed contents, new key, and no stale links


def transform_args(inputs, tmp_path):
    settings = dict(input_format="raw", max_len=10, min_events=3, min_item_count=1, domains="", domain_names="")
    examples = str(tmp_path / "out" / "examples")
    return dict(input_path=inputs, settings=settings, cache_dir=str(tmp_path / "cache"), examples_dir=examples)


def test_drift_comparators_and_the_anomaly_line_name_the_statistic():
    from pipeline.data_statistics import drift_anomaly_lines, drift_rows, jensen_shannon, l_infinity

    assert l_infinity({"A": 0.5, "B": 0.5}, {"A": 0.8, "B": 0.1, "C": 0.1}) == pytest.approx(0.4)
    assert jensen_shannon({"a": 1, "b": 1}, {"a": 1, "b": 1}) == 0.0
    assert jensen_shannon({"a": 1, "b": 0}, {"a": 0, "b": 1}) == pytest.approx(1.0)
    served = {
        "domains": {"A": {"share": 0.5, "oov_rate": 0.0}, "B": {"share": 0.5, "oov_rate": 0.0}},
        "history_length": {"<=5": 10, "<=10": 10},
        "multi_domain_user_share": 0.6,
    }
    shifted = {**served, "domains": {"A": {"share": 0.9, "oov_rate": 0.0}, "B": {"share": 0.1, "oov_rate": 0.3}}}
    thresholds = {"domain_mix": 0.15, "history_length": 0.15, "multi_domain": 0.2, "oov_rate": 0.1, "new_labels": 0.5}
    assert not any(r["anomaly"] for r in drift_rows(served, served, thresholds))
    lines = drift_anomaly_lines(drift_rows(shifted, served, thresholds))
    assert len(lines) == 2 and lines[0].startswith("drift: domain mix (L-infinity) is 0.4000, over its threshold 0.15")
    assert "A 0.900" in lines[0] and "A 0.500" in lines[0] and lines[1].startswith("drift: OOV rate, B is 0.3000")


def test_negative_transfer_is_fixed_by_the_tower_choice_or_refused():
    from pipeline.blessing import negative_transfer

    towers = {
        "A": {"tower": "single", "gain": 0.02, "standard_error": 0.005},
        "B": {"tower": "cross", "gain": 0.001, "standard_error": 0.005},
    }
    refused, reasons = negative_transfer(towers, 2.0)
    assert not refused and len(reasons) == 1 and "A: negative transfer" in reasons[0] and "fixed" in reasons[0]
    refused, reasons = negative_transfer({"A": {**towers["A"], "tower": "cross"}}, 2.0)
    assert refused and "while the cross tower serves it: not blessed" in reasons[0]
    refused, reasons = negative_transfer({"A": {**towers["A"], "tower": "both"}}, 2.0)  # the sum beat the single tower
    assert not refused and "fixed, the domain is served by both towers summed" in reasons[0]
    assert negative_transfer(None, 2.0) == (False, [])


def test_chance_level_of_the_sampled_protocol():
    from pipeline.report_page import chance_ndcg10

    assert chance_ndcg10(99) == pytest.approx(0.0454, abs=1e-4)  # what the quick start's 0.06 is compared with
    assert chance_ndcg10(0) == 1.0


def test_a_baseline_pushed_before_the_batched_signatures_is_still_scored(sample_examples, tmp_path):
    """The first retrain after an upgrade blesses against a served model whose score_items takes no history_length."""
    import numpy as np
    import tensorflow as tf

    from model_keras.input_fn import make_dataset
    from pipeline.blessing import SavedModelScorer
    from schemas.vocabulary import Vocabulary

    class Old(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.string, name="history_items"),
                tf.TensorSpec([None, None], tf.string, name="history_domains"),
                tf.TensorSpec([None], tf.string, name="target_domain"),
                tf.TensorSpec([None, None], tf.string, name="candidate_items"),
            ]
        )
        def score_items(self, history_items, history_domains, target_domain, candidate_items):
            return {"scores": tf.strings.to_number(tf.strings.substr(candidate_items, 0, 0) + "1")}

    old = Old()
    tf.saved_model.save(old, str(tmp_path / "old"), signatures={"score_items": old.score_items})
    vocab = Vocabulary.load(str(sample_examples[0] / "vocabulary.json"))
    batch = next(iter(make_dataset(str(sample_examples[0]), "valid", vocab.num_domains, 8)))
    scorer = SavedModelScorer(str(tmp_path / "old"), vocab)
    assert not scorer.takes_lengths
    scores = scorer.score_candidates(batch, np.full((len(batch["item"].numpy()), 3), 5, np.int32))
    assert scores.shape == (len(batch["item"].numpy()), 3) and (scores == 1).all()
