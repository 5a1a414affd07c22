"""Careless settings fail before any work; two runs that push at once are compared with each other."""

import json
import os

import pytest

from pipeline.__main__ import main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "setting, message",
    [
        ("epochs=-1", "model.epochs must be in [1"),
        ("epochs=abc", "model.epochs must be a whole number"),
        ("embed_dim=0", "model.embed_dim must be in [1"),
        ("dropout=2", "model.dropout must be in [0, 1)"),
        ("blessing_tolerance=abc", "blessing_tolerance must be a number"),
        ("batch_size=1e8", "model.batch_size must be a whole number"),
        ("batch_size=100000000", "model.batch_size must be in [1, 65536]"),
        ("learning_rate=-1", "model.learning_rate must be in (0, 10]"),
        ("num_cross_experts=99", "model.num_cross_experts j=99 must be in [1, K-1]"),
        ("num_negatives=-5", "num_negatives must be in [1, 100000]"),
        ("model_name=../../escape", "model_name '../../escape' must be"),
        ('model_name=a"b', "model_name 'a\"b' must be"),
        ("model_name=a\nb", "model_name"),
        ("warm_start=/no/such/model", "is not an exported SavedModel"),
    ],
)
def test_bad_settings_fail_before_any_work(tmp_path, capsys, setting, message):
    assert main(["run-local", "--root", str(tmp_path), "--set", setting]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "pipeline_root").exists() and not (tmp_path / "logs").exists()


def test_two_runs_pushing_at_once_are_compared_with_each_other(sample_examples, tmp_path):
    """Both were evaluated against 'nothing served'; the second to push is checked again against the first."""
    from model_keras.config import ModelConfig
    from model_keras.train import run_fn
    from pipeline.stages import evaluate_stage, push_stage

    import shutil

    examples = str(tmp_path / "examples")
    shutil.copytree(sample_examples[0], examples)
    stage = {"cache_hit": False, "key": "k", "users": 500, "rows_read": 0}
    with open(os.path.join(examples, "_stage.json"), "w") as handle:
        json.dump(stage, handle)
    runs = []
    for seed in (0, 1):
        model_dir = str(tmp_path / f"model{seed}")
        run_fn(examples, model_dir, ModelConfig(embed_dim=8, num_blocks=1, epochs=1, seed=seed), verbose=0)
        evaluation_dir = str(tmp_path / f"evaluation{seed}")
        result = evaluate_stage(
            examples_dir=examples,
            model_dir=model_dir,
            baseline="",
            blessing_tolerance=0.0,
            protocol={"num_negatives": 99, "negative_pool": "domain", "full_ranking": False},
            evaluation_dir=evaluation_dir,
        )
        assert result["blessed"] and result["baseline"] is None
        runs.append((model_dir, evaluation_dir))
    serving = str(tmp_path / "serving")
    args = dict(examples_dir=examples, serving_root=serving, model_name="syncrec", blessing_tolerance=0.0)
    first = push_stage(model_dir=runs[0][0], evaluation_dir=runs[0][1], **args)
    second = push_stage(model_dir=runs[1][0], evaluation_dir=runs[1][1], **args)
    recheck = json.load(open(os.path.join(runs[1][1], "recheck.json")))
    assert recheck["baseline"] == first  # checked against what was really served at push time
    assert (second != "") == recheck["blessed"] and second != first
