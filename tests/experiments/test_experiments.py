"""Each report command end to end on the embedded sample with tiny settings (1 seed, 1 epoch)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from experiments.__main__ import BASE, DEFAULT_MODELS
from experiments.runner import VARIANTS, aggregate, markdown_table, run_folder, training_time, training_time_line
from model_keras.config import ModelConfig, parse_settings

pytestmark = pytest.mark.slow
TINY = ["--seeds", "1", "--max-len", "20", "--set", "epochs=1", "--set", "embed_dim=8"]


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args, *TINY], capture_output=True, text=True, timeout=900
    )


def check_outputs(out, name):
    table = json.loads((out / f"{name}.json").read_text())
    assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.md").read_text().startswith("###")
    info = json.loads((out / f"{name}.run.json").read_text())
    assert info["args"]["seeds"] == 1 and info["tensorflow"]
    return table


def test_diagnose_reads_the_run_of_its_settings_not_the_newest_one(tmp_path):
    """Two finished runs of one variant with different settings: each set of --set flags finds its own run (the
    folder compare wrote for them), however recent the other; settings nobody ran are an error naming the fix."""
    import os

    from experiments.diagnostics import find_run
    from model_keras.config import ModelConfig
    from model_keras.evaluation import EvalProtocol

    variant, protocol = VARIANTS["syncrec"], EvalProtocol()
    j1, j3 = (ModelConfig.from_dict({"num_cross_experts": j}) for j in (1, 3))
    for age, config in ((100, j1), (0, j3)):  # the j = 3 run is the newer one
        folder = Path(run_folder(str(tmp_path), variant, config, protocol))
        folder.mkdir(parents=True)
        (folder / "model_config.json").write_text(json.dumps(config.to_dict()))
        os.utime(folder / "model_config.json", (1e9 - age, 1e9 - age))
    found = Path(find_run(str(tmp_path), variant, j1, protocol))  # not the newer j = 3 run
    assert json.loads((found / "model_config.json").read_text())["num_cross_experts"] == 1
    assert find_run(str(tmp_path), variant, j3, protocol) != find_run(str(tmp_path), variant, j1, protocol)
    with pytest.raises(ValueError, match="no finished run of 'syncrec' seed 0 with these settings.*--set flags"):
        find_run(str(tmp_path), variant, ModelConfig.from_dict({"num_cross_experts": 2}), protocol)
    with pytest.raises(ValueError, match="seed 1"):
        find_run(str(tmp_path), variant, ModelConfig.from_dict({"num_cross_experts": 1, "seed": 1}), protocol)


def test_a_setting_added_later_keeps_the_older_runs_folders():
    """A setting in ADDED_SETTINGS at the value that trains as the code before it did is left out of the folder's
    digest (the runs recorded before it existed are found); any other value names another folder."""
    import hashlib

    from model_keras.config import ADDED_SETTINGS, POST_TRAINING_SETTINGS
    from model_keras.evaluation import EvalProtocol

    protocol, config = EvalProtocol(), ModelConfig.from_dict({**ADDED_SETTINGS, "seed": 0})
    older = {k: v for k, v in config.to_dict().items() if k not in ADDED_SETTINGS and k not in POST_TRAINING_SETTINGS}
    key = json.dumps({**older, "selection": protocol.describe()}, sort_keys=True)  # what the older code hashed
    folder = run_folder("out", VARIANTS["syncrec"], config, protocol)
    assert folder == f"out/runs/syncrec/{hashlib.sha256(key.encode()).hexdigest()[:10]}/seed0"
    for name in ADDED_SETTINGS:
        other = ModelConfig.from_dict({**ADDED_SETTINGS, name: {"sort_window": 16, "softmax_sampling": "popularity",
                                                                "fused_loss_weight": 1.0,
                                                                "softmax_negatives": "sequence",
                                                                "softmax_negative_domains": "all",
                                                                "selection_view": "both"}.get(name, True)})
        assert run_folder("out", VARIANTS["syncrec"], other, protocol) != folder, name


def test_a_variant_that_trains_the_same_model_reuses_the_run_instead_of_training_it_again(tmp_path):
    """Table 5's "w/o SC-MIM" is today's default ("syncrec"): the same digest, so whichever ran first serves both.
    A variant that trains anything else, or one whose own run exists, keeps its own folder."""
    from model_keras.evaluation import EvalProtocol

    out, protocol = str(tmp_path), EvalProtocol()

    def folder(name, seed=0):
        config = ModelConfig.from_dict({**BASE, **VARIANTS[name].settings, "seed": seed})
        return run_folder(out, VARIANTS[name], config, protocol)

    alone = folder("w/o SC-MIM")
    assert "/runs/w_o_SC-MIM/" in alone  # nothing ran yet: its own name
    Path(folder("syncrec")).mkdir(parents=True)
    assert folder("w/o SC-MIM") == folder("syncrec") != alone
    assert folder("w/o SC-MIM", seed=1) != folder("syncrec", seed=1)  # another seed is another run
    assert "/runs/full/" in folder("full")  # trains SC-MIM too: never borrows the default's run
    Path(alone).mkdir(parents=True)
    assert folder("w/o SC-MIM") == alone  # its own run, once it exists, comes first


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    """One --out for the module's end-to-end tests, as a user keeps one: the examples and the default model's run
    that compare makes are reused by negative-transfer and ablation (each still trains it when run alone)."""
    return tmp_path_factory.mktemp("experiments")


def test_compare_table_has_every_model_domain_and_metric_and_diagnose_reads_its_runs(shared_out):
    tmp_path = shared_out
    result = run("compare", "--models", "syncrec,gru4rec,bprmf", "--report-also", "999:domain", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    table = check_outputs(tmp_path, "compare")
    info = json.loads((tmp_path / "compare.run.json").read_text())
    assert info["selection_protocol"] == "99 negatives from the label's domain"
    assert all(len(runs) == 1 and runs[0]["best"] <= runs[0]["last"] == 1 for runs in info["epochs"].values())
    report = (tmp_path / "compare.md").read_text()
    assert "best/last epoch per seed: syncrec 1/1" in report
    # the training time each run took, priced from the epochs the clock saw
    assert re.search(r"training time per seed .*: syncrec \d+ s x 1 epochs = \d+ min", report)
    assert info["train_time"]["syncrec"][0]["epochs_timed"] == 1 and info["train_time"]["syncrec"][0]["seconds"] > 0
    # per seed, for paired comparisons: the selection value and test under both protocols, matching the table
    (record,) = info["per_seed"]["syncrec"]
    assert record["seed"] == 0 and (record["best_epoch"], record["last_epoch"]) == (1, 1)
    assert 0.0 < record["valid_NDCG@10"] <= 1.0
    assert set(record["test"]) == {"99 negatives from the label's domain", "999 negatives from the label's domain"}
    assert (
        record["test"]["99 negatives from the label's domain"]["all"]["MRR"] == table["syncrec"]["all"]["MRR"]["mean"]
    )
    wider = json.loads((tmp_path / "compare.999-domain.json").read_text())  # ABXI's protocol: more negatives, lower HR
    assert wider["syncrec"]["all"]["HR@10"]["mean"] < table["syncrec"]["all"]["HR@10"]["mean"]
    assert "999 negatives from the label's domain" in (tmp_path / "compare.999-domain.md").read_text()
    # valid under the reported protocol too (configurations compared under it without reading test)
    valid_999 = record["valid_NDCG@10_also"]["999 negatives from the label's domain"]
    assert set(valid_999) == set(table["syncrec"]) and 0.0 < valid_999["all"] < record["valid_NDCG@10_served"]
    # the log's line per finished seed holds the figures the tables will (read while an hours-long command runs)
    line = next(text for text in result.stdout.splitlines() if text.startswith("  syncrec seed 0: best epoch 1 of 1"))
    test_999 = record["test"]["999 negatives from the label's domain"]
    assert (
        f"under 999 negatives from the label's domain: valid {valid_999['all']:.4f}, "
        f"test {test_999['all']['NDCG@10']:.4f} (Books {test_999['Books']['NDCG@10']:.4f}, " in line
    ), line
    assert f"valid NDCG@10 per seed, as served: syncrec {valid_999['all']:.4f}; gru4rec" in (
        tmp_path / "compare.999-domain.md"
    ).read_text()
    assert f"valid NDCG@10 per seed, as served: syncrec {record['valid_NDCG@10_served']:.4f}; gru4rec" in (
        tmp_path / "compare.md"
    ).read_text()
    assert set(table) == {"syncrec", "gru4rec", "bprmf"}
    assert set(table["syncrec"]) == {
        "Books",
        "Clothing_Shoes_and_Jewelry",
        "Sports_and_Outdoors",
        "Toys_and_Games",
        "Video_Games",
        "all",
    }
    assert set(table["bprmf"]["all"]["MRR"]) == {"mean", "std"} and table["bprmf"]["all"]["users"] == 500
    assert (tmp_path / "lambda.png").exists() and (tmp_path / "phi.png").exists()

    # diagnose reads the runs compare trained (no training of its own)
    result = run("diagnose", "--models", "syncrec", "--out", str(tmp_path))  # the settings compare ran with
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "diagnose.json").read_text())["syncrec"]
    # each tower on valid and test; the view selection reads (selection_view) is what it saw for the kept epoch
    towers = report["towers"]
    trained = json.loads((Path(report["run"]) / "training.json").read_text())
    selected_on = trained["config"]["selection_view"]
    assert towers["valid"][selected_on]["all"] == pytest.approx(trained["valid_at_selection"]["all"]["NDCG@10"], abs=1e-4)
    assert {split: set(towers[split]) for split in towers} == {
        "valid": {"cross", "single", "both", "served"},
        "test": {"cross", "single", "both", "served"},
    }
    # what the model serves is, per domain, the tower chosen in training (another than the cross one only where it won
    # on valid)
    for domain, choice in trained["prediction_towers"].items():
        assert report["prediction_towers"][domain] == choice["tower"]
        assert towers["valid"]["served"][domain] == pytest.approx(towers["valid"][choice["tower"]][domain], abs=1e-3)
        if choice["tower"] != "cross":
            assert towers["valid"][choice["tower"]][domain] > towers["valid"]["cross"][domain]
    assert set(towers["test"]["single"]) == set(table["syncrec"]) and "through each tower" in result.stdout
    gradients = report["gradients"]
    j = report["cross_experts_j"]
    assert all(g == 0 for g in gradients["single_loss"][:j]) and all(g > 0 for g in gradients["single_loss"][j:])
    assert all(g > 0 for g in gradients["cross_loss"][:j]) and all(g == 0 for g in gradients["cross_loss"][j:])
    assert set(report["gates"]) == {
        "single/Books",
        "single/Clothing_Shoes_and_Jewelry",
        "single/Sports_and_Outdoors",
        "single/Toys_and_Games",
        "single/Video_Games",
        "cross",
    }
    assert all(abs(sum(g["weights"]) - 1) < 0.01 and 0 <= g["entropy"] <= 1.39 for g in report["gates"].values())


def test_negative_transfer_ablation_and_sweep(shared_out):
    """The --out compare used: the examples and the default model's run are made once and reused."""
    tmp_path = shared_out
    result = run("negative-transfer", "--models", "syncrec", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    table = check_outputs(tmp_path, "negative-transfer")
    sdsr, cdsr, gain = (
        table["sdsr"]["Books"]["MRR"]["mean"],
        table["cdsr"]["syncrec"]["Books"]["MRR"]["mean"],
        table["improvement"]["syncrec"]["Books"]["MRR"]["mean"],
    )
    assert gain == pytest.approx(100 * (cdsr - sdsr) / sdsr)
    assert "domains with negative transfer" in result.stdout
    # One of Table 5's variants and the default, whose run negative-transfer made (reused); each
    # variant is a setting checked below (and SC-MIM, which "full" adds, trains in test_distributed).
    result = run("ablation", "--models", "syncrec,causal gates", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(check_outputs(tmp_path, "ablation")) == {"syncrec", "causal gates"}
    # K = 4 (with j = 3) is the default: the sweep reads the default's run instead of training it again
    result = run("sweep", "--grid", "num_experts=4,3", "--report-also", "999:domain", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(check_outputs(tmp_path, "sweep")) == {"num_experts=4", "num_experts=3"}
    assert (tmp_path / "runs" / "num_experts=3").is_dir() and not (tmp_path / "runs" / "num_experts=4").exists()
    assert (tmp_path / "sweep.999-domain.png").stat().st_size > 1000  # the curve under each protocol reported


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "syncrec,bert4rec"], "unknown model(s) ['bert4rec']"),
        (["--report-also", "lots"], "--report-also 'lots' must be NEGATIVES:domain"),
        (["--negatives", "0"], "whole number in [1, 100000]"),
        (["--set", "num_cross_experts=4"], "num_cross_experts j=4 must be in [1, K-1]"),
    ],
)
def test_bad_arguments_are_one_clear_error_before_any_work(tmp_path, capsys, args, message):
    """In this process (what `python -m experiments` exits with is main's return; a subprocess per case would
    import TensorFlow four times to check four messages)."""
    from experiments.__main__ import main

    assert main(["compare", *args, *TINY, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "examples").exists()


@pytest.mark.parametrize("flags", [[], ["use_sc_mim=true", "use_lc_ntg=false", "embed_dim=16"]])
def test_ablation_defaults_to_table_5_and_each_variant_changes_one_setting_of_the_full_model(flags):
    """Whatever the default and the --set flags, each ablation is the full model (all three mechanisms) with one
    setting changed, and the default is the full model without SC-MIM."""
    assert DEFAULT_MODELS["ablation"].split(",") == ["full", "w/o LC-NTG", "w/o SC-MIM", "w/o ACMoE", "causal gates"]
    base = {**BASE, **parse_settings(flags)}

    def config(name):
        return ModelConfig.from_dict({**base, **VARIANTS[name].settings}).to_dict()

    def changed(name):
        full = config("full")
        return {k: v for k, v in config(name).items() if full[k] != v}

    assert {k: config("full")[k] for k in ("use_lc_ntg", "use_sc_mim", "use_acmoe")} == dict.fromkeys(
        ("use_lc_ntg", "use_sc_mim", "use_acmoe"), True
    )
    assert {name: changed(name) for name in DEFAULT_MODELS["ablation"].split(",")[1:]} == {
        "w/o LC-NTG": {"use_lc_ntg": False},
        "w/o SC-MIM": {"use_sc_mim": False},
        "w/o ACMoE": {"use_acmoe": False},
        "causal gates": {"causal_gates": True},
    }
    if not flags:
        assert changed("syncrec") == {"use_sc_mim": False} and config("syncrec") == config("w/o SC-MIM")


def test_aggregate_mean_and_std():
    def run_result(v):
        metrics = {m: v for m in ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR")}
        return {"domains": {"A": {**metrics, "users": 3}}, "all": {**metrics, "users": 3}}

    table = aggregate({"m": {"seeds": [run_result(0.2), run_result(0.4)]}})
    assert table["m"]["A"]["MRR"]["mean"] == pytest.approx(0.3) and table["m"]["A"]["MRR"]["std"] == pytest.approx(0.1)
    assert "served by" not in markdown_table(table)  # no model chose a tower
    # SyNCRec's per-domain tower choice is shown seed by seed; a model with one tower gets "-".
    chose = {"seeds": [run_result(0.2), run_result(0.4)], "towers": [{"A": "cross"}, {"A": "single"}]}
    table = aggregate({"syncrec": chose, "sasrec": {"seeds": [run_result(0.1)], "towers": [{}]}})
    lines = markdown_table(table).splitlines()
    assert "served by (per seed)" in lines[0]
    assert lines[2].startswith("| syncrec | A |") and lines[2].endswith("| cross, single |")
    assert lines[4].startswith("| sasrec | A |") and lines[4].endswith("| - |")


def test_training_time_prices_a_resumed_run_whole_from_the_epochs_its_clock_saw():
    results = {
        "syncrec": {"train_time": [(100.0, 4), (300.0, 10)], "epochs": [(3, 8), (5, 10)]},  # seed 0 lost 4 epochs' time
        "sasrec": {"train_time": [(0.0, 0)], "epochs": [(2, 5)]},  # no TensorBoard log (a warm start exported as is)
    }
    assert training_time_line(results) == (
        "training time per seed (wall clock of fit with validation): "
        "syncrec 25 s x 8 epochs = 3 min, 30 s x 10 epochs = 5 min; sasrec not timed"
    )


def test_training_time_sums_each_process_log_and_reads_a_log_cut_short_by_a_kill(tmp_path):
    logs = tmp_path / "logs" / "train"
    for process, epochs in enumerate([(1, 2, 3), (4, 5)]):  # a run resumed at epoch 4 by a second process
        writer = tf.summary.create_file_writer(str(logs / f"p{process}"))
        with writer.as_default():
            for epoch in epochs:
                tf.summary.scalar("epoch_loss", 1.0 / epoch, step=epoch)
                writer.flush()
        writer.close()
    for process in (0, 1):  # the layout Keras's TensorBoard callback writes: the files side by side
        (path,) = (logs / f"p{process}").iterdir()
        path.rename(logs / f"{path.name}.{process}")
    seconds, epochs = training_time(str(tmp_path))
    assert epochs == 5 and seconds >= 0.0
    last = max(logs.glob("events.out.tfevents.*"))
    last.write_bytes(last.read_bytes()[:-7])  # killed while writing its last epoch's record
    assert training_time(str(tmp_path))[1] == 4
