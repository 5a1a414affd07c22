"""Model settings: every value checked for type and range before any work, presets, the --set parser."""

import pytest

from model_keras.config import PRESETS, ModelConfig, parse_settings


def test_settings_parser_reads_json_values_and_keeps_strings():
    assert parse_settings(["epochs=3", "model.num_experts=5", "loss=bpr", "use_lc_ntg=false", "dropout=0.1"]) == {
        "epochs": 3,
        "model.num_experts": 5,
        "loss": "bpr",
        "use_lc_ntg": False,
        "dropout": 0.1,
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_settings(["epochs"])


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"epochs": "abc"}, "epochs must be a whole number"),
        ({"epochs": -1}, r"epochs must be in \[1"),
        ({"epochs": 0}, r"epochs must be in \[1"),
        ({"embed_dim": 0}, r"embed_dim must be in \[1"),
        ({"dropout": 2}, r"dropout must be in \[0, 1\)"),
        ({"batch_size": 100_000_000}, r"batch_size must be in \[1, 65536\]"),
        ({"learning_rate": -1}, r"learning_rate must be in \(0, 10\]"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"num_cross_experts": 99}, r"num_cross_experts j=99 must be in \[1, K-1\]"),
        ({"num_experts": 2, "num_cross_experts": 2}, r"must be in \[1, K-1\] = \[1, 1\]"),
        ({"num_cross_experts": 0}, r"must be in \[1, K-1\]"),
        ({"use_lc_ntg": "yes"}, "use_lc_ntg must be true or false"),
        ({"loss_reduction": "median"}, "loss_reduction must be one of"),
        ({"patience": -3}, r"patience must be in \[0"),
        ({"min_epochs": -1}, r"min_epochs must be in \[0"),
        ({"prediction_towers": "single"}, r"prediction_towers must be one of \['valid', 'cross'\]"),
        ({"selection_view": "served"}, r"selection_view must be one of \['cross', 'both'\]"),
        ({"tower_choice_margin": -1}, r"tower_choice_margin must be in \[0, 100\] standard errors"),
        ({"tower_choice_margin": "big"}, "tower_choice_margin must be a finite number"),
    ],
)
def test_bad_settings_fail_before_any_work_naming_the_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(setting).validate_settings()


def test_every_problem_is_listed_at_once():
    with pytest.raises(ValueError) as err:
        ModelConfig.from_dict({"epochs": 0, "dropout": 2, "embed_dim": 0}).validate_settings()
    assert all(name in str(err.value) for name in ("epochs", "dropout", "embed_dim"))


def test_j_is_free_where_there_is_no_stop_gradient():
    ModelConfig.from_dict({"use_acmoe": False, "num_cross_experts": 0}).validate_settings()  # MMoE
    ModelConfig.from_dict({"architecture": "sasrec", "num_experts": 1, "num_cross_experts": 1}).validate_settings()


def test_unknown_settings_and_presets_are_named():
    with pytest.raises(ValueError, match=r"unknown model setting\(s\) \['epochz'\]"):
        ModelConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="unknown preset 'papr'"):
        ModelConfig.from_dict({"preset": "papr"})


def test_paper_preset_is_the_papers_configuration_and_can_be_overridden():
    config = ModelConfig.from_dict({"preset": "paper"}).validate_settings()
    assert (config.embed_dim, config.max_len, config.batch_size, config.num_experts, config.num_blocks) == (
        128,
        128,
        128,
        4,
        2,
    )
    assert (config.loss, config.loss_reduction, config.lambda_scale, config.learn_temperature) == (
        "eq8",
        "sum",
        "one",
        False,
    )
    assert config.num_cross_experts == 1  # j = 0.2K, at least one
    assert config.prediction_towers == "cross"  # Eq. 19: every domain from the cross tower
    assert config.selection_view == "cross"  # and the epoch selected on it
    assert ModelConfig.from_dict({"preset": "paper", "embed_dim": 32}).embed_dim == 32
    assert set(PRESETS["paper"]) <= {f for f in ModelConfig().to_dict()}


def test_a_post_training_setting_does_not_make_a_new_run():
    """Runs are stored by their training settings: the tower choice is applied to a finished run, not retrained."""
    from experiments.runner import VARIANTS, run_folder
    from model_keras.evaluation import EvalProtocol

    def folder(**settings):
        return run_folder("out", VARIANTS["syncrec"], ModelConfig.from_dict(settings), EvalProtocol())

    assert folder(prediction_towers="cross") == folder(prediction_towers="valid")
    assert folder(tower_choice_margin=0) == folder(tower_choice_margin=3)
    assert folder(embed_dim=16) != folder(embed_dim=32)


def test_a_whole_number_for_a_float_setting_is_that_float():
    """`--set weight_decay=0` and `--set weight_decay=0.0` are one setting: the same config, the same run folder."""
    from experiments.runner import VARIANTS, run_folder
    from model_keras.config import parse_settings
    from model_keras.evaluation import EvalProtocol

    whole, point = (ModelConfig.from_dict(parse_settings([f"weight_decay={v}", "dropout=0"])) for v in ("0", "0.0"))
    assert whole == point and isinstance(whole.weight_decay, float) and isinstance(whole.dropout, float)
    assert run_folder("o", VARIANTS["syncrec"], whole, EvalProtocol()) == run_folder("o", VARIANTS["syncrec"], point, EvalProtocol())
    assert isinstance(ModelConfig(epochs=3).epochs, int)  # whole-number settings stay whole
    assert "must be a finite number" in " ".join(ModelConfig(dropout="x").setting_problems())
